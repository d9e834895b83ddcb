"""fit_map against what a PyMC user does by hand: HalfFlat factors and find_MAP.

Side by side in one process, on all of the digits (1797 x 64) with K = 10 and flat
priors. For each seed:

- **by hand**: a ``pm.Model`` with ``W = pm.HalfFlat(dims=("row", "component"))``,
  ``H = pm.HalfFlat(dims=("component", "column"))``,
  ``pm.Poisson("V", W @ H, observed=V)``, then
  ``pm.find_MAP(jitter=True, random_seed=seed)`` (L-BFGS-B on log W, log H);
- **fit_map**: ``poisson_nmf.fit_map(V, K, init=start)`` with its defaults, from the
  very start find_MAP draws (its jittered initial point, rebuilt with PyMC's own
  ``make_initial_point_fns_per_chain`` and the same seed), so that each pair shares
  its start.

Both times are wall time from building the model to the answer, compilation
included; both objectives are ``poisson_nmf.kl_divergence`` of the result. NMF has
many local optima and the two optimisers may end in different ones from one start,
so the targets are on the medians over the seeds: fit_map's median objective at most
find_MAP's, and its median time at least 10x shorter. Both run with BLAS limited to
``--threads`` threads (default 1): on a shared machine, BLAS threads that outnumber
free cores slow PyTensor's small matrix products down a hundredfold, for both
optimisers alike.

Run: ``.venv/bin/python benchmarks/map.py [--seeds 3] [--quick]``; ``--quick`` takes
the first 150 digits and K = 4 (for the tests). The ratio is printed last.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pymc as pm
from pymc.initial_point import make_initial_point_fns_per_chain
from pymc.util import get_random_generator
from threadpoolctl import threadpool_limits

import poisson_nmf as pnmf
from poisson_nmf import kkt_residual

TARGET = 10.0


@dataclass
class Row:
    seed: int
    pymc_time: float
    pymc_obj: float
    pymc_nfev: int
    map_time: float
    map_obj: float
    map_iter: int
    map_calls: int
    map_kkt: float


def by_hand_model(V: np.ndarray, K: int) -> pm.Model:
    """What a PyMC user writes: flat positive factors and a Poisson likelihood."""
    F, N = V.shape
    coords = {"row": np.arange(F), "column": np.arange(N), "component": np.arange(K)}
    with pm.Model(coords=coords) as model:
        W = pm.HalfFlat("W", dims=("row", "component"))
        H = pm.HalfFlat("H", dims=("component", "column"))
        pm.Poisson("V", W @ H, observed=V, dims=("row", "column"))
    return model


def model_of(counts: pnmf.Counts, K: int) -> pm.Model:
    return by_hand_model(counts.dense(), K)


def find_map_start(model: pm.Model, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The jittered initial point ``find_MAP(jitter=True, random_seed=seed)`` starts from."""
    rng = get_random_generator(seed)
    [ipfn] = make_initial_point_fns_per_chain(
        model=model, overrides=None, jitter_rvs=set(model.free_RVs), chains=1
    )
    start = ipfn(int(rng.integers(2**30)))
    return np.exp(start["W_log__"]), np.exp(start["H_log__"])


def run_seed(counts: pnmf.Counts, K: int, seed: int) -> Row:
    t = time.perf_counter()
    with model_of(counts, K):
        idata = pm.find_MAP(
            jitter=True, random_seed=seed, progressbar=False, return_inferencedata=True
        )
    pymc_time = time.perf_counter() - t
    W, H = (idata.posterior[n].values[0, 0] for n in ("W", "H"))
    pymc_obj = pnmf.kl_divergence(counts, (W, H))
    nfev = int(idata.optimizer_result["nfev"].values)

    start = find_map_start(model_of(counts, K), seed)
    t = time.perf_counter()
    fit = pnmf.fit_map(counts, K, init=start)
    map_time = time.perf_counter() - t
    kkt = kkt_residual(counts, fit.W, fit.H)
    return Row(seed, pymc_time, pymc_obj, nfev, map_time, fit.objective, fit.n_iter,
               fit.n_calls, kkt)  # fmt: skip


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the tests)")
    args = parser.parse_args(argv)
    # the digits have three all-zero pixel columns; that is expected here
    warnings.filterwarnings("ignore", category=pnmf.ZeroRowsColumnsWarning)

    digits = pnmf.load_digits()
    V, K = (digits[:150], 4) if args.quick else (digits, 10)
    counts = pnmf.as_counts(V)
    # Load every library and fill PyTensor's on-disk cache of compiled code for both
    # models before timing (a first run on a machine compiles for seconds, once):
    # the timed runs still build, rewrite and load their functions.
    with model_of(counts, K), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "did not converge" (maxiter=2)
        pm.find_MAP(jitter=True, random_seed=0, progressbar=False, maxiter=2,
                    return_inferencedata=True)  # fmt: skip
    pnmf.fit_map(counts, K, max_iter=1, random_seed=0, warn=False)
    with threadpool_limits(args.threads):
        rows = [run_seed(counts, K, s) for s in range(args.seeds)]

    F, N = counts.shape
    print(f"\n== MAP of V ~ Poisson(WH), flat priors: V {F} x {N}, K = {K}, "
          f"BLAS threads {args.threads}")  # fmt: skip
    print(
        f"{'seed':>4} | {'find_MAP s':>10} {'objective':>12} {'evals':>6} | "
        f"{'fit_map s':>9} {'objective':>12} {'iters':>5} {'calls':>5} {'KKT':>8}"
    )
    for r in rows:
        print(
            f"{r.seed:>4} | {r.pymc_time:>10.2f} {r.pymc_obj:>12.2f} {r.pymc_nfev:>6} | "
            f"{r.map_time:>9.2f} {r.map_obj:>12.2f} {r.map_iter:>5} {r.map_calls:>5} "
            f"{r.map_kkt:>8.1e}"
        )
    med = {k: float(np.median([getattr(r, k) for r in rows]))
           for k in ("pymc_time", "pymc_obj", "map_time", "map_obj")}  # fmt: skip
    ratio = med["pymc_time"] / med["map_time"]
    ok = ratio >= TARGET and med["map_obj"] <= med["pymc_obj"]
    print(f"medians: find_MAP {med['pymc_time']:.2f} s, objective {med['pymc_obj']:.2f}; "
          f"fit_map {med['map_time']:.2f} s, objective {med['map_obj']:.2f}")  # fmt: skip
    print(
        f"ratio find_MAP / fit_map median time: {ratio:.1f}x (target {TARGET:.0f}x), "
        f"median objective fit_map / find_MAP = {med['map_obj'] / med['pymc_obj']:.6f}  "
        f"{'ok' if ok else 'MISSED'}"
    )
    return rows


if __name__ == "__main__":
    main()
