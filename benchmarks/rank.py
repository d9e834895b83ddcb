"""Choosing K: recovery of the true K on data drawn from the model, speed, Dask efficiency.

Recovery: ``n_sets`` data sets V ~ Poisson(WH), W (F x K) and H (K x N) with
Gamma(shape, 1) entries (NumPy's shape and scale; scale 1), WH scaled to a mean count
per entry ``mean``:

- F, N log-uniform on [30, max_size] (500), redrawn until min(F, N) >= 4 K so that K
  is identifiable ((F + N) K stays below half the F N entries);
- true K uniform on 2..10, shape uniform on [0.5, 1], mean log-uniform on [2, 50];
- every other set is passed as a SciPy sparse matrix (the sparse code path).

Each set is scored by ``select_rank(V, grid, random_seed=s)`` with the default rule
(one standard error) over the grid max(1, K - 3) .. K + 3, and again with another seed
(new folds and starts) for the reseeding agreement. The confusion table (true K by
chosen K) is printed.

Speed: all digits, K = 2..12 by cross-validation on 2 threads (``--digits``).
Dask: the same digits grid serially with one thread per piece, then on a
``LocalCluster`` of 2 single-threaded worker processes (``--efficiency``);
efficiency = serial time / (2 x Dask time).

The machine is shared: every timing is printed beside the load average and threads.

Usage::

    python benchmarks/rank.py [--sets 50] [--max-size 500] [--digits] [--efficiency]
    python benchmarks/rank.py --quick      # 2 small sets, run by the tests
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import scipy.sparse as sp

import poisson_nmf as pnmf
from poisson_nmf.rank import select_rank


def draw_set(rng: np.random.Generator, max_size: int) -> dict:
    """One data set's settings and counts (see the module docstring)."""
    K = int(rng.integers(2, 11))
    while True:
        F, N = (int(x) for x in np.exp(rng.uniform(np.log(30), np.log(max_size), size=2)))
        if min(F, N) >= 4 * K:
            break
    shape = float(rng.uniform(0.5, 1.0))
    mean = float(np.exp(rng.uniform(np.log(2), np.log(50))))
    W = rng.gamma(shape, 1.0, size=(F, K))
    H = rng.gamma(shape, 1.0, size=(K, N))
    lam = W @ H
    V = rng.poisson(lam * mean / lam.mean())
    return {"F": F, "N": N, "true": K, "shape": shape, "mean": mean, "V": V}


