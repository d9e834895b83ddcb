"""The vectorised R-hat, ESS and MCSE give ArviZ's numbers, entry by entry."""

import warnings

import arviz_stats as azs
import numpy as np
import pytest
import xarray as xr
from scipy import stats

from poisson_nmf.ess_rhat import average_ranks, rank_diagnostics


def _arviz(x):
    ds = xr.Dataset({"a": (("chain", "draw", "entry"), x)})
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return {
            "r_hat": azs.rhat(ds)["a"].values,
            "ess_bulk": azs.ess(ds, method="bulk")["a"].values,
            "ess_tail": azs.ess(ds, method="tail")["a"].values,
            "mcse_mean": azs.mcse(ds, method="mean")["a"].values,
        }


def _awkward_draws(chains, draws, seed):
    """AR(1) chains plus entries that break naive code: constant, tied, rare, unmixed."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((chains, draws, 40))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0]
    for t in range(1, draws):
        x[:, t] = 0.9 * x[:, t - 1] + 0.3 * e[:, t]  # autocorrelated: ESS well below draws
    x[..., 0] = 1.0  # constant
    x[..., 1] = np.round(x[..., 1])  # many ties
    x[..., 2] = rng.random((chains, draws)) < 0.02  # a rare event
    x[..., 3] += np.arange(chains)[:, None]  # chains that disagree
    x[..., 4] = np.sign(x[..., 4])  # two values symmetric about the median (folded: constant)
    x[..., 5] = rng.standard_normal((chains, draws))  # independent draws
    return x


@pytest.mark.parametrize(
    ("chains", "draws"), [(4, 1000), (2, 501), (1, 200), (3, 5), (2, 4), (2, 3), (4, 31)]
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_numbers_as_arviz(chains, draws, dtype):
    x = _awkward_draws(chains, draws, seed=chains * 1000 + draws).astype(dtype)
    mine = rank_diagnostics(x)
    ref = _arviz(x)
    for name, theirs in ref.items():
        got = getattr(mine, name)
        # NaN exactly where ArviZ's is (undefined: too few draws or chains, constant)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(theirs), err_msg=name)
        # the same arithmetic in another order: float64 rounding apart. In float32 the
        # draws' own rounding (1.2e-7) shows through the folding about the median (done
        # in float32 by both), and the MCSE's sd is summed in float64 here, in float32 by
        # ArviZ (differences ~1e-5)
        rtol = {np.float64: 1e-8, np.float32: 1e-6}[dtype]
        rtol = 1e-4 if (name == "mcse_mean" and dtype == np.float32) else rtol
        np.testing.assert_allclose(got, theirs, rtol=rtol, err_msg=name)


def test_blocks_and_threads_do_not_change_the_numbers(monkeypatch):
    import poisson_nmf.ess_rhat as er

    x = _awkward_draws(4, 300, seed=3)
    whole = rank_diagnostics(x, workers=1)
    monkeypatch.setattr(er, "_BLOCK_VALUES", 4 * 300 * 3)  # blocks of 3 entries
    blocked = rank_diagnostics(x, workers=2)
    for name in ("r_hat", "ess_bulk", "ess_tail", "mcse_mean"):
        # NumPy's vectorised sums group terms by the block's shape: last-bit differences
        np.testing.assert_allclose(getattr(whole, name), getattr(blocked, name), rtol=1e-12)


def test_nan_draws_are_undefined_and_mcse_optional():
    x = _awkward_draws(2, 100, seed=1)
    x[1, 7, 6] = np.nan
    d = rank_diagnostics(x, mcse=False)
    assert np.isnan(d.r_hat[6]) and np.isnan(d.ess_bulk[6]) and np.isnan(d.ess_tail[6])
    assert np.isnan(d.mcse_mean).all()
    assert np.isfinite(d.ess_bulk[5]) and np.isfinite(d.r_hat[5])


def test_shape_and_tail_prob_are_checked():
    with pytest.raises(ValueError, match=r"\(chains, draws, n_entries\)"):
        rank_diagnostics(np.zeros((4, 100)))
    with pytest.raises(ValueError, match="tail_prob must be in"):
        rank_diagnostics(np.zeros((4, 100, 2)), tail_prob=1.5)


def test_other_dtypes_and_no_chains():
    # bool and integer draws are computed in float64 (ArviZ's tail ESS fails on bool)
    x = _awkward_draws(3, 60, seed=2)
    for other in ((x > 0), np.round(10 * x).astype(np.int16)):
        mine, ref = rank_diagnostics(other), _arviz(other.astype(np.float64))
        for name, theirs in ref.items():
            np.testing.assert_allclose(getattr(mine, name), theirs, rtol=1e-8, err_msg=name)
    # no chains: every value undefined (ArviZ: NaN)
    assert np.isnan(rank_diagnostics(np.zeros((0, 10, 3))).ess_bulk).all()


def test_average_ranks_are_scipys():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 500)).astype(np.float32)
    x[0] = np.round(x[0])  # ties
    x[1] = 2.0  # all tied
    x[2, ::2] = x[2, 1::2]  # pairs
    np.testing.assert_array_equal(average_ranks(x), stats.rankdata(x, method="average", axis=1))
