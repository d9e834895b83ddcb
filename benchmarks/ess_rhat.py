"""R-hat, bulk and tail ESS of many entries: poisson_nmf.ess_rhat against arviz_stats.

Both compute the same numbers (``tests/test_ess_rhat.py``) on the same draws, AR(1)
chains of ``--entries`` entries, in one run; the script prints each side's seconds,
the ratio, the machine's load and the threads each side used (ArviZ: one; ours:
``--workers``), and the largest relative difference between the two.

    python benchmarks/ess_rhat.py                         # 4 x 1000 draws, 2000 entries
    python benchmarks/ess_rhat.py --draws 3500 --entries 500
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--entries", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    import arviz_stats as azs
    import xarray as xr

    from poisson_nmf.ess_rhat import rank_diagnostics

    rng = np.random.default_rng(0)
    e = rng.standard_normal((a.chains, a.draws, a.entries)).astype(np.float32)
    x = np.empty_like(e)
    x[:, 0] = e[:, 0]
    for t in range(1, a.draws):
        x[:, t] = 0.9 * x[:, t - 1] + 0.3 * e[:, t]
    print(f"{a.chains} chains x {a.draws} draws x {a.entries} entries (float32); "
          f"load {os.getloadavg()}, {os.cpu_count()} CPUs")  # fmt: skip
    t0 = time.perf_counter()
    mine = rank_diagnostics(x, mcse=False, workers=a.workers)
    t_mine = time.perf_counter() - t0
    ds = xr.Dataset({"a": (("chain", "draw", "entry"), x)})
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = {
            "r_hat": azs.rhat(ds)["a"].values,
            "ess_bulk": azs.ess(ds, method="bulk")["a"].values,
            "ess_tail": azs.ess(ds, method="tail")["a"].values,
        }
    t_arviz = time.perf_counter() - t0
    diff = max(float(np.max(np.abs(getattr(mine, k) / v - 1))) for k, v in ref.items())
    print(f"poisson_nmf.ess_rhat ({a.workers} threads): {t_mine:.2f} s")
    print(f"arviz_stats (1 thread):              {t_arviz:.2f} s")
    print(f"ratio arviz / ours: {t_arviz / t_mine:.1f}; largest relative difference {diff:.1e}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
