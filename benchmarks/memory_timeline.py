"""Where ``sample_posterior`` holds its memory: resident memory once a second, with phases.

Runs ``sample_posterior`` at its defaults on the digits (all rows or the first
``--rows``, the all-zero pixel columns dropped) while a thread reads the process's
resident set size (``VmRSS`` of ``/proc/self/status``, Linux) every ``--every`` seconds;
each progress phase ("sampling", "aligning the draws", ...) is marked when it starts.
Memory is in GB of 10^9 bytes, the unit of ``max_memory="4GB"``. Prints the peak, the
phases and the stopping record's checks; ``--json`` writes the
samples as ``[seconds, GB, phase or null]``.

    python benchmarks/memory_timeline.py                  # all digits, K = 10 (minutes)
    python benchmarks/memory_timeline.py --rows 300 --components 6

A one-second sample can miss a short spike: GNU time's ``-v`` gives the true maximum of
the whole process (``/usr/bin/time -v python benchmarks/memory_timeline.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import warnings


def _rss_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024 / 1e9  # kB are KiB; GB as max_memory
    return float("nan")


def main(argv: list[str] | None = None) -> list[tuple[float, float, str | None]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=None, help="first rows of the digits")
    ap.add_argument("--components", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    ap.add_argument("--json", default=None, metavar="PATH")
    a = ap.parse_args(argv)
    if a.rows is not None and a.rows < 1:
        ap.error(f"--rows must be >= 1, got {a.rows}")
    if a.components < 1:
        ap.error(f"--components must be >= 1, got {a.components}")
    if not a.every > 0:
        ap.error(f"--every must be > 0 seconds, got {a.every}")
    if a.json and not os.path.isdir(os.path.dirname(os.path.abspath(a.json))):
        ap.error(f"--json {a.json}: its folder does not exist")

    import poisson_nmf as pnmf
    from poisson_nmf.progress import SamplingProgress

    log: list[tuple[float, float, str | None]] = []
    t0 = time.perf_counter()
    done = threading.Event()

    def sample() -> None:
        while not done.wait(a.every):
            log.append((round(time.perf_counter() - t0, 1), round(_rss_gb(), 3), None))

    phase = SamplingProgress.phase

    def marked(self, name, *args, **kwargs):  # type: ignore[no-untyped-def]
        log.append((round(time.perf_counter() - t0, 1), round(_rss_gb(), 3), name))
        return phase(self, name, *args, **kwargs)

    V = pnmf.load_digits()
    if a.rows is not None:
        V = V[: a.rows]
    V = V[:, V.sum("row") > 0]
    print(f"digits {V.shape[0]} x {V.shape[1]}, K = {a.components}, seed {a.seed}; "
          f"load {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    SamplingProgress.phase = marked  # type: ignore[method-assign]
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = pnmf.sample_posterior(V, a.components, random_seed=a.seed, progress=True)
    finally:
        done.set()
        SamplingProgress.phase = phase  # type: ignore[method-assign]
    wall = time.perf_counter() - t0
    st = json.loads(tree.attrs["stopping"])
    peak = max(log, key=lambda r: r[1])
    print(f"wall {wall:.1f} s; load {os.getloadavg()}; stopped {st['reason']} at "
          f"{st['draws_per_chain']} draws per chain (max_draws {st['max_draws']})")  # fmt: skip
    for c in st.get("checks", []):
        r, b, t = (float("nan") if c[k] is None else c[k]
                   for k in ("worst_r_hat", "min_ess_bulk", "min_ess_tail"))  # fmt: skip
        print(f"  check at {c['draws']}: R-hat {r:.4f}, bulk ESS {b:.0f}, tail ESS {t:.0f}, "
              f"{c['entries_checked']} entries, {c['seconds']} s")  # fmt: skip
    timed = "" if any(r[2] is None for r in log) else " (phase marks only: no timed sample)"
    print(f"peak {peak[1]:.2f} GB at {peak[0]} s{timed}")
    for t, gb, name in log:
        if name:
            print(f"  {t:7.1f} s {gb:6.2f} GB  {name}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(log, f)
    return log


if __name__ == "__main__":
    main()
