"""Small posterior fits shared by test_diagnostics, test_report, test_io and test_cli.

Each builder is cached for the whole test session (``functools.cache``), so a fit is
sampled once however many test modules use it. The settings are small on purpose.
"""

import functools
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

import poisson_nmf as pnmf

# Gamma priors that pin the scale of W: with K = 1 the posterior is then one smooth mode
WELL_POSED = pnmf.GammaPriors(w_shape=10.0, w_rate=10.0, h_shape=2.0, h_rate=0.1)


def synthetic_counts(seed: int, F: int = 12, N: int = 10, K: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W = rng.gamma(10.0, 0.1, (F, K))
    H = rng.gamma(2.0, 10.0, (K, N))
    return rng.poisson(W @ H)


@functools.cache
def digits_fit() -> xr.DataTree:
    """60 digits, K = 3, 2 chains x 200 draws: the run the report tests render."""
    V = pnmf.load_digits()[:60]
    # whether the chains split is for diagnose to report (MultipleModesWarning is not an
    # error in the test run: pyproject.toml)
    return pnmf.sample_posterior(
        V, 3, draws=200, tune=200, chains=2, random_seed=6, pointwise_draws=100
    )


@functools.cache
def digits_diagnosis() -> pnmf.Diagnosis:
    return pnmf.diagnose(digits_fit())


@functools.cache
def digits_report() -> Path:
    """The report of digits_fit (with the image shape), written once per session."""
    out = Path(tempfile.mkdtemp(prefix="pnmf-report-")) / "run"
    return pnmf.write_report(digits_fit(), out, diagnosis=digits_diagnosis(), image_shape=(8, 8))


@functools.cache
def good_fit() -> xr.DataTree:
    """K = 1 with scale-pinning priors, 4 chains x 1000 draws: every sampling check passes."""
    V = synthetic_counts(1)
    return pnmf.sample_posterior(
        V, 1, priors=WELL_POSED, draws=1000, tune=500, chains=4, random_seed=1,
        pointwise_draws=200,
    )  # fmt: skip


@functools.cache
def short_fit() -> xr.DataTree:
    """The same posterior with only 20 draws per chain: too few for ESS >= 100 per chain."""
    V = synthetic_counts(1)
    return pnmf.sample_posterior(
        V, 1, priors=WELL_POSED, draws=20, tune=200, chains=2, random_seed=2, pointwise_draws=0
    )


@functools.cache
def two_mode_tree() -> xr.DataTree:
    """Two chains, each drawn around a different local MAP of 60 digits with K = 3.

    Built by hand so that the chains are in different modes for sure: chain c holds
    MAP_c (aligned to MAP_0) times log-normal noise of sd 0.02, with its exact Poisson
    log-likelihood, no divergences and Gaussian energies.
    """
    V = pnmf.load_digits()[:60]
    counts = pnmf.as_counts(V)
    fits = [
        pnmf.kl_nmf(counts, 3, priors=pnmf.GammaPriors(), random_seed=s, max_iter=2000, tol=1e-8)
        for s in (1, 2)
    ]
    # seeds 1 and 2 end at different local optima (objectives 5172.9 and 5166.3)
    assert abs(fits[0].objective - fits[1].objective) > 1.0
    rng = np.random.default_rng(sum(map(ord, "two_mode_tree")))
    D = 200
    Ws, Hs, lls = [], [], []
    for f in fits:
        al = pnmf.align_factors(f.W, f.H, fits[0].W, fits[0].H)
        W = np.maximum(al.W, 1e-6) * np.exp(0.02 * rng.standard_normal((D, *al.W.shape)))
        H = np.maximum(al.H, 1e-6) * np.exp(0.02 * rng.standard_normal((D, *al.H.shape)))
        Ws.append(W)
        Hs.append(H)
        lls.append([pnmf.poisson_loglik(counts, (W[d], H[d])) for d in range(D)])
    F, N = counts.shape
    coords = {"chain": [0, 1], "draw": np.arange(D), "row": np.arange(F),
              "column": np.arange(N), "component": np.arange(3)}  # fmt: skip
    post = xr.Dataset(
        {
            "W": (("chain", "draw", "row", "component"), np.stack(Ws)),
            "H": (("chain", "draw", "component", "column"), np.stack(Hs)),
        },
        coords=coords,
    )
    ss = xr.Dataset(
        {
            "diverging": (("chain", "draw"), np.zeros((2, D), dtype=bool)),
            "maxdepth_reached": (("chain", "draw"), np.zeros((2, D), dtype=bool)),
            "energy": (("chain", "draw"), rng.standard_normal((2, D))),
            "log_likelihood": (("chain", "draw"), np.array(lls)),
        },
        coords={"chain": [0, 1], "draw": np.arange(D)},
    )
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": ss})


def pinned_h_case(name: str) -> tuple[np.ndarray, np.ndarray, float, float, pnmf.GammaPriors]:
    """K = 1, 6 x 8 counts, H pinned at h by Gamma(c h, c), c = 1e8: W's posterior is Gamma.

    Returns V, h (sums to one), the prior shape and rate of W, and the priors; the
    stream is seeded from ``name``. W given h is Gamma(a_w + row sums, b_w + sum h).
    """
    from tests.conftest import named_rng

    rng = named_rng(name)
    F, N, c = 6, 8, 1e8
    a_w, b_w = 2.0, 0.1
    h = rng.gamma(2.0, 1.0, N)
    h /= h.sum()
    w = rng.gamma(a_w, 1.0 / b_w, F)
    V = rng.poisson(np.outer(w, h))
    priors = pnmf.GammaPriors(w_shape=a_w, w_rate=b_w, h_shape=c * h[None, :], h_rate=c)
    return V, h, a_w, b_w, priors
