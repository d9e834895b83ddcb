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

The peers run ``--draws`` draws after ``--tune`` tuning steps; ``sample_posterior`` runs
at its defaults (sampling until every entry is clean, ``draws=None``) unless
``--fixed`` gives it the peers' settings. ESS and R-hat are rank-normalised (ArviZ's
estimators) over every entry of the normalised (columns of W sum to one), MAP-aligned W
and H, for every method alike. Each line gives the machine's load average before the run
and the threads the method used (every method samples its chains on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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
    import numpy as np

    from poisson_nmf.align import align_factors
    from poisson_nmf.ess_rhat import rank_diagnostics

    al = align_factors(W, H, W_ref, H_ref)
    C, D = al.W.shape[:2]
    x = np.concatenate([al.W.reshape(C, D, -1), al.H.reshape(C, D, -1)], axis=2)
    d = rank_diagnostics(x, mcse=False)  # ArviZ's numbers (tests/test_ess_rhat.py)
    return {
        "max_rhat": float(np.nanmax(d.r_hat)),
        "min_ess_bulk": float(np.nanmin(d.ess_bulk)),
        "min_ess_tail": float(np.nanmin(d.ess_tail)),
    }


def _peak_rss_gb():
    """The process's peak resident memory so far, in GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_one(case, method, draws, tune, chains, seed, fixed=False):
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
        opts = {"draws": draws, "tune": tune} if fixed else {}
        tree = sample_posterior(V, K, chains=chains, random_seed=seed, cores=2, **opts)
        wall = time.perf_counter() - t0
        out["sampling_peak_rss_gb"] = _peak_rss_gb()
        out["draws_per_chain"] = json.loads(tree.attrs["stopping"])["draws_per_chain"]
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
        out["sampling_peak_rss_gb"] = _peak_rss_gb()
        post = tr["posterior"]
        diag = _diagnose(post["W"].values, post["H"].values, W_ref, H_ref)
        ss = tr["sample_stats"]
    out.update(diag)
    out.setdefault("draws_per_chain", draws)
    out["wall_s"] = wall
    out["divergences"] = int(ss["diverging"].sum())
    depth = "tree_depth" if "tree_depth" in ss else "depth"
    out["mean_tree_depth"] = float(ss[depth].mean()) if depth in ss else float("nan")
    out["min_ess_per_s"] = min(out["min_ess_bulk"], out["min_ess_tail"]) / wall
    out["peak_rss_gb"] = _peak_rss_gb()  # with this script's diagnosis of the draws
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
    p.add_argument("--fixed", action="store_true",
                   help="sample_posterior with the peers' --draws and --tune too")  # fmt: skip
    p.add_argument("--one", nargs=2, metavar=("CASE", "METHOD"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        res = run_one(a.one[0], a.one[1], a.draws, a.tune, a.chains, a.seed, a.fixed)
        print("RESULT " + json.dumps(res))
        return
    if a.quick:
        a.cases, a.draws, a.tune, a.chains, a.fixed = "tiny", 50, 50, 2, True
    cases, methods = a.cases.split(","), a.methods.split(",")
    results = {}
    for case in cases:
        for method in methods:
            opts = ["--draws", a.draws, "--tune", a.tune, "--chains", a.chains, "--seed", a.seed]
            cmd = [sys.executable, __file__, "--one", case, method, *map(str, opts)]
            cmd += ["--fixed"] if a.fixed else []
            load = os.getloadavg()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                results[case, method] = None
                print(f"{case}/{method} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            else:
                results[case, method] = json.loads(line[0][7:])
                results[case, method]["load_before"] = load[0]
            print(f"done {case}/{method} (load before: {load[0]:.2f}, threads: 2 chains at a "
                  f"time): {results[case, method]}", file=sys.stderr, flush=True)  # fmt: skip
    cols = [(c, m) for c in cases for m in methods]
    keys = ["load_before", "draws_per_chain", "wall_s", "max_rhat", "min_ess_bulk",
            "min_ess_tail", "divergences", "mean_tree_depth", "sampling_peak_rss_gb", "peak_rss_gb",
            "min_ess_per_s"]  # fmt: skip
    print(f"peers: draws={a.draws} tune={a.tune}; sample_posterior: "
          f"{'the same' if a.fixed else 'its defaults'}; chains={a.chains} seed={a.seed}; "
          f"{os.cpu_count()} CPUs, each method on 2 cores; load now {os.getloadavg()}")  # fmt: skip
    print(f"{'':18}" + "".join(f"{c + '/' + m:>28}" for c, m in cols))
    for k in keys:
        cells = ["failed" if results[c] is None else results[c].get(k, float("nan")) for c in cols]
        row = "".join(f"{v if isinstance(v, str) else format(v, '.4g'):>28}" for v in cells)
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