def run(
    n_sets: int = 50,
    *,
    max_size: int = 500,
    random_seed: int = 0,
    reseed: bool = True,
    executor: object = None,
    log: bool = False,
) -> pd.DataFrame:
    """Recovery table: one row per data set (true K, chosen K, reseeded choice, times)."""
    rng = np.random.default_rng(random_seed)
    rows = []
    for i in range(n_sets):
        d = draw_set(rng, max_size)
        V = d.pop("V")
        sparse = i % 2 == 1
        data = sp.csr_array(V) if sparse else V
        K = d["true"]
        grid = range(max(1, K - 3), K + 4)
        row = {**d, "format": "sparse" if sparse else "dense", "zeros": float((V == 0).mean())}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pnmf.ZeroRowsColumnsWarning)
            t = time.perf_counter()
            sel = select_rank(data, grid, random_seed=1000 + i, executor=executor)
            row["seconds"] = time.perf_counter() - t
            row["chosen"] = sel.best
            row["argmax"] = int(sel.table.loc[sel.table["elpd_diff"].idxmin(), "n_components"])
            if reseed:
                sel2 = select_rank(data, grid, random_seed=2000 + i, executor=executor)
                row["reseeded"] = sel2.best
        rows.append(row)
        if log:
            print(
                f"set {i:2d}: {d['F']:3d} x {d['N']:3d}, K = {K:2d}, shape {d['shape']:.2f}, "
                f"mean {d['mean']:5.1f}, {row['format']:6s} -> {row['chosen']}"
                + (f" / {row['reseeded']}" if reseed else "")
                + f"  ({row['seconds']:.1f} s, load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    return pd.DataFrame(rows)


def _digits_time(
    executor: object = None, rows: int | None = None, k_max: int = 12
) -> tuple[float, object]:
    V = pnmf.load_digits()[:rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pnmf.ZeroRowsColumnsWarning)
        t = time.perf_counter()
        sel = select_rank(V, range(2, k_max + 1), random_seed=0, executor=executor)
    return time.perf_counter() - t, sel


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    """Run the benchmark; returns the recovery rows (``None`` with ``--sets 0``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", type=int, default=50)
    p.add_argument("--max-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="threads for the recovery runs")
    p.add_argument("--digits", action="store_true", help="time all digits, K = 2..12")
    p.add_argument("--figure", default=None, help="with --digits: save the plot here")
    p.add_argument("--efficiency", action="store_true", help="Dask: 2 workers vs serial")
    p.add_argument(
        "--efficiency-rows",
        type=int,
        default=None,
        help="digits rows for --efficiency (default all)",
    )
    p.add_argument("--efficiency-kmax", type=int, default=12, help="largest K for --efficiency")
    p.add_argument(
        "--quick", action="store_true", help="2 small sets, up to 40 x 40 (run by the tests)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.sets, args.max_size = 2, 40
    print(f"load average {os.getloadavg()}, cpus {os.cpu_count()}, workers {args.workers}")
    if args.digits:
        with ThreadPoolExecutor(2) as ex:
            secs, sel = _digits_time(ex)
        print(f"digits K = 2..12 by CV, 2 threads: {secs:.1f} s (load {os.getloadavg()})")
        print(sel.summary())
        if args.figure:
            import matplotlib

            matplotlib.use("Agg")
            ax = sel.plot()
            ax.set_title("all digits (1797 x 64): " + ax.get_title(), fontsize=8)
            ax.figure.savefig(args.figure, dpi=110, bbox_inches="tight")
    if args.efficiency:
        from distributed import Client, LocalCluster

        rows, k_max = args.efficiency_rows, args.efficiency_kmax
        print(f"efficiency on digits[:{rows}], K = 2..{k_max}")
        t_serial, s1 = _digits_time(None, rows, k_max)
        print(f"serial, 1 thread per piece: {t_serial:.1f} s (load {os.getloadavg()})")
        with (
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):  # fmt: skip
            client.run(lambda: __import__("poisson_nmf.rank"))  # imports before the clock
            t_dask, s2 = _digits_time(client, rows, k_max)
        print(f"Dask, 2 single-threaded workers: {t_dask:.1f} s (load {os.getloadavg()})")
        print(f"parallel efficiency {t_serial / (2 * t_dask):.2f}; "
              f"tables equal: {s1.table.equals(s2.table)}")  # fmt: skip
    if args.sets:
        with ThreadPoolExecutor(args.workers) as ex:
            rows = run(args.sets, max_size=args.max_size, random_seed=args.seed,
                       executor=ex if args.workers > 1 else None, log=True)  # fmt: skip
        hit = (rows["chosen"] == rows["true"]).mean()
        same = (rows["chosen"] == rows["reseeded"]).mean()
        print(pd.crosstab(rows["true"], rows["chosen"], rownames=["true K"],
                          colnames=["chosen K"]))  # fmt: skip
        print(f"chosen K == true K: {hit:.0%} of {len(rows)} (target >= 90%)")
        print(f"reseeded choice == first choice: {same:.0%} (target >= 95%)")
        print(f"argmax of elpd == true K: {(rows['argmax'] == rows['true']).mean():.0%}")
        print(f"total {rows['seconds'].sum():.0f} s for the first runs; load {os.getloadavg()}")
        return rows
    return None


if __name__ == "__main__":
    main()
