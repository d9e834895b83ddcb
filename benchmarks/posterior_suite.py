"""A suite of small posterior problems chosen to break the sampler, each at the defaults.

For every problem: ``sample_posterior`` at its defaults (draws until clean, at most 4000
per chain; 4 chains after 1000 tuning steps) and, beside it, MAP-started nutpie on PyMC's
model (``nutpie.compile_pymc_model(build_model(...))``, every chain started at one MAP,
4 x 1000 draws after 1000 tuning steps). Each is judged the way ``diagnose`` judges a run
(``poisson_nmf.convergence``: every entry of the normalised, MAP-aligned W and H with
rank-normalised R-hat <= 1.01 and bulk and tail ESS >= 400) plus zero divergences, and
timed from the call (compilation included, Numba's cache warm). ``sample_posterior``'s
row also gives the ``target_accept`` values it tried (``attrs["sampler"]``, see
``poisson_nmf.adaptation``), the mean leapfrog steps per kept draw and its CPU time.

    python benchmarks/posterior_suite.py                 # every problem (slow)
    python benchmarks/posterior_suite.py --only sbs_real,model_12x15
    python benchmarks/posterior_suite.py --quick          # three problems, small settings
    python benchmarks/posterior_suite.py --no-peer        # sample_posterior alone

Prints one table (and ``--json PATH`` writes the rows). The machine's load average is
printed with it: on a shared machine compare ratios from one run, not walls across runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Gamma draws below are NumPy's (shape, scale); the priors are (shape, rate)


def _model_draw(rng, F, N, K, w_shape=1.0, w_scale=1.0, h_shape=1.0, h_scale=3.0):
    W = rng.gamma(w_shape, w_scale, (F, K))
    H = rng.gamma(h_shape, h_scale, (K, N))
    return rng.poisson(W @ H)


def _sbs_real(rng):
    from importlib.resources import files

    import pandas as pd

    path = files("SigProfilerAssignment") / "data" / "Samples.txt"
    return pd.read_csv(str(path), sep="\t", index_col=0).to_numpy()


def _planted(rng, F=12, N=15, K=3, rate=20.0):
    W = np.full((F, K), 0.05)
    H = np.full((K, N), 0.05)
    for k in range(K):
        W[k * F // K : (k + 1) * F // K, k] = 1.0
        H[k, k * N // K : (k + 1) * N // K] = rate
    return rng.poisson(W @ H)


def _catalogue(rng, F=96, N=8, K=2):
    W = rng.dirichlet(np.full(F, 0.5), K).T  # signatures: columns sum to one
    H = rng.gamma(2.0, 300.0, (K, N))  # mutations per sample
    return rng.poisson(W @ H)


def _shared(rng, F=40, N=30, K=3):
    base = rng.gamma(2.0, 1.0, F)
    W = np.stack([base * rng.uniform(0.7, 1.3, F) for _ in range(K)], axis=1)
    W[rng.random((F, K)) < 0.2] = 0.0  # each component misses a fifth of the support
    H = rng.gamma(1.0, 3.0, (K, N))
    return rng.poisson(W @ H)


def _sparse(rng, F=200, N=100, K=3):
    return _model_draw(rng, F, N, K, w_shape=0.3, w_scale=0.5, h_shape=0.3, h_scale=0.5)


def _text(rng, F=300, N=40, K=4):
    # words x documents: topics over a Zipf vocabulary, documents of 100-400 words
    zipf = 1.0 / np.arange(1, F + 1) ** 1.1
    topics = np.stack([rng.dirichlet(zipf[rng.permutation(F)] * 50) for _ in range(K)], axis=1)
    mix = rng.dirichlet(np.full(K, 0.3), N).T
    length = rng.integers(100, 400, N)
    return rng.poisson(topics @ (mix * length))


def _digits(rng, rows=100):
    import poisson_nmf as pnmf

    V = pnmf.load_digits()[:rows].values
    return V[:, V.sum(0) > 0]


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    data: Callable[[np.random.Generator], np.ndarray]
    K: int
    priors: dict = dataclasses.field(default_factory=dict)
    chains: int = 4
    note: str = ""


PROBLEMS = [
    Problem("sbs_real", _sbs_real, 5, note="96 x 21 SBS catalogues (SigProfilerAssignment)"),
    Problem("model_12x15", lambda r: _model_draw(r, 12, 15, 3), 3,
            note="W ~ Ga(1, 1), H ~ Ga(1, rate 1/3)"),
    Problem("planted_12x15", _planted, 3, note="three planted block components"),
    Problem("catalogue_96x8", _catalogue, 2, chains=2, note="catalogue-like, from the model"),
    Problem("tall_300x6", lambda r: _model_draw(r, 300, 6, 2), 2),
    Problem("wide_6x300", lambda r: _model_draw(r, 6, 300, 2), 2),
    Problem("tiny_4x5_k1", lambda r: _model_draw(r, 4, 5, 1), 1),
    Problem("sparse_200x100", _sparse, 3, note="about a tenth non-zero"),
    Problem("k12_60x50", lambda r: _model_draw(r, 60, 50, 12), 12),
    Problem("shape_0.5", lambda r: _model_draw(r, 30, 20, 3, 0.5, 2.0, 0.5, 6.0), 3,
            priors={"w_shape": 0.5, "w_rate": 0.5, "h_shape": 0.5, "h_rate": 1 / 6}),
    Problem("shape_3", lambda r: _model_draw(r, 30, 20, 3, 3.0, 1 / 3, 3.0, 1.0), 3,
            priors={"w_shape": 3.0, "w_rate": 3.0, "h_shape": 3.0, "h_rate": 1.0}),
    Problem("weak_signal", lambda r: _model_draw(r, 30, 20, 2, h_scale=0.15), 2,
            note="mean count about 0.3"),
    Problem("strong_signal", lambda r: _model_draw(r, 30, 20, 2, h_scale=250.0), 2,
            note="mean count about 500"),
    Problem("shared_support", _shared, 3, note="components share most of their support"),
    Problem("digits_100", _digits, 4, note="digits 0..99, all-zero pixels dropped"),
    Problem("text_300x40", _text, 4, note="topic-model-like word counts"),
]  # fmt: skip
QUICK = ("model_12x15", "tiny_4x5_k1", "planted_12x15")


def _judge(post, sample_stats, chains):
    from poisson_nmf.convergence import entry_table, summarize_convergence

    s = summarize_convergence(
        entry_table(post, intervals=False), chains, r_hat_max=1.01, ess_min=max(400, 100 * chains)
    )
    div = int(np.asarray(sample_stats["diverging"]).sum())
    return {
        "clean": bool(s.clean and div == 0),
        "divergences": div,
        "max_rhat": s.worst_r_hat,
        "min_ess": min(s.min_ess_bulk, s.min_ess_tail),
    }


def run_sample_posterior(V, p, priors, seed, settings):
    import poisson_nmf as pnmf

    t0, c0 = time.perf_counter(), time.process_time()
    tree = pnmf.sample_posterior(V, p.K, priors=priors, chains=p.chains, random_seed=seed,
                                 pointwise_draws=0, progress=False, **settings)  # fmt: skip
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = _judge(tree["posterior"].to_dataset(), tree["sample_stats"], p.chains)
    out["wall_s"] = wall
    out["cpu_s"] = cpu  # all threads of this process: steadier than the wall on a busy machine
    out["draws"] = tree["posterior"].sizes["draw"]
    out["n_steps"] = float(tree["sample_stats"]["n_steps"].mean())
    out["target_accept"] = json.loads(tree.attrs["sampler"]).get("target_accept_schedule")
    ref = tree["reference"]
    return out, (ref["W"].values, ref["H"].values)


def run_peer(V, p, priors, seed, settings, ref):
    import nutpie
    import xarray as xr

    from poisson_nmf.align import align_factors
    from poisson_nmf.data import as_counts
    from poisson_nmf.model import build_model
    from poisson_nmf.sampling.density import LogDensity
    from poisson_nmf.sampling.starts import fill_zeros, map_start

    t0 = time.perf_counter()
    counts = as_counts(V)
    # the MAP sample_posterior starts at (KL-NMF without priors where a shape is < 1)
    W0, H0, _ = map_start(counts, p.K, priors, np.random.default_rng(seed), {}, 4)
    dens = LogDensity.build(counts, p.K, priors)
    x0 = dens.pack(*fill_zeros(counts, W0, H0, dens))
    compiled = nutpie.compile_pymc_model(build_model(V, p.K, priors=priors, likelihood="dense"))
    parts = {"W_log__": x0[: W0.size], "H_log__": x0[W0.size :]}
    start = np.concatenate([parts[n] for n in compiled.shape_info[0] if n in parts])
    compiled = dataclasses.replace(compiled, initial_point_func=lambda _: start.copy())
    tr = nutpie.sample(compiled, draws=settings["draws"],
                       tune=settings["tune"], chains=p.chains, cores=2,
                       seed=seed, progress_bar=False)  # fmt: skip
    wall = time.perf_counter() - t0
    post = tr["posterior"]
    al = align_factors(post["W"].values, post["H"].values, *ref)
    ds = xr.Dataset(
        {
            "W": (("chain", "draw", "row", "component"), al.W),
            "H": (("chain", "draw", "component", "column"), al.H),
        }
    )
    out = _judge(ds, tr["sample_stats"], p.chains)
    out["wall_s"] = wall
    out["draws"] = post.sizes["draw"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma-separated problem names")
    ap.add_argument("--quick", action="store_true", help=f"{', '.join(QUICK)}, small settings")
    ap.add_argument("--no-peer", action="store_true", help="sample_posterior alone")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, metavar="PATH")
    a = ap.parse_args(argv)

    import poisson_nmf as pnmf

    warnings.simplefilter("ignore")
    names = a.only.split(",") if a.only else [p.name for p in PROBLEMS]
    settings: dict = {}
    if a.quick:
        names, settings = list(QUICK), {"tune": 300, "max_draws": 500}
    probs = [p for p in PROBLEMS if p.name in names]
    unknown = set(names) - {p.name for p in probs}
    if unknown:
        ap.error(f"unknown problems {sorted(unknown)}; known: {[p.name for p in PROBLEMS]}")
    print(f"load {os.getloadavg()}, {os.cpu_count()} CPUs, seed {a.seed}", flush=True)
    rows = []
    for p in probs:
        rng = np.random.default_rng([a.seed, sum(map(ord, p.name))])
        V = p.data(rng)
        priors = pnmf.GammaPriors(**p.priors)
        n_par = (V.shape[0] + V.shape[1]) * p.K
        ours, ref = run_sample_posterior(V, p, priors, a.seed, settings)
        row = {"problem": p.name, "shape": f"{V.shape[0]}x{V.shape[1]}", "K": p.K,
               "params": n_par, **{f"sp_{k}": v for k, v in ours.items()}}  # fmt: skip
        row["sp_ess_per_s"] = ours["min_ess"] / ours["wall_s"]
        if not a.no_peer:
            peer_settings = {"tune": settings.get("tune", 1000), "draws": 500 if a.quick else 1000}
            peer = run_peer(V, p, priors, a.seed, peer_settings, ref)
            row |= {f"peer_{k}": v for k, v in peer.items()}
            row["peer_ess_per_s"] = peer["min_ess"] / peer["wall_s"]
            row["ratio"] = row["sp_ess_per_s"] / max(row["peer_ess_per_s"], 1e-12)
        rows.append(row)
        print(json.dumps(row), flush=True)
    cols = ["problem", "shape", "K", "params", "sp_clean", "sp_divergences", "sp_max_rhat",
            "sp_min_ess", "sp_draws", "sp_wall_s", "sp_ess_per_s", "sp_target_accept",
            "sp_n_steps", "sp_cpu_s"]  # fmt: skip
    if not a.no_peer:
        cols += ["peer_clean", "peer_divergences", "peer_max_rhat", "peer_min_ess",
                 "peer_wall_s", "peer_ess_per_s", "ratio"]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        print("| " + " | ".join(cells) + " |")
    print(f"load {os.getloadavg()}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
