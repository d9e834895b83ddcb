"""Loadings of new samples given fitted components: fit_loadings against NMF.transform.

Components: ``PoissonNMF(10)`` (flat priors, KL-NMF) fitted to 500 training samples drawn
from a Poisson NMF model with 96 features (the size of a mutational catalogue: K = 10
Dirichlet(0.3) signatures, Gamma(1, 300) loadings, NumPy's (shape, scale)). New samples:
1000 more from the same model. Timed, one after the other in one process:

- ``fit_loadings(method="map")`` (the flat-prior MAP given W; target at most 5 s);
- ``fit_loadings(method="posterior")`` at its defaults and the means and 90 % intervals
  of every loading (target at most 60 s on 2 cores), with the log-density and gradient
  evaluations per sample (a count of work that does not depend on the load), R-hat and
  ESS, and the bulk ESS of the slowest loading per CPU second and per evaluation;
- scikit-learn's ``NMF.transform`` with the same components (``solver="mu"``, 200
  iterations (its default) and 2000, ``tol=1e-10``), and the agreement of the flat-prior
  MAP with it: both objectives (``poisson_nmf.kl_divergence``) and the largest
  difference of loadings relative to the sample's total.

Each figure is printed with the machine's load (``os.getloadavg()``) and the threads.
Numba's first compilation is excluded (a warm-up call on 8 samples).

Run: ``.venv/bin/python benchmarks/transform.py [--new 1000] [--executor threads]``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.decomposition import NMF
from threadpoolctl import threadpool_info

import poisson_nmf as pnmf

F, K = 96, 10


def draw(n: int, W: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    H = rng.gamma(1.0, 300.0, size=(K, n))  # NumPy's gamma is (shape, scale)
    return rng.poisson(W @ H)


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=None, help="default: fit_loadings's")
    ap.add_argument("--executor", choices=("none", "threads"), default="threads")
    args = ap.parse_args()
    rng = np.random.default_rng(2026)
    W_true = rng.dirichlet(np.full(F, 0.3), size=K).T
    X_train = draw(500, W_true, rng).T
    V_new = draw(args.new, W_true, rng)
    blas = {d["internal_api"]: d["num_threads"] for d in threadpool_info()}
    print(f"cores {os.cpu_count()}, BLAS threads {blas}, {load()}")

    est = pnmf.PoissonNMF(K, random_state=0, max_iter=2000).fit(X_train)
    W = est.components_.T
    pnmf.fit_loadings(V_new[:, :8], W, priors=None)  # compile / load Numba's cache
    pnmf.fit_loadings(V_new[:, :8], W, priors=None, method="posterior", draws=5, tune=5)

    t = time.perf_counter()
    H_map = pnmf.fit_loadings(V_new, W, priors=None)["posterior"]["H"].values[0, 0]
    t_map = time.perf_counter() - t
    print(f"fit_loadings map: {t_map:.2f} s for {args.new} samples (target <= 5 s), {load()}")

    ex = ThreadPoolExecutor(2) if args.executor == "threads" else None
    t, c = time.perf_counter(), time.process_time()
    kw = {} if args.draws is None else {"draws": args.draws}
    tree = pnmf.fit_loadings(
        V_new, W, priors=None, method="posterior", random_seed=0, executor=ex, **kw
    )
    Hd = tree["posterior"]["H"]
    mean = Hd.mean(("chain", "draw"))
    lo, hi = Hd.quantile([0.05, 0.95], ("chain", "draw")).values
    t_post, c_post = time.perf_counter() - t, time.process_time() - c
    if ex is not None:
        ex.shutdown()
    A = tree.attrs
    workers = 2 if ex is not None else 1
    print(
        f"fit_loadings posterior + means and 90% intervals: {t_post:.2f} s "
        f"(CPU {c_post:.1f} s over all threads) ({A['chains']} chains x {A['draws']} draws, "
        f"tune {A['tune']}; executor {args.executor}, {workers} worker threads; target <= 60 s); "
        f"per sample {A['logp_evaluations_per_sample']:.0f} log-density and "
        f"{A['gradient_evaluations_per_sample']:.0f} gradient evaluations; acceptance: "
        f"independence steps mean {A['acceptance_rate_mean']:.2f} min "
        f"{A['acceptance_rate_min']:.2f}, trajectories mean {A['hmc_acceptance_mean']:.2f}; "
        f"{load()}"
    )
    t = time.perf_counter()
    diag = pnmf.diagnose(tree)
    ess_min = diag.check("ess_bulk").value
    print(
        f"diagnose: {time.perf_counter() - t:.1f} s; verdict {diag.verdict}, "
        f"max R-hat {diag.check('r_hat').value:.4f}, min bulk ESS "
        f"{ess_min:.0f}, min tail ESS {diag.check('ess_tail').value:.0f}; slowest loading: "
        f"{ess_min / c_post:.1f} bulk ESS per CPU second, "
        f"{ess_min / A['logp_evaluations_per_sample']:.4f} per log-density and "
        f"{ess_min / A['gradient_evaluations_per_sample']:.4f} per gradient evaluation; {load()}"
    )
    print(f"posterior mean vs MAP: median |diff| {float(np.median(abs(mean.values - H_map))):.3g}")
    del lo, hi

    d_map = pnmf.kl_divergence(V_new, (W, H_map))
    for iters in (200, 2000):
        sk = NMF(K, beta_loss="kullback-leibler", solver="mu", max_iter=iters, tol=1e-10)
        sk.components_, sk.n_components_, sk.n_features_in_ = W.T.copy(), K, F
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            H_sk = sk.transform(V_new.T.astype(np.float64)).T
        t_sk = time.perf_counter() - t
        d_sk = pnmf.kl_divergence(V_new, (W, H_sk))
        rel = np.abs(H_sk - H_map).sum(axis=0) / V_new.sum(axis=0)
        print(
            f"sklearn NMF.transform (mu, max_iter={iters}): {t_sk:.2f} s; KL objective "
            f"{d_sk:.6f} vs fit_loadings map {d_map:.6f} (excess {(d_sk - d_map) / d_map:.2e}); "
            f"loadings |diff| / sample total: median {np.median(rel):.2e}, max {rel.max():.2e}"
            f", {load()}"
        )


if __name__ == "__main__":
    main()
