"""The fits never return NaN or inf on awkward data, are reproducible, and survive a
save and load.

Cases: 0 %, 50 % and 99 % zeros, an all-zero row and column, counts up to 1e6, K larger
than min(F, N), float32 input. kl_nmf and sample_posterior (tiny settings) run on every
case here; fit_map (a PyTensor compile per call) on one case combining them all in
``make test`` and on every case in the slow suite.

Save and load: ``DataTree.to_netcdf`` and ``xarray.open_datatree`` for now; switch to
``poisson_nmf.io`` once it exists (its round trip must keep these same numbers).
"""

import contextlib
import warnings

import numpy as np
import pytest
import xarray as xr

import poisson_nmf as pnmf
from poisson_nmf.exceptions import ConvergenceWarning
from tests.conftest import named_rng

TINY = {"draws": 50, "tune": 50, "chains": 2}


@contextlib.contextmanager
def allowed_warnings():
    """A hard case may stop at max_iter (K > min(F, N) has flat directions): warned
    about, not a NaN, which is what is checked here (two modes are not an error in any
    test: pyproject.toml). Every other warning (RuntimeWarning: overflow, invalid
    value) stays an error.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        yield


def _rate(rng, F, N, K=2):
    return rng.gamma(1.0, 1.0, (F, K)) @ rng.gamma(1.0, 3.0, (K, N))


def _case(name):
    rng = named_rng(name)
    F, N = 12, 10
    if name == "no_zeros":
        return rng.poisson(_rate(rng, F, N)) + 1, 2
    if name == "half_zeros":
        V = rng.poisson(_rate(rng, F, N)) + 1
        V.flat[rng.permutation(V.size)[: V.size // 2]] = 0
        return V, 2
    if name == "99pct_zeros":
        V = np.zeros((25, 20), dtype=np.int64)  # 5 non-zeros in 500
        V.flat[rng.choice(V.size, 5, replace=False)] = rng.integers(1, 5, 5)
        return V, 2
    if name == "zero_row_and_column":
        V = rng.poisson(_rate(rng, F, N))
        V[3], V[:, 4] = 0, 0
        return V, 2
    if name == "counts_to_1e6":
        lam = _rate(rng, F, N)
        return rng.poisson(lam / lam.max() * 1e6), 2
    if name == "K_above_min_FN":
        return rng.poisson(_rate(rng, 5, 4)), 6
    if name == "float32":
        return rng.poisson(_rate(rng, F, N)).astype(np.float32), 2
    if name == "all_at_once":
        # float32, half zeros, a zero row and column, counts to 1e6, K > min(F, N)
        lam = _rate(rng, 6, 5)
        V = rng.poisson(lam / lam.max() * 1e6).astype(np.float32)
        V.flat[rng.permutation(V.size)[: V.size // 2]] = 0
        V[2], V[:, 1] = 0, 0
        return V, 6
    raise KeyError(name)


CASES = ["no_zeros", "half_zeros", "99pct_zeros", "zero_row_and_column", "counts_to_1e6",
         "K_above_min_FN", "float32"]  # fmt: skip


def test_cases_are_what_they_say():
    zeros = {c: float(np.mean(_case(c)[0] == 0)) for c in CASES}
    assert zeros["no_zeros"] == 0.0
    assert zeros["half_zeros"] == 0.5
    assert zeros["99pct_zeros"] == 0.99
    V, _ = _case("zero_row_and_column")
    assert not V[3].any() and not V[:, 4].any()
    assert 5e5 < _case("counts_to_1e6")[0].max() <= 1.1e6
    V, K = _case("K_above_min_FN")
    assert K > min(V.shape)
    assert _case("float32")[0].dtype == np.float32


def _assert_fit_finite(W, H, objective, shape, K):
    F, N = shape
    assert W.shape == (F, K) and H.shape == (K, N)
    assert np.all(np.isfinite(W)) and np.all(np.isfinite(H)), "NaN or inf in W or H"
    assert np.all(W >= 0) and np.all(H >= 0)
    assert np.isfinite(objective)


@pytest.mark.parametrize("case", CASES)
def test_kl_nmf_is_finite(case):
    V, K = _case(case)
    for priors in (None, pnmf.GammaPriors()):
        res = pnmf.kl_nmf(V, K, priors=priors, random_seed=0, max_iter=5000)
        _assert_fit_finite(res.W, res.H, res.objective, V.shape, K)
        assert np.all(np.isfinite(res.history))


def _assert_tree_finite(tree):
    for group in ("posterior", "reference", "log_likelihood"):
        for name, da in tree[group].to_dataset().data_vars.items():
            assert np.all(np.isfinite(da.values)), f"non-finite {group}/{name}"
    # nutpie's divergence_energy_error is NaN where there is no divergence, and
    # max_energy_error may be inf on a rejected trajectory: those two are not checked
    for name in ("lp", "log_likelihood", "energy", "step_size", "scale"):
        assert np.all(np.isfinite(tree["sample_stats"][name].values)), f"non-finite {name}"
    assert np.all(tree["posterior_predictive"]["V"].values >= 0)
    assert np.isfinite(tree.attrs["map_objective"])


@pytest.mark.parametrize("case", CASES)
def test_sample_posterior_is_finite(case):
    V, K = _case(case)
    with allowed_warnings():
        tree = pnmf.sample_posterior(V, K, random_seed=0, **TINY)
    _assert_tree_finite(tree)
    W = tree["posterior"]["W"].values
    assert W.shape == (2, 50, V.shape[0], K)
    np.testing.assert_allclose(W.sum(axis=2), 1.0)  # normalize="W" held


@pytest.mark.parametrize(
    "case", ["all_at_once", *[pytest.param(c, marks=pytest.mark.slow) for c in CASES]]
)
def test_fit_map_is_finite(case):
    V, K = _case(case)
    # the combined case in `make test` stops after 50 iterations (it is over-complete
    # and would use all 500, ~30 s); NaN or inf, if any, show up in the first steps
    max_iter = 50 if case == "all_at_once" else 500
    with allowed_warnings():
        res = pnmf.fit_map(V, K, random_seed=0, max_iter=max_iter)
    _assert_fit_finite(res.W, res.H, res.objective, V.shape, K)


def test_same_seed_same_draws():
    V, K = _case("half_zeros")
    a = pnmf.sample_posterior(V, K, random_seed=11, **TINY)
    b = pnmf.sample_posterior(V, K, random_seed=11, **TINY)
    c = pnmf.sample_posterior(V, K, random_seed=12, **TINY)
    for group in ("posterior", "posterior_predictive", "log_likelihood", "reference"):
        xr.testing.assert_identical(a[group].to_dataset(), b[group].to_dataset())
    np.testing.assert_array_equal(a["sample_stats"]["lp"], b["sample_stats"]["lp"])
    # and a different seed gives different draws (so the check above can fail)
    assert not np.array_equal(a["posterior"]["W"].values, c["posterior"]["W"].values)
    k1, k2 = (pnmf.kl_nmf(V, K, random_seed=3) for _ in range(2))
    np.testing.assert_array_equal(k1.W, k2.W)
    np.testing.assert_array_equal(k1.H, k2.H)
    assert not np.array_equal(k1.W, pnmf.kl_nmf(V, K, random_seed=4).W)


@pytest.mark.slow
def test_fit_map_same_seed_same_fit():
    V, K = _case("half_zeros")
    a, b = (pnmf.fit_map(V, K, random_seed=3) for _ in range(2))
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.H, b.H)
    assert a.objective == b.objective


def test_saved_and_loaded_fit_gives_the_same_numbers(tmp_path):
    V, K = _case("zero_row_and_column")
    tree = pnmf.sample_posterior(V, K, random_seed=5, **TINY)
    path = tmp_path / "fit.nc"
    tree.to_netcdf(path)
    with xr.open_datatree(path) as loaded:
        loaded = loaded.load()
    assert set(loaded.children) == set(tree.children)
    for group in tree.children:
        xr.testing.assert_identical(loaded[group].to_dataset(), tree[group].to_dataset())
    assert loaded.attrs == tree.attrs
    post = loaded["posterior"]
    assert post["W"].dtype == np.float64 and post["H"].dtype == np.float64
