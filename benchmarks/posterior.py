"""Smallest ESS per second: naive pm.sample vs MAP-started nutpie vs sample_posterior.

Both cases of the issue, side by side, each (case, method) in its own process so that
wall time includes compilation (PyTensor's, Numba's, cached or not) and peak memory
(max RSS) is that run's alone. The libraries (pymc, nutpie, arviz_base) are imported
before the clock starts, for every method alike: importing Python modules is not part
of sampling.

    python benchmarks/posterior.py                    # everything (slow: naive runs)
    python benchmarks/posterior.py --cases small --methods sample_posterior
    python benchmarks/posterior.py --draws 200 --tune 200   # a quick look
    python benchmarks/posterior.py --quick                  # smoke test (40 rows, K = 2)

ESS and R-hat are rank-normalised (arviz_stats) over every entry of the normalised
(columns of W sum to one), MAP-aligned W and H, for every method alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
import warnings

CASES = {"small": (300, 6), "full": (1797, 10), "tiny": (40, 2)}
METHODS = ("naive_pymc", "nutpie_map", "sample_posterior")


def _data(case):
    import poisson_nmf as pnmf

    n_rows, K = CASES[case]
    V = pnmf.load_digits()[:n_rows]
    return V[:, V.sum("row") > 0], K


def _diagnose(W, H, W_ref, H_ref):
    import arviz_stats as azs
    import xarray as xr

    from poisson_nmf.align import align_factors

    al = align_factors(W, H, W_ref, H_ref)
    ds = xr.Dataset(
        {
            "W": (("chain", "draw", "row", "component"), al.W),
            "H": (("chain", "draw", "component", "column"), al.H),
        }
    )
    rh, eb, et = azs.rhat(ds), azs.ess(ds, method="bulk"), azs.ess(ds, method="tail")
    return {
        "max_rhat": max(float(rh[v].max()) for v in "WH"),
        "min_ess_bulk": min(float(eb[v].min()) for v in "WH"),
        "min_ess_tail": min(float(et[v].min()) for v in "WH"),
    }


def run_one(case, method, draws, tune, chains, seed):
    import arviz_base  # noqa: F401
    import numpy as np
    import nutpie
    import pymc as pm

    from poisson_nmf import GammaPriors, kl_nmf
    from poisson_nmf.model import build_model
    from poisson_nmf.sampling.api import sample_posterior
    from poisson_nmf.sampling.density import LogDensity
    from poisson_nmf.sampling.starts import fill_zeros

    warnings.simplefilter("ignore")
    V, K = _data(case)
    t0 = time.perf_counter()
    out = {}
    if method == "sample_posterior":
        tree = sample_posterior(V, K, draws=draws, tune=tune, chains=chains, random_seed=seed)
        wall = time.perf_counter() - t0
        post = tree["posterior"]
        ref = tree["reference"]
        diag = _diagnose(post["W"].values, post["H"].values, ref["W"].values, ref["H"].values)
        ss = tree["sample_stats"]
        out["n_modes"] = json.loads(tree.attrs["modes"])["n_modes"]
    else:
        fit = kl_nmf(V, K, priors=GammaPriors(), random_seed=seed, tol=1e-6)
        W_ref, H_ref = fit.W, fit.H
        if method == "naive_pymc":
            with build_model(V, K, likelihood="dense"):
                tr = pm.sample(draws=draws, tune=tune, chains=chains, cores=2,
                               random_seed=seed, progressbar=False,
                               compute_convergence_checks=False)  # fmt: skip
        else:
            from poisson_nmf.data import as_counts

            counts = as_counts(V)
            dens = LogDensity.build(counts, K, GammaPriors())
            x0 = dens.pack(*fill_zeros(counts, W_ref, H_ref, dens))
            compiled = nutpie.compile_pymc_model(build_model(V, K, likelihood="dense"))
            # every chain starts exactly at the MAP (nutpie's init_mean is not used by
            # compiled PyMC models: their initial_point_func is)
            parts = {"W_log__": x0[: W_ref.size], "H_log__": x0[W_ref.size :]}
            start = np.concatenate([parts[n] for n in compiled.shape_info[0] if n in parts])
            compiled = dataclasses.replace(compiled, initial_point_func=lambda _: start.copy())
            tr = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=2,
                               seed=seed, progress_bar=False)  # fmt: skip
        wall = time.perf_counter() - t0
        post = tr["posterior"]
        diag = _diagnose(post["W"].values, post["H"].values, W_ref, H_ref)
        ss = tr["sample_stats"]
    out.update(diag)
    out["wall_s"] = wall
    out["divergences"] = int(ss["diverging"].sum())
    depth = "tree_depth" if "tree_depth" in ss else "depth"
    out["mean_tree_depth"] = float(ss[depth].mean()) if depth in ss else float("nan")
    out["min_ess_per_s"] = min(out["min_ess_bulk"], out["min_ess_tail"]) / wall
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="small,full")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny case, 50 + 50 iterations")
    p.add_argument("--one", nargs=2, metavar=("CASE", "METHOD"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        res = run_one(a.one[0], a.one[1], a.draws, a.tune, a.chains, a.seed)
        print("RESULT " + json.dumps(res))
        return
    if a.quick:
        a.cases, a.draws, a.tune, a.chains = "tiny", 50, 50, 2
    cases, methods = a.cases.split(","), a.methods.split(",")
    results = {}
    for case in cases:
        for method in methods:
            opts = ["--draws", a.draws, "--tune", a.tune, "--chains", a.chains, "--seed", a.seed]
            cmd = [sys.executable, __file__, "--one", case, method, *map(str, opts)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                results[case, method] = None
                print(f"{case}/{method} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            else:
                results[case, method] = json.loads(line[0][7:])
            print(f"done {case}/{method}: {results[case, method]}", file=sys.stderr, flush=True)
    cols = [(c, m) for c in cases for m in methods]
    keys = ["wall_s", "max_rhat", "min_ess_bulk", "min_ess_tail", "divergences",
            "mean_tree_depth", "peak_rss_gb", "min_ess_per_s"]  # fmt: skip
    print(f"draws={a.draws} tune={a.tune} chains={a.chains} seed={a.seed}")
    print(f"{'':18}" + "".join(f"{c + '/' + m:>28}" for c, m in cols))
    for k in keys:
        row = "".join(
            f"{'failed' if results[c] is None else format(results[c][k], '.4g'):>28}" for c in cols
        )
        print(f"{k:18}{row}")
    print("ratios of smallest ESS per second (sample_posterior / other):")
    for case in cases:
        sp = results.get((case, "sample_posterior"))
        for m in methods:
            other = results.get((case, m))
            if m != "sample_posterior" and sp and other:
                ratio = sp["min_ess_per_s"] / max(other["min_ess_per_s"], 1e-12)
                print(f"  {case}: vs {m}: {ratio:.3g}")


if __name__ == "__main__":
    main()
