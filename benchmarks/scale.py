"""Variational posterior at the size of real count tables: time and peak memory.

Counts drawn from the model (Gamma(0.3, 1) factors scaled to the fill asked for) as a
``scipy.sparse`` matrix, then ``sample_posterior(method="vi")`` followed by ``diagnose``,
timed (wall and CPU seconds, the load and the threads printed beside them), with the
peak resident memory of the process (``resource.getrusage``, the whole process:
Python, NumPy, Numba and the data; ``/usr/bin/time -v`` reports the same). Targets:
5,000 x 2,000, 10 % non-zeros, K = 20 in at most 60 s and 2 GB; 20,000 x 5,000, 2 %,
K = 30 (``--large``) in 5 minutes.

    python benchmarks/scale.py             # the 5,000 x 2,000 case
    python benchmarks/scale.py --large     # also the 20,000 x 5,000 case
    python benchmarks/scale.py --quick     # a tiny case (the tests run it)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import scipy.sparse as sp


def _peak_mb() -> float:
    # ru_maxrss is in kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulate(F: int, N: int, K: int, fill: float, seed: int) -> sp.csr_array:
    """Poisson(WH) counts with about ``fill`` non-zeros, built block by block (no F x N)."""
    rng = np.random.default_rng(seed)
    W = rng.gamma(0.3, 1.0, (F, K))
    H = rng.gamma(0.3, 1.0, (K, N))
    # mean rate m with P(v > 0) = 1 - exp(-m) about fill (rates vary: aim a bit higher)
    m = -np.log1p(-fill) * 1.3
    c = np.sqrt(m / (W.mean() * H.mean() * K))
    W *= c
    H *= c
    blocks = []
    for lo in range(0, F, 1000):
        lam = W[lo : lo + 1000] @ H
        blocks.append(sp.csr_array(rng.poisson(lam).astype(np.int32)))
    return sp.vstack(blocks, format="csr")


def run(F: int, N: int, K: int, fill: float, seed: int = 0) -> dict:
    import poisson_nmf as pnmf

    V = simulate(F, N, K, fill, seed)
    print(f"V: {F} x {N}, {V.nnz / (F * N):.1%} non-zeros, K = {K}; load {os.getloadavg()}")
    # the machine is shared: CPU seconds of this process (all its threads) beside the wall
    c0, t0 = time.process_time(), time.perf_counter()
    tree = pnmf.sample_posterior(V, K, method="vi", random_seed=seed)
    c1, t1 = time.process_time(), time.perf_counter()
    diag = pnmf.diagnose(tree)
    c2, t2 = time.process_time(), time.perf_counter()
    vi = json.loads(tree.attrs["vi"])
    out = {
        "shape": [F, N],
        "nnz": int(V.nnz),
        "K": K,
        "vi_s": round(t1 - t0, 1),
        "fit_s": round(float(tree.attrs["sampling_time_s"]), 1),
        "diagnose_s": round(t2 - t1, 1),
        "total_s": round(t2 - t0, 1),
        "cpu_s": {"vi": round(c1 - c0, 1), "diagnose": round(c2 - c1, 1)},
        "peak_rss_mb": round(_peak_mb()),
        "stages_s": {k: round(v, 1) for k, v in vi["time_s"].items()},
        "iterations": [r["n_iter"] for r in vi["restarts"]],
        "passes_kept": vi["n_passes"],
        "converged": vi["converged"],
        "restart_elbo_spread": round(vi["restart_elbo_spread"], 1),
        "restart_max_tv_w": round(vi["restart_max_tv_distance_w"], 3),
        "khat": None if vi["psis"] is None else round(vi["psis"]["khat"], 2),
        "draws": int(tree["posterior"].sizes["draw"]),
        "verdict": diag.verdict,
        "load": os.getloadavg(),
        "threads": f"{vi['threads']} threads over {vi['blocks']} blocks of rows; "
        f"cpus {os.cpu_count()}",
    }
    print(json.dumps(out))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tiny case")
    p.add_argument("--large", action="store_true", help="also 20,000 x 5,000, 2 %%, K = 30")
    args = p.parse_args(argv)
    if args.quick:
        run(60, 40, 3, 0.2)
        return 0
    res = run(5000, 2000, 20, 0.10)
    ok = res["total_s"] <= 60 and res["peak_rss_mb"] <= 2048
    print(f"5000 x 2000: {res['total_s']} s, {res['peak_rss_mb']} MB: "
          + ("within" if ok else "OUTSIDE") + " 60 s and 2 GB")  # fmt: skip
    if args.large:
        res = run(20000, 5000, 30, 0.02)
        print(f"20000 x 5000: {res['total_s']} s (target 300 s), {res['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
