"""What a resumed run costs: a run stopped at its budget, then continued to twice it.

``sample_posterior`` with a target no run reaches stops at ``max_draws``; ``resume``
then continues its chains from the stored state (no warm-up) to twice the budget. The
script prints the wall time and gradients (nutpie's leapfrog steps, which the machine's
load does not change) of both, and checks that the stored draws come out unchanged.

    python benchmarks/resume.py                       # 300 digits, K = 6, 500 then 1000
    python benchmarks/resume.py --rows 100 --components 3 --budget 200
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=300, help="digits rows (default 300)")
    p.add_argument("--components", type=int, default=6)
    p.add_argument("--budget", type=int, default=500, help="max_draws of the first run")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.rows < 2 or a.components < 1 or a.budget < 1:
        p.error("--rows must be >= 2, --components and --budget >= 1")

    import poisson_nmf as pnmf

    V = pnmf.load_digits()[: a.rows]
    V = V[:, V.sum("row") > 0]
    never = {"target_ess": 1e12, "pointwise_draws": 0, "progress": False}
    print(f"load before: {os.getloadavg()[0]:.2f}; {V.shape[0]} x {V.shape[1]}, "
          f"K = {a.components}; 4 chains, 2 at a time (one thread each)")  # fmt: skip
    tiny = V[:40]
    tiny = tiny[:, tiny.sum("row") > 0]
    pnmf.sample_posterior(tiny, 1, draws=10, tune=10, chains=2, progress=False)  # compile

    t = time.perf_counter()
    first = pnmf.sample_posterior(V, a.components, max_draws=a.budget, random_seed=a.seed,
                                  **never)  # fmt: skip
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    more = pnmf.sample_posterior(V, a.components, resume=first, max_draws=2 * a.budget,
                                 **never)  # fmt: skip
    t_more = time.perf_counter() - t
    d = first["posterior"].sizes["draw"]
    same = bool(np.array_equal(more["posterior"]["W"].values[:, :d],
                               first["posterior"]["W"].values))  # fmt: skip
    steps_first = int(first["sample_stats"]["n_steps"].sum())
    steps_new = int(more["sample_stats"]["n_steps"].values[:, d:].sum())
    cont = json.loads(more.attrs["sampler"]).get("resumed_without_warmup", False)
    print(f"first run: {t_first:.1f} s, {d} draws per chain, {steps_first} gradients in the "
          f"kept draws (plus the warm-up's)")  # fmt: skip
    print(f"resumed:   {t_more:.1f} s, {more['posterior'].sizes['draw'] - d} new draws per "
          f"chain, {steps_new} gradients in them; no warm-up: "
          f"{cont}; stored draws unchanged: {same}")  # fmt: skip
    print(f"ratio of wall times (resumed / first): {t_more / t_first:.2f}; "
          f"load after: {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
