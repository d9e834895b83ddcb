"""Simulation-based calibration of sample_posterior, its negative controls, and a
conjugate check of the sampler against a closed-form posterior.

The SBC tables are printed to the terminal even without ``-s`` (``capsys.disabled``),
so ``make test`` and ``make test-slow`` show the statistic and p-value per quantity.
"""

import time

import numpy as np
import pytest
import xarray as xr
from scipy import stats

import poisson_nmf as pnmf
from poisson_nmf.calibration import (
    default_sampler,
    invariant_quantities,
    prior_sampler,
    rank_uniformity,
    run_sbc,
    simulate,
)
from tests._fits import pinned_h_case
from tests.conftest import named_rng

# The SBC problem: tiny, so that one simulation is a fraction of a second of sampling.
# 300 draws x 2 chains thinned to L = 99: the smallest bulk ESS of the quantities is
# typically 200-300 (printed), so the 99 ranked draws are about independent.
SHAPE, K = (8, 6), 2
PRIORS = pnmf.GammaPriors()
SAMPLER_SETTINGS = {"draws": 300, "tune": 300, "chains": 2}
FAST_SIMS, SLOW_SIMS = 20, 100

# sample_posterior is deterministic given V and the seed, so its trees are cached: the
# negative control "rates inflated" then wraps the very same draws at no extra cost.
_CACHE: dict[tuple, xr.DataTree] = {}
_sample = default_sampler(**SAMPLER_SETTINGS)


def cached_sampler(V, n_components, *, priors, random_seed):
    key = (np.asarray(V).tobytes(), np.shape(V), n_components, repr(priors), random_seed)
    if key not in _CACHE:
        _CACHE[key] = _sample(V, n_components, priors=priors, random_seed=random_seed)
    return _CACHE[key]


def inflated_sampler(V, n_components, *, priors, random_seed):
    """Wrong on purpose: sample_posterior's draws with every rate WH times 1.2."""
    tree = cached_sampler(V, n_components, priors=priors, random_seed=random_seed)
    post = tree["posterior"].to_dataset()
    return xr.DataTree.from_dict({"posterior": post.assign(W=post["W"] * 1.2)})


def show(title, result):
    return f"\n===== {title} =====\n{result.summary()}\n"


def sbc(n, sampler, seed_name):
    return run_sbc(n, shape=SHAPE, n_components=K, priors=PRIORS, sampler=sampler,
                   random_seed=sum(map(ord, seed_name)))  # fmt: skip


# ---------------------------------------------------------------------------------------
# the machinery, without a sampler


def test_quantities_ignore_order_and_scale():
    rng = named_rng("test_quantities_ignore_order_and_scale")
    W, H, V = simulate((7, 5), 3, random_seed=rng)
    d = rng.gamma(2.0, 1.0, 3)
    perm = [2, 0, 1]
    q = invariant_quantities(W, H, V)
    q2 = invariant_quantities((W * d)[:, perm], (H / d[:, None])[perm], V)
    np.testing.assert_allclose(q2.values, q.values, rtol=1e-12)
    lam = W @ H
    assert float(q.sel(quantity="total")) == pytest.approx(lam.sum())
    assert float(q.sel(quantity="log_likelihood")) == pytest.approx(pnmf.poisson_loglik(V, lam))
    assert float(q.sel(quantity="row_sum[2]")) == pytest.approx(lam[2].sum())
    assert float(q.sel(quantity="lambda[6,4]")) == pytest.approx(lam[6, 4])
    masses = q.sel(quantity=["mass[1]", "mass[2]", "mass[3]"]).values
    assert masses.sum() == pytest.approx(lam.sum()) and np.all(np.diff(masses) <= 0)
    # leading (chain, draw) dims
    Wd = np.broadcast_to(W, (2, 4, 7, 3))
    Hd = np.broadcast_to(H, (2, 4, 3, 5))
    assert invariant_quantities(Wd, Hd, V).shape == (2, 4, q.sizes["quantity"])


