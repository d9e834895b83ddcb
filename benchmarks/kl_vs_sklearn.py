"""kl_nmf (coordinate descent) against scikit-learn's KL multiplicative updates.

Side by side in one process, from the same starts, with the same number of threads
(``--threads``; scikit-learn's BLAS and OpenMP pools limited with ``threadpoolctl``,
kl_nmf given ``n_jobs``): scikit-learn's ``NMF(beta_loss="kullback-leibler",
solver="mu", init="custom")`` runs a fixed number of iterations; kl_nmf is timed to the
iteration at which its history first reaches scikit-learn's final objective, and again
to its own convergence. Both objectives are computed with ``poisson_nmf.kl_divergence``.
Every figure is printed with the threads used and the machine's load
(``os.getloadavg()``, 1-minute): on a shared machine judge by the ratio within one run
and by the iteration counts, not by the seconds.

Starts (``--start-kinds``): ``initial_factors`` (kl_nmf's own seeded start),
``uniform`` (every entry ``sqrt(mean(V) / K) * Uniform(0, 2)``, seeded) and ``nndsvda``
(scikit-learn's default start; deterministic, so one row per case, for reference).

Cases: the digits (1797 x 64, K = 10, 1000 scikit-learn iterations), optionally other
dense tables of that size (``digits-k5``, ``digits-k20``, ``digits-odd`` = the odd rows,
K = 10), and a sparse count matrix drawn from a Poisson NMF model (5000 x 3000, about
1.3 % non-zeros, K = 20, 200 scikit-learn iterations). ``--memory`` also measures the
peak of Python-level (NumPy) allocations during kl_nmf on sparse input with tracemalloc,
on that matrix and on one with 4x the F x N and the same number of counts.

Run: ``.venv/bin/python benchmarks/kl_vs_sklearn.py [--starts 3] [--threads 2]
[--cases digits sparse] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import NMF
from sklearn.decomposition._nmf import _initialize_nmf
from threadpoolctl import threadpool_limits

import poisson_nmf as pnmf

# median speed-up asked for: dense tables 10x, the sparse case 20x
TARGETS = {"dense": 10.0, "sparse": 20.0}
START_KINDS = ("initial_factors", "uniform", "nndsvda")


@dataclass
class Row:
    case: str
    kind: str
    start: int
    threads: int
    load: float
    sk_time: float
    sk_obj: float
    reach_iter: int
    reach_time: float
    full_iter: int
    full_time: float
    full_obj: float

    @property
    def speedup(self) -> float:
        return self.sk_time / self.reach_time if self.reach_time > 0 else np.inf


def sparse_counts(F: int, N: int, K: int, n_events: int, seed: int) -> sp.csr_array:
    """Poisson(WH) counts with sparse Gamma(0.3) factors, drawn event by event (O(nnz))."""
    rng = np.random.default_rng(seed)
    W = rng.gamma(0.3, 1.0, size=(F, K))
    H = rng.gamma(0.3, 1.0, size=(K, N))
    w, h = W.sum(axis=0), H.sum(axis=1)
    n = rng.poisson(n_events)
    ks = rng.choice(K, size=n, p=w * h / (w @ h))
    rows, cols = np.empty(n, np.int64), np.empty(n, np.int64)
    for k in range(K):
        sel = ks == k
        rows[sel] = rng.choice(F, size=sel.sum(), p=W[:, k] / w[k])
        cols[sel] = rng.choice(N, size=sel.sum(), p=H[k] / h[k])
    X = sp.csr_array((np.ones(n), (rows, cols)), shape=(F, N))
    X.sum_duplicates()
    return X


def make_start(kind: str, counts: pnmf.Counts, X, K: int, seed: int):
    """(W0, H0) of one kind of start."""
    if kind == "initial_factors":
        return pnmf.initial_factors(counts, K, random_seed=seed)
    if kind == "uniform":
        rng = np.random.default_rng(seed)
        scale = np.sqrt(counts.total / counts.n_observed / K)
        F, N = counts.shape
        return scale * rng.uniform(0, 2, (F, K)), scale * rng.uniform(0, 2, (K, N))
    if kind == "nndsvda":
        W, H = _initialize_nmf(X, K, init="nndsvda", random_state=seed)
        return np.asarray(W, dtype=np.float64), np.asarray(H, dtype=np.float64)
    raise ValueError(f"unknown start kind {kind!r}")


def quiet_kl_nmf(V, K, **kw) -> pnmf.KLResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pnmf.ConvergenceWarning)
        return pnmf.kl_nmf(V, K, **kw)


def load() -> float:
    return os.getloadavg()[0]


def run_one(case, counts, X, K, sk_iter, kind, seed, threads) -> Row:
    W0, H0 = make_start(kind, counts, X, K, seed)
    sk = NMF(K, init="custom", beta_loss="kullback-leibler", solver="mu")
    sk.set_params(max_iter=sk_iter, tol=0.0)
    with threadpool_limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        W = sk.fit_transform(X, W=W0.copy(), H=H0.copy())
        sk_time = time.perf_counter() - t
    sk_obj = pnmf.kl_divergence(counts, (W, sk.components_))

    t = time.perf_counter()
    full = quiet_kl_nmf(counts, K, init=(W0, H0), n_jobs=threads)
    full_time = time.perf_counter() - t
    hit = np.flatnonzero(full.history <= sk_obj)
    if hit.size:
        reach_iter = int(hit[0]) + 1
        t = time.perf_counter()
        quiet_kl_nmf(counts, K, init=(W0, H0), max_iter=reach_iter, tol=0.0, n_jobs=threads)
        reach_time = time.perf_counter() - t
    else:
        reach_iter, reach_time = -1, np.inf
    return Row(
        case,
        kind,
        seed,
        threads,
        load(),
        sk_time,
        sk_obj,
        reach_iter,
        reach_time,
        full.n_iter,
        full_time,
        full.objective,
    )


HEADER = (
    f"{'start':>16} {'thr':>3} {'load':>5} | {'sklearn s':>9} {'sklearn objective':>18} | "
    f"{'to it s':>8} {'iters':>5} {'ratio':>6} | {'conv s':>7} {'iters':>5} "
    f"{'kl_nmf objective':>17}"
)


def print_row(r: Row) -> None:
    print(
        f"{r.kind[:12]:>12} {r.start:>3} {r.threads:>3} {r.load:>5.2f} | {r.sk_time:>9.3f} "
        f"{r.sk_obj:>18.6f} | {r.reach_time:>8.3f} {r.reach_iter:>5} {r.speedup:>5.1f}x | "
        f"{r.full_time:>7.3f} {r.full_iter:>5} {r.full_obj:>17.6f}",
        flush=True,
    )


def run_case(case, V, K, sk_iter, starts, kinds, threads) -> list[Row]:
    counts = pnmf.as_counts(V)
    X = counts.values if counts.is_sparse else counts.dense()
    print(f"\n== {case}: V {counts.shape}, nnz {counts.nz_values.size}, K = {K}, ", end="")
    print(f"{sk_iter} sklearn iterations; ratio = sklearn s / kl_nmf s to sklearn's objective")
    print(HEADER)
    rows = []
    for kind in kinds:
        for seed in range(1 if kind == "nndsvda" else starts):
            for t in threads:
                rows.append(run_one(case, counts, X, K, sk_iter, kind, seed, t))
                print_row(rows[-1])
    return rows


def peak_memory(V, K: int) -> float:
    """Peak traced allocation in MB during a short kl_nmf run."""
    counts = pnmf.as_counts(V)
    tracemalloc.start()
    tracemalloc.reset_peak()
    quiet_kl_nmf(counts, K, max_iter=5, random_seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def cases_for(names: list[str], quick: bool) -> list[tuple]:
    digits = pnmf.load_digits()
    if quick:
        table = {
            "digits": (digits[:300], 10, 100),
            "digits-k5": (digits[:300], 5, 100),
            "digits-k20": (digits[:300], 20, 100),
            "digits-odd": (digits[1:600:2], 10, 100),
            "sparse": (sparse_counts(400, 300, 10, 2_000, seed=0), 10, 50),
        }
    else:
        table = {
            "digits": (digits, 10, 1000),
            "digits-k5": (digits, 5, 1000),
            "digits-k20": (digits, 20, 1000),
            "digits-odd": (digits[1::2], 10, 1000),
            "sparse": (sparse_counts(5000, 3000, 20, 200_000, seed=0), 20, 200),
        }
    return [(n, *table[n]) for n in names]


def main(argv: list[str] | None = None) -> dict[str, list[Row]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3, help="random starts per kind")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[os.cpu_count() or 1], help="threads"
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["digits", "sparse"],
        choices=["digits", "digits-k5", "digits-k20", "digits-odd", "sparse"],
    )
    parser.add_argument("--start-kinds", nargs="+", default=list(START_KINDS), choices=START_KINDS)
    parser.add_argument("--memory", action="store_true", help="also measure peak memory")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the tests)")
    args = parser.parse_args(argv)
    # the generated matrices have a few empty rows and columns; that is expected here
    warnings.filterwarnings("ignore", category=pnmf.ZeroRowsColumnsWarning)

    cases = cases_for(args.cases, args.quick)
    # compile (or load) the numba kernels, serial and parallel, before timing
    for t in args.threads:
        quiet_kl_nmf(np.eye(3, dtype=int), 2, max_iter=2, random_seed=0, n_jobs=t)
    print(f"cores {os.cpu_count()}, load at start {os.getloadavg()}")

    results = {
        name: run_case(name, V, K, it, args.starts, args.start_kinds, args.threads)
        for name, V, K, it in cases
    }

    if args.memory and "sparse" in args.cases:
        V_sp, K_sp = next((V, K) for n, V, K, _ in cases if n == "sparse")
        F, N = V_sp.shape
        big = sparse_counts(2 * F, 2 * N, K_sp, V_sp.nnz, seed=0)
        print("\n== memory (sparse input): tracemalloc peak during kl_nmf")
        for V in (V_sp, big):
            mb = peak_memory(V, K_sp)
            dense_mb = V.shape[0] * V.shape[1] * 8 / 2**20
            print(
                f"V {V.shape}, nnz {V.nnz}: peak {mb:.1f} MB "
                f"(a dense float64 V would be {dense_mb:.0f} MB)"
            )

    print("\n== medians per case, kind and threads (ratio: sklearn s / kl_nmf s to its objective)")
    for name, rows in results.items():
        target = TARGETS["sparse" if name == "sparse" else "dense"]
        for kind in args.start_kinds:
            for t in args.threads:
                sel = [r for r in rows if r.kind == kind and r.threads == t]
                ratio = float(np.median([r.speedup for r in sel]))
                rel = np.array([r.full_obj / r.sk_obj for r in sel])
                print(
                    f"{name} {kind} threads {t} (load {np.mean([r.load for r in sel]):.2f}): "
                    f"median {ratio:.1f}x (target {target:.0f}x), reach iterations "
                    f"{[r.reach_iter for r in sel]}, final objective kl_nmf <= sklearn in "
                    f"{int((rel <= 1).sum())} of {rel.size}, median ratio {np.median(rel):.6f}"
                )
    return results


if __name__ == "__main__":
    main()
