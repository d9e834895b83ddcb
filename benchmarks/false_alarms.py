"""How often does diagnose warn or fail on data drawn from the model itself?

Each data set is drawn from V ~ Poisson(WH): F and N log-uniform in [8, --max-size]
(default 300), K in 1..8 (at most min(F, N)), W ~ Gamma(a_w, 1) and H ~ Gamma(a_h,
**scale** s) in NumPy's (shape, scale), with each shape drawn from {0.5, 1, 2} (below, at
and above 1) and s set so that the mean count is about 5; every other data set is
passed as a SciPy sparse matrix. Each is sampled with ``sample_posterior`` at its
defaults (or ``--draws/--tune/--chains``) and diagnosed with ``diagnose`` at its
defaults. The script prints, for every check, the share of data sets on which it fired
(not passed; warn and fail checks, and the info notices separately) with its 95 %
binomial interval (scipy's ``binomtest``, Clopper-Pearson), then every FAIL with its
inputs, so that it can be rerun alone (``--resume-fails`` reruns each FAIL that stopped
at its budget and resumes it with twice the budget, as ``diagnose`` advises).

Targets (issue 18): each model-fit warning (``ppc_coverage``, ``ppc_discrepancy``) fires
on at most about 5 % of data sets from the model; FAIL is rare.

    python benchmarks/false_alarms.py --json fa.json     # 200 data sets, defaults (hours;
                                                         # run again to go on from fa.json)
    python benchmarks/false_alarms.py --n 40 --max-size 40 --draws 300 --tune 300
    python benchmarks/false_alarms.py --quick            # smoke test
    python benchmarks/false_alarms.py --json fa.json --resume-fails   # then resume FAILs
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import binomtest

MODEL_FIT = ("ppc_coverage", "ppc_discrepancy")
SHAPES = (0.5, 1.0, 2.0)


def draw_case(i: int, seed: int, max_size: int) -> dict:
    """The inputs of data set i: sizes, K, Gamma shapes, sparse or not, and its seed."""
    rng = np.random.default_rng([seed, i])
    F, N = (int(round(np.exp(rng.uniform(np.log(8), np.log(max_size))))) for _ in range(2))
    K = int(rng.integers(1, min(8, F, N) + 1))
    return {
        "i": i,
        "seed": seed,
        "F": F,
        "N": N,
        "K": K,
        "w_shape": float(rng.choice(SHAPES)),
        "h_shape": float(rng.choice(SHAPES)),
        "sparse": bool(i % 2),
        "data_seed": int(rng.integers(2**31)),
    }


def draw_counts(case: dict) -> np.ndarray:
    rng = np.random.default_rng(case["data_seed"])
    F, N, K = case["F"], case["N"], case["K"]
    W = rng.gamma(case["w_shape"], 1.0, (F, K))
    # mean of (WH)_fn is K * w_shape * h_shape * s: s sets it to about 5
    s = 5.0 / (K * case["w_shape"] * case["h_shape"])
    H = rng.gamma(case["h_shape"], s, (K, N))  # NumPy's (shape, scale)
    return rng.poisson(W @ H)


def _data(case: dict) -> np.ndarray | sp.csr_array:
    """The counts of a data set as they are passed (every other one sparse)."""
    V = draw_counts(case)
    return sp.csr_array(V) if case["sparse"] else V


def run_one(case: dict, draws: int | None, tune: int | None, chains: int | None) -> dict:
    import poisson_nmf as pnmf

    X = _data(case)
    if X.sum() == 0:
        return {**case, "skipped": "all zeros"}
    kw = {k: v for k, v in {"draws": draws, "tune": tune, "chains": chains}.items() if v}
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the verdict is what is counted
        idata = pnmf.sample_posterior(X, case["K"], random_seed=case["i"], **kw)
        d = pnmf.diagnose(idata)
    fired = [c.name for c in d.checks if not c.passed]
    return {
        **case,
        "verdict": d.verdict,
        "fired": fired,
        "reasons": list(d.reasons),
        "ppp": d.ppc["ppp"] if d.ppc else np.nan,
        "coverage": d.ppc["coverage"] if d.ppc else np.nan,
        "seconds": time.perf_counter() - t,
        "stopped": json.loads(idata.attrs["stopping"])["reason"],
        "draws_per_chain": int(idata["posterior"].sizes["draw"]),
        "divergences": int(idata["sample_stats"]["diverging"].sum()),
    }


def resume_fail(row: dict) -> str:
    """Run a FAIL's data set again and resume it as ``diagnose`` advises; one line.

    For a run stopped at its budget (``max_draws``) at the defaults: the same call again,
    then ``sample_posterior(..., resume=idata, max_draws=2 x the budget)`` and
    ``diagnose``. The line gives the verdict, why it stopped, the draws per chain and each
    check of the continued run.
    """
    import poisson_nmf as pnmf

    case = {k: row[k] for k in _CASE_KEYS}
    if row["stopped"] != "max_draws" or any(row.get("settings", {}).values()):
        return f"{case['i']}: not a run at the defaults stopped at max_draws; not resumed"
    X = _data(case)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = pnmf.sample_posterior(X, case["K"], random_seed=case["i"], progress=False)
        budget = json.loads(idata.attrs["stopping"])["max_draws"]
        res = pnmf.sample_posterior(X, case["K"], resume=idata, max_draws=2 * budget,
                                    progress=False)  # fmt: skip
        d = pnmf.diagnose(res)
    st = json.loads(res.attrs["stopping"])
    checks = ", ".join(f"{c['draws']}: R-hat {c['worst_r_hat']:.4f} ESS "
                       f"{min(c['min_ess_bulk'], c['min_ess_tail']):.0f}"
                       for c in st["checks"] if c["worst_r_hat"] is not None)  # fmt: skip
    return (f"{case['i']}: resumed to max_draws={2 * budget}: {d.verdict}, stopped "
            f"{st['reason']} at {st['draws_per_chain']} draws per chain, "
            f"{int(res['sample_stats']['diverging'].sum())} divergences, "
            f"{time.perf_counter() - t:.0f} s both runs (checks {checks})")  # fmt: skip


def summarise(rows: list[dict]) -> pd.DataFrame:
    """Rate of every check (and of each verdict) with its 95 % binomial interval."""
    done = [r for r in rows if "verdict" in r]
    n = len(done)
    names = sorted({f for r in done for f in r["fired"]} | set(MODEL_FIT))
    out = []
    for name in names:
        k = sum(name in r["fired"] for r in done)
        out.append((name, k))
    for v in ("warn", "fail"):
        out.append((f"verdict {v}", sum(r["verdict"] == v for r in done)))
    table = []
    for name, k in out:
        ci = binomtest(k, n).proportion_ci(0.95) if n else None
        table.append({
            "reason": name,
            "fired": k,
            "of": n,
            "rate": k / n if n else np.nan,
            "ci95_low": ci.low if ci else np.nan,
            "ci95_high": ci.high if ci else np.nan,
        })  # fmt: skip
    return pd.DataFrame(table)


def _earlier_rows(a: argparse.Namespace) -> list[dict]:
    """The rows of an earlier run of the same command in ``--json``, to go on from.

    A run of 200 data sets at the defaults takes hours on 2 cores: it can be stopped
    and started again, in pieces. Rows count only if they are the same data sets (the
    same seed, sizes and settings) in order; anything else starts from the beginning.
    """
    if not a.json or not os.path.exists(a.json):
        return []
    try:
        with open(a.json) as f:
            rows = json.load(f)
        same = [isinstance(r, dict) and r.get("i") == i
                and {k: r.get(k) for k in _CASE_KEYS} == draw_case(i, a.seed, a.max_size)
                and r.get("settings", {}) == _settings(a) for i, r in enumerate(rows)]  # fmt: skip
    except (ValueError, TypeError, AttributeError) as e:  # not JSON, or not a list of rows
        raise SystemExit(f"{a.json} is not a file of rows of this script ({e}); "
                         "pass another --json or remove it") from None  # fmt: skip
    if not all(same):
        raise SystemExit(f"{a.json} holds rows of another command (other seed, sizes or "
                         "settings): pass another --json, or remove it to start again")  # fmt: skip
    print(f"  going on from {len(rows)} data sets in {a.json}")
    return rows[: a.n]


def _write_rows(path: str, rows: list[dict]) -> None:
    """Write the rows to ``path`` at once (a run cut off mid-write leaves the old file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(rows, f, indent=1, default=float)
    os.replace(tmp, path)


def _commit() -> str | None:
    """The git commit of the code that ran (None outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=os.path.dirname(os.path.abspath(__file__)))  # fmt: skip
    except OSError:
        return None
    return out.stdout.strip() or None


def _settings(a: argparse.Namespace) -> dict:
    return {"draws": a.draws, "tune": a.tune, "chains": a.chains}


_CASE_KEYS = ("i", "seed", "F", "N", "K", "w_shape", "h_shape", "sparse", "data_seed")


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200, help="number of data sets (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-size", type=int, default=300, help="largest F and N (default 300)")
    p.add_argument("--draws", type=int, default=None, help="default: sample_posterior's")
    p.add_argument("--tune", type=int, default=None)
    p.add_argument("--chains", type=int, default=None)
    p.add_argument("--json", default=None, help="also write every row here (as it goes)")
    p.add_argument("--quick", action="store_true", help="2 tiny data sets, short runs")
    p.add_argument("--resume-fails", action="store_true",
                   help="then resume each FAIL stopped at max_draws as diagnose says")  # fmt: skip
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.max_size, a.draws, a.tune, a.chains = 2, 10, 60, 60, 2
    print(
        f"false alarms: {a.n} data sets from the model, F, N in [8, {a.max_size}], "
        f"draws {a.draws or 'default'}, tune {a.tune or 'default'}, chains "
        f"{a.chains or 'default'}; load {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores"
    )
    rows = _earlier_rows(a)
    commit = _commit()
    t0 = time.perf_counter()
    for i in range(len(rows), a.n):
        r = run_one(draw_case(i, a.seed, a.max_size), a.draws, a.tune, a.chains)
        r["settings"], r["commit"] = _settings(a), commit
        rows.append(r)
        if a.json:  # after every data set: a long run stopped early keeps what it did
            _write_rows(a.json, rows)
        if "verdict" in r:
            print(
                f"  {i:4d} {r['F']:4d} x {r['N']:<4d} K={r['K']} shapes ({r['w_shape']:g}, "
                f"{r['h_shape']:g}) {'sparse' if r['sparse'] else 'dense '} {r['verdict']:4s} "
                f"p={r['ppp']:.3f} cov={r['coverage']:.3f} {r['seconds']:.0f}s "
                f"{r['stopped']}@{r['draws_per_chain']} div={r['divergences']} "
                f"{','.join(r['fired'])}",
                flush=True,
            )
    table = summarise(rows)
    commits = sorted({str(r.get("commit")) for r in rows})
    print(f"\n{len(rows)} data sets in {time.perf_counter() - t0:.0f} s (this run); "
          f"code of commit(s) {', '.join(commits)}")  # fmt: skip
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    fails = [r for r in rows if r.get("verdict") == "fail"]
    for r in fails:
        print("FAIL", {k: r[k] for k in _CASE_KEYS}, r["reasons"])
    if a.resume_fails:
        for r in fails:
            print("  " + resume_fail(r), flush=True)
    return table


if __name__ == "__main__":
    main()