def test_uniformity_test_level_and_power():
    rng = named_rng("test_uniformity_test_level_and_power")
    L, S, Q, reps = 99, 20, 22, 200
    # exact null, independent quantities (the worst case for Bonferroni): the family
    # error is at most alpha = 0.01, so about 2 of 200 runs fail; 8 or more has
    # probability 1e-3 under Binomial(200, 0.01).
    fails = sum(
        not rank_uniformity(rng.integers(0, L + 1, (S, Q)), L, random_seed=rng)["passed"].all()
        for _ in range(reps)
    )
    assert fails < 8
    # ranks of a sampler whose draws sit mostly above the truth: the truth ranks low
    shifted = np.minimum(rng.integers(0, L + 1, (S, 1)) // 3, L)
    assert not rank_uniformity(shifted, L, random_seed=0)["passed"].all()
    # too narrow a posterior: ranks piled at both ends (a U-shaped histogram)
    u = rng.integers(0, 10, (S, 1))
    assert not rank_uniformity(np.where(u < 5, u, L - u), L, random_seed=0)["passed"].all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="ranks must lie"):
        rank_uniformity(np.array([[0], [120]]), 99)
    with pytest.raises(ValueError, match="n_bins"):
        rank_uniformity(np.zeros((10, 2), dtype=int), 99, n_bins=1)
    with pytest.raises(ValueError, match="n_simulations"):
        run_sbc(1)
    with pytest.raises(ValueError, match="sampler returned only"):
        run_sbc(2, sampler=prior_sampler(draws=10, chains=2), n_draws=99)


# ---------------------------------------------------------------------------------------
# SBC of sample_posterior (20 simulations here, 100 in the slow suite)


@pytest.fixture(scope="module")
def sbc_fast():
    return sbc(FAST_SIMS, cached_sampler, "sbc")


def test_sbc_sample_posterior_is_calibrated(sbc_fast, capsys):
    with capsys.disabled():
        print(show(f"SBC of sample_posterior, {FAST_SIMS} simulations", sbc_fast))
    res = sbc_fast
    assert res.ranks.shape == (FAST_SIMS, 22)
    assert res.ranks.min() >= 0 and res.ranks.max() <= res.n_draws
    assert res.passed, res.failed


def test_sbc_fails_when_rates_are_inflated(sbc_fast, capsys):
    res = sbc(FAST_SIMS, inflated_sampler, "sbc")  # same seeds: the same V and draws
    with capsys.disabled():
        print(show("negative control: rates inflated by 20 %", res))
    assert not res.passed
    # the total sees the shift first (its posterior sd is ~10 %, so 20 % is ~2 sd):
    # the truth ranks at the bottom
    assert "total" in res.failed
    assert res.table.loc["total", "p_adjusted"] < 1e-6
    assert np.median(res.ranks.sel(quantity="total")) < 10


def test_sbc_fails_when_the_likelihood_is_dropped(capsys):
    res = sbc(FAST_SIMS, prior_sampler(**{k: SAMPLER_SETTINGS[k] for k in ("draws", "chains")}),
              "sbc")  # fmt: skip
    with capsys.disabled():
        print(show("negative control: likelihood dropped (prior draws)", res))
    assert not res.passed
    # the truth fits its own data far better than prior draws do: top rank, always
    assert "log_likelihood" in res.failed
    assert res.table.loc["log_likelihood", "p_adjusted"] < 1e-6
    assert np.all(res.ranks.sel(quantity="log_likelihood") >= res.n_draws - 1)


def test_plots(sbc_fast):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = sbc_fast.plot("hist")
    assert len([ax for ax in fig.axes if ax.axison]) == sbc_fast.table.shape[0]
    plt.close(fig)
    pc = sbc_fast.plot("ecdf")
    assert pc is not None
    plt.close("all")
    with pytest.raises(ValueError, match="kind"):
        sbc_fast.plot("bars")


@pytest.mark.slow
def test_sbc_slow_100_simulations(capsys):
    t0 = time.perf_counter()
    res = sbc(SLOW_SIMS, cached_sampler, "sbc_slow")
    inflated = sbc(SLOW_SIMS, inflated_sampler, "sbc_slow")
    dropped = sbc(SLOW_SIMS, prior_sampler(**{k: SAMPLER_SETTINGS[k] for k in ("draws", "chains")}),
                  "sbc_slow")  # fmt: skip
    with capsys.disabled():
        print(show(f"SBC of sample_posterior, {SLOW_SIMS} simulations", res))
        print(show("negative control: rates inflated by 20 %", inflated))
        print(show("negative control: likelihood dropped (prior draws)", dropped))
        print(f"slow SBC test: {time.perf_counter() - t0:.1f} s wall in all")
    assert res.passed, res.failed
    assert not inflated.passed and inflated.table.loc["total", "p_adjusted"] < 1e-12
    assert not dropped.passed and dropped.table.loc["log_likelihood", "p_adjusted"] < 1e-12


# ---------------------------------------------------------------------------------------
# conjugate check: K = 1 with H fixed


