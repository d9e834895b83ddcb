"""kl_nmf (coordinate descent) against scikit-learn's KL multiplicative updates.

Side by side in one process, from the same random starts (``initial_factors``;
scikit-learn's ``init="custom"``): scikit-learn's ``NMF(beta_loss="kullback-leibler",
solver="mu")`` runs a fixed number of iterations; kl_nmf is timed to the iteration at
which its history first reaches scikit-learn's final objective, and again to its own
convergence. Both objectives are computed with ``poisson_nmf.kl_divergence``.

Cases: the digits (1797 x 64, K = 10, 1000 scikit-learn iterations) and a sparse
count matrix drawn from a Poisson NMF model (5000 x 3000, about 1.3 % non-zeros,
K = 20, 200 scikit-learn iterations). For the sparse case the peak of Python-level
(NumPy) allocations during kl_nmf is measured with tracemalloc, also on a matrix with
4x the F x N and the same number of counts: it follows nnz, not F x N.

Run: ``.venv/bin/python benchmarks/kl_vs_sklearn.py [--starts 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import NMF

import poisson_nmf as pnmf

TARGETS = {"digits": 10.0, "sparse": 5.0}


@dataclass
class Row:
    start: int
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


def quiet_kl_nmf(V, K, **kw) -> pnmf.KLResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pnmf.ConvergenceWarning)
        return pnmf.kl_nmf(V, K, **kw)


def run_case(name: str, V, K: int, sk_iter: int, starts: int) -> list[Row]:
    counts = pnmf.as_counts(V)
    X = counts.values if counts.is_sparse else counts.dense()
    rows = []
    for s in range(starts):
        W0, H0 = pnmf.initial_factors(counts, K, random_seed=s)
        sk = NMF(K, init="custom", beta_loss="kullback-leibler", solver="mu")
        sk.set_params(max_iter=sk_iter, tol=0.0)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            W = sk.fit_transform(X, W=W0.copy(), H=H0.copy())
        sk_time = time.perf_counter() - t
        sk_obj = pnmf.kl_divergence(counts, (W, sk.components_))

        t = time.perf_counter()
        full = quiet_kl_nmf(counts, K, init=(W0, H0))
        full_time = time.perf_counter() - t
        hit = np.flatnonzero(full.history <= sk_obj)
        if hit.size:
            reach_iter = int(hit[0]) + 1
            t = time.perf_counter()
            quiet_kl_nmf(counts, K, init=(W0, H0), max_iter=reach_iter, tol=0.0)
            reach_time = time.perf_counter() - t
        else:
            reach_iter, reach_time = -1, np.inf
        rows.append(
            Row(s, sk_time, sk_obj, reach_iter, reach_time, full.n_iter, full_time, full.objective)
        )
    print(f"\n== {name}: V {counts.shape}, nnz {counts.nz_values.size}, K = {K}")
    print(
        f"{'start':>5} | {'sklearn s':>9} {'sklearn objective':>18} | "
        f"{'kl_nmf to it':>12} {'iters':>5} | {'kl_nmf conv':>11} {'iters':>5} "
        f"{'kl_nmf objective':>17}"
    )
    for r in rows:
        print(
            f"{r.start:>5} | {r.sk_time:>9.3f} {r.sk_obj:>18.6f} | {r.reach_time:>12.3f} "
            f"{r.reach_iter:>5} | {r.full_time:>11.3f} {r.full_iter:>5} {r.full_obj:>17.6f}"
        )
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


def main(argv: list[str] | None = None) -> dict[str, list[Row]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3, help="random starts per case")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the tests)")
    args = parser.parse_args(argv)
    # the generated matrices have a few empty rows and columns; that is expected here
    warnings.filterwarnings("ignore", category=pnmf.ZeroRowsColumnsWarning)

    digits = pnmf.load_digits()
    if args.quick:
        cases = [
            ("digits", digits[:300], 10, 100),
            ("sparse", sparse_counts(400, 300, 10, 2_000, seed=0), 10, 50),
        ]
        big = sparse_counts(800, 600, 10, 2_000, seed=0)
    else:
        cases = [
            ("digits", digits, 10, 1000),
            ("sparse", sparse_counts(5000, 3000, 20, 200_000, seed=0), 20, 200),
        ]
        big = sparse_counts(10_000, 6000, 20, 200_000, seed=0)
    # compile (or load) the numba kernels before timing
    quiet_kl_nmf(np.eye(3, dtype=int), 2, max_iter=2, random_seed=0)

    results = {name: run_case(name, V, K, it, args.starts) for name, V, K, it in cases}

    V_sp, K_sp = cases[1][1], cases[1][2]
    mem = [(V_sp, peak_memory(V_sp, K_sp)), (big, peak_memory(big, K_sp))]
    print("\n== memory (sparse input): tracemalloc peak during kl_nmf")
    for V, mb in mem:
        dense_mb = V.shape[0] * V.shape[1] * 8 / 2**20
        print(
            f"V {V.shape}, nnz {V.nnz}: peak {mb:.1f} MB "
            f"(a dense float64 V would be {dense_mb:.0f} MB)"
        )

    print("\n== ratios (sklearn time / kl_nmf time to reach sklearn's objective; objectives)")
    for name, rows in results.items():
        for r in rows:
            ok = r.speedup >= TARGETS[name] and r.full_obj <= r.sk_obj
            print(
                f"{name:>6} start {r.start}: {r.speedup:7.1f}x sooner (target "
                f"{TARGETS[name]:.0f}x), final objective kl_nmf / sklearn = "
                f"{r.full_obj / r.sk_obj:.6f}  {'ok' if ok else 'MISSED'}"
            )
    return results


if __name__ == "__main__":
    main()
