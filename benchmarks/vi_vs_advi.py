"""Coordinate-ascent VI against PyMC's ADVI: time to the same ELBO.

Both fit a mean-field approximation of the same posterior (:func:`poisson_nmf.build_model`
with Gamma(1, 1) priors): ours Gamma factors by coordinate ascent
(:func:`poisson_nmf.sample_vi`'s engine, one restart), ADVI Gaussians on (log W, log H)
by stochastic gradients (``pm.fit(method="advi")``, PyMC's default learning rate, the
iteration cap below). Both ELBOs are estimated by one Monte Carlo estimator from each q,
mean over S draws of log p(x) - log q(x) on x = (log W, log H), with log p the exact
log density (:func:`poisson_nmf.log_density`, Jacobian included). ADVI's q is read
every ``--every`` iterations; ours after 1, 2, 3, 5, ... iterations from one fixed
start (each run timed from the start). Target: the best ELBO ADVI reaches; printed:
the time each needs to reach it, and the ratio.

    python benchmarks/vi_vs_advi.py            # 300 x 200, K = 5, 20,000 ADVI iterations
    python benchmarks/vi_vs_advi.py --quick    # tiny (the tests run it)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np
from scipy import stats


def mc_elbo(dens, x: np.ndarray, log_q: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of log p(x) - log q(x) over the rows of x."""
    lp = np.array([dens(xi) for xi in x])
    d = lp - log_q
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))


def gamma_q_draws(fit, S: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from poisson_nmf.vi_draws import draw_q, log_q

    W, H = draw_q(fit, S, rng)
    x = np.concatenate([np.log(W).reshape(S, -1), np.log(H).reshape(S, -1)], axis=1)
    return x, log_q(fit, W, H)


def run(F: int, N: int, K: int, iters: int, every: int, S: int, seed: int = 0) -> dict:
    import pymc as pm

    import poisson_nmf as pnmf
    from poisson_nmf.vi_cavi import Problem, cavi, initial_q

    rng = np.random.default_rng(seed)
    V = rng.poisson(rng.gamma(0.5, 1.0, (F, K)) @ rng.gamma(0.5, 0.6, (K, N)))
    priors = pnmf.GammaPriors()
    print(f"V: {F} x {N}, {np.mean(V > 0):.0%} non-zeros, K = {K}; load {os.getloadavg()}",
          flush=True)  # fmt: skip
    dens = pnmf.log_density(V, K, priors=priors)

    # ours: q after t iterations from one start, each run timed from the start
    counts = pnmf.as_counts(V)
    prob = Problem.build(counts, K, priors)
    start = initial_q(prob, np.random.default_rng(seed))
    cavi(prob, start, 1, 1e-15)  # compile outside the timing
    ours = []
    for t in (1, 2, 3, 5, 8, 12, 20, 30, 50, 80, 120, 200, 300, 500, 800):
        t0 = time.perf_counter()
        fit = cavi(prob, start, t, 1e-15)
        dt = time.perf_counter() - t0
        e, se = mc_elbo(dens, *gamma_q_draws(fit, S, np.random.default_rng(1)))
        ours.append({"iter": fit.n_iter, "time_s": dt, "elbo_mc": e, "se": se})

    # ADVI: its q every `every` iterations
    model = pnmf.build_model(V, K, priors=priors)
    snaps: list[tuple[int, float, dict]] = []
    t_fit = time.perf_counter()

    def grab(approx, hist, i):  # type: ignore[no-untyped-def]
        if not snaps or i % every == 0 or i == iters - 1:  # the first: compile time
            g = approx.groups[0]
            p = {k: v.get_value().copy() for k, v in g.params_dict.items()}
            snaps.append((i + 1, time.perf_counter() - t_fit, p))

    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        approx = pm.fit(n=iters, method="advi", random_seed=seed, callbacks=[grab],
                        progressbar=False)  # fmt: skip
    order = approx.groups[0].ordering
    advi = []
    for i, ts, p in snaps:
        mu, sd = p["mu"], np.log1p(np.exp(p["rho"]))  # PyMC's std = softplus(rho)
        eps = np.random.default_rng(1).standard_normal((S, mu.size))
        z = mu + sd * eps
        parts = {name: z[:, sl] for name, (name_, sl, _, _) in order.items()}
        x = np.concatenate([parts["W_log__"], parts["H_log__"]], axis=1)
        lq = stats.norm.logpdf(z, mu, sd).sum(axis=1)
        e, se = mc_elbo(dens, x, lq)
        advi.append({"iter": i, "time_s": ts, "elbo_mc": e, "se": se})

    best = max(advi, key=lambda r: r["elbo_mc"])
    hit = next((r for r in ours if r["elbo_mc"] >= best["elbo_mc"]), None)
    # ADVI's time with and without PyTensor's compilation (until its first iteration)
    compile_s = advi[0]["time_s"]
    out = {
        "shape": [F, N], "K": K, "advi_iterations": iters, "S": S,
        "advi_best": best, "ours_first_at_advi_best": hit, "ours_last": ours[-1],
        "advi_compile_s": round(compile_s, 1),
        "speedup": None if hit is None else round(best["time_s"] / hit["time_s"], 1),
        "speedup_without_compile": None if hit is None
        else round((best["time_s"] - compile_s) / hit["time_s"], 1),
        "load": os.getloadavg(),
    }  # fmt: skip
    for name, rows in (("ours", ours), ("advi", advi)):
        print(name, json.dumps([{k: round(v, 3) for k, v in r.items()} for r in rows]))
    print(json.dumps(out), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tiny case")
    p.add_argument("--iters", type=int, default=20_000, help="ADVI iterations (the cap)")
    p.add_argument("--every", type=int, default=500, help="read ADVI's q this often")
    args = p.parse_args(argv)
    if args.quick:
        run(20, 15, 2, 300, 100, 20)
        return 0
    run(300, 200, 5, args.iters, args.every, 200)
    return 0


if __name__ == "__main__":
    sys.exit(main())