def test_conjugate_posterior_of_w_with_h_fixed():
    """With K = 1 and H = h fixed, w_f | V ~ Gamma(a_w + sum_n v_fn, b_w + sum_n h_n).

    sample_posterior cannot fix H, so H gets a very tight prior Gamma(c h_n, c), mean
    h_n, c = 1e8. Its posterior then has relative sd 1 / sqrt(c h_n) ~ 5e-4 per entry
    (the data add ~10 counts to a shape of ~1e7) and sum_n h_n has sd ~ 1 / sqrt(c) =
    1e-4 around sum h = 1, so the posterior of w is the Gamma above with its rate off by
    ~1e-4 relative: ~1e-4 of w's mean, while the Monte Carlo error of the mean
    (sd / sqrt(ESS), ESS ~ 2000) is ~0.5 % of it, 50 times larger. With normalize="H"
    the draws of W carry the scale of H (rows of H sum to one), undone exactly with
    sample_stats["scale"] (= sum_n h_n per draw).
    """
    from arviz_stats.base import array_stats

    V, h, a_w, b_w, priors = pinned_h_case("test_conjugate_posterior_of_w_with_h_fixed")
    F = V.shape[0]
    tree = pnmf.sample_posterior(V, 1, priors=priors, draws=1000, tune=500, chains=2,
                                 normalize="H", random_seed=1, pointwise_draws=0)  # fmt: skip
    scale = tree["sample_stats"]["scale"].values[..., 0]  # (chain, draw)
    W = tree["posterior"]["W"].values[..., 0] / scale[..., None]  # (chain, draw, row)
    H = tree["posterior"]["H"].values[:, :, 0, :] * scale[..., None]
    np.testing.assert_allclose(H, np.broadcast_to(h, H.shape), rtol=5e-3)  # ~10 sd of h

    shape, rate = a_w + V.sum(axis=1), b_w + h.sum()
    x = np.moveaxis(W, -1, 0)  # (row, chain, draw)
    kw = {"chain_axis": -2, "draw_axis": -1}
    ess = np.asarray(array_stats.ess(x, method="bulk", **kw))
    se_mean = np.asarray(array_stats.mcse(x, method="mean", **kw))
    se_sd = np.asarray(array_stats.mcse(x, method="sd", **kw))
    mean, sd = x.mean(axis=(1, 2)), x.std(axis=(1, 2), ddof=1)
    # z-scores against the Monte Carlo standard error; 4.5 sd is a two-sided 7e-6 per
    # row (4e-5 for the 6 rows), slack for the error of the MCSE estimate itself
    z_mean = (mean - shape / rate) / se_mean
    z_sd = (sd - np.sqrt(shape) / rate) / se_sd
    assert np.all(np.abs(z_mean) < 4.5), z_mean
    assert np.all(np.abs(z_sd) < 4.5), z_sd
    # KS per row on draws thinned to about ESS (independent); Bonferroni 1e-3 / F
    p_ks = []
    for f in range(F):
        step = max(1, int(np.ceil(x[f].size / ess[f])))
        ref = stats.gamma(shape[f], scale=1 / rate)
        p_ks.append(stats.kstest(x[f][:, ::step].ravel(), ref.cdf).pvalue)
    assert min(p_ks) > 1e-3 / F, p_ks
    # and the same checks see a reference 5 % off (so they can fail)
    z_wrong = (mean - shape / (1.05 * rate)) / se_mean
    assert np.any(np.abs(z_wrong) > 4.5), z_wrong


# ---------------------------------------------------------------------------------------
# executors: equal to the serial run for the same seed


def test_sbc_threads_equal_serial():
    from concurrent.futures import ThreadPoolExecutor

    kw = {"shape": SHAPE, "n_components": K, "priors": PRIORS, "n_draws": 19,
          "sampler": prior_sampler(draws=20, chains=2), "random_seed": 5}  # fmt: skip
    serial = run_sbc(4, **kw)
    with ThreadPoolExecutor(2) as ex:
        threaded = run_sbc(4, executor=ex, **kw)
    xr.testing.assert_equal(serial.ranks, threaded.ranks)
    assert serial.simulations["seed"].tolist() == threaded.simulations["seed"].tolist()


@pytest.mark.slow
def test_sbc_dask_equals_serial():
    distributed = pytest.importorskip("distributed")
    kw = {"shape": SHAPE, "n_components": K, "priors": PRIORS, "n_draws": 19,
          "sampler": default_sampler(draws=100, tune=100, chains=2), "random_seed": 6}  # fmt: skip
    serial = run_sbc(4, **kw)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        got = run_sbc(4, executor=client, **kw)
    xr.testing.assert_equal(serial.ranks, got.ranks)
