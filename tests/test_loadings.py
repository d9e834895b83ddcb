import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import poisson_nmf as pnmf
from poisson_nmf.optim.kl import fit_h


def _catalogue(F=24, K=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(F, 0.5), size=K).T  # columns sum to one


def test_map_is_the_kl_minimiser_given_w():
    rng = np.random.default_rng(sum(map(ord, "test_map")))
    W = _catalogue()
    H = rng.gamma(2.0, 50.0, size=(3, 40))  # NumPy's gamma is (shape, scale)
    V = rng.poisson(W @ H)
    tree = pnmf.fit_loadings(V, W, priors=None, method="map")
    Hm = tree["posterior"]["H"].values[0, 0]
    assert tree["posterior"]["H"].dims == ("chain", "draw", "component", "column")
    # stationarity (KKT) of D(V || WH) in H: gradient W^T (1 - V / WH) >= 0, = 0 where h > 0
    grad = W.T @ (1 - V / (W @ Hm))
    assert np.all(grad > -1e-6)
    assert np.all(np.abs(grad[Hm > 1e-6]) < 1e-6)
    # a column's loadings do not depend on the other columns given with it
    one = pnmf.fit_loadings(V[:, 7:8], W, priors=None)["posterior"]["H"].values[0, 0]
    np.testing.assert_array_equal(one[:, 0], Hm[:, 7])


def test_fit_h_agrees_with_sklearn_transform():
    from sklearn.decomposition import NMF

    rng = np.random.default_rng(3)
    W = _catalogue(F=30, K=4, seed=3)
    V = rng.poisson(W @ rng.gamma(2.0, 40.0, size=(4, 25)))
    H, _, conv = fit_h(V, W)
    assert conv.all()
    m = NMF(4, beta_loss="kullback-leibler", solver="mu", max_iter=20000, tol=1e-12)
    m.components_, m.n_components_, m.n_features_in_ = W.T.copy(), 4, 30
    Hs = m.transform(V.T.astype(float)).T
    # sklearn's multiplicative updates converge slowly; the objectives agree to 1e-6
    ours = pnmf.kl_divergence(V, (W, H))
    theirs = pnmf.kl_divergence(V, (W, Hs))
    assert ours <= theirs + 1e-9
    assert theirs - ours < 1e-5 * ours


def test_rows_matched_by_label_and_mismatch_errors():
    rng = np.random.default_rng(5)
    W = _catalogue(F=10, K=2, seed=5)
    V = rng.poisson(W @ rng.gamma(2.0, 30.0, size=(2, 6)))
    feats = [f"f{i}" for i in range(10)]
    Vdf = pd.DataFrame(V, index=feats)
    Wdf = pd.DataFrame(W, index=feats, columns=["a", "b"])
    ref = pnmf.fit_loadings(Vdf, Wdf, priors=None)["posterior"]["H"]
    shuffled = pnmf.fit_loadings(Vdf, Wdf.iloc[::-1], priors=None)["posterior"]["H"]
    np.testing.assert_allclose(ref.values, shuffled.values, rtol=1e-9)
    assert list(ref["component"].values) == ["a", "b"]
    with pytest.raises(ValueError, match="do not match by label"):
        pnmf.fit_loadings(Vdf, Wdf.rename(index={"f3": "zz"}), priors=None)
    with pytest.raises(ValueError, match="W has 9 rows but V_new has 10"):
        pnmf.fit_loadings(V, W[:9], priors=None)


def test_bad_input():
    W = _catalogue(F=5, K=2)
    V = np.ones((5, 3), dtype=int)
    with pytest.raises(ValueError, match="negative"):
        pnmf.fit_loadings(-V, W)
    with pytest.raises(ValueError, match="non-integer"):
        pnmf.fit_loadings(V * 0.5, W, method="posterior")
    pnmf.fit_loadings(V * 0.5, W, priors=None, method="map")  # KL is defined for it
    with pytest.raises(ValueError, match="missing value") as err:
        pnmf.fit_loadings(np.where(V > 0, np.nan, 0), W)
    # the remedy is one that fit_loadings takes (it has no missing= argument)
    assert "missing='mask'" not in str(err.value)
    assert "fit_loadings takes no missing entries" in str(err.value)
    with pytest.raises(ValueError, match="contains inf"):
        pnmf.fit_loadings(np.where(V > 0, np.inf, 0), W)
    with pytest.raises(ValueError, match="method must be one of"):
        pnmf.fit_loadings(V, W, method="nuts")
    with pytest.raises(TypeError, match="W must be a numeric"):
        pnmf.fit_loadings(V, "catalogue")
    with pytest.raises(ValueError, match="component 1 is all zero"):
        pnmf.fit_loadings(V, np.c_[W[:, 0], np.zeros(5)])
    # an all-zero batch is fine: the flat-prior MAP of no counts is 0
    zero = pnmf.fit_loadings(np.zeros((5, 2), int), W, priors=None)
    assert np.all(zero["posterior"]["H"].values == 0)


def test_posterior_intervals_cover_at_the_nominal_rate():
    # samples drawn from the model with loadings from the prior fit_loadings is given:
    # 90% intervals must cover the true loadings 85-95% of the time (600 loadings; the
    # binomial sd of the rate is 1.2%, so the band is about four sd either side)
    rng = np.random.default_rng(sum(map(ord, "coverage")))
    F, K, N = 20, 3, 200
    W = _catalogue(F=F, K=K, seed=11)
    priors = pnmf.GammaPriors(h_shape=2.0, h_rate=0.02)  # mean 100 counts, (shape, rate)
    H = rng.gamma(2.0, 1 / 0.02, size=(K, N))  # NumPy: (shape, scale = 1 / rate)
    V = rng.poisson(W @ H)
    tree = pnmf.fit_loadings(
        V, W, priors=priors, method="posterior", draws=250, chains=2, random_seed=1
    )
    draws = tree["posterior"]["H"]
    lo, hi = draws.quantile([0.05, 0.95], ("chain", "draw")).values
    cover = float(np.mean((H >= lo) & (H <= hi)))
    assert 0.85 <= cover <= 0.95, cover
    assert tree.attrs["sampler"].startswith("independence Metropolis-Hastings")
    diag = pnmf.diagnose(tree)
    assert diag.check("r_hat").value < 1.05
    assert diag.check("divergences").severity == "info"
    table = pnmf.posterior_summary(tree)
    assert len(table) == K * N and set(table["variable"]) == {"H"}


def test_executor_gives_the_serial_draws():
    rng = np.random.default_rng(8)
    W = _catalogue(F=12, K=2, seed=8)
    V = rng.poisson(W @ rng.gamma(2.0, 30.0, size=(2, 150)))  # three blocks of columns
    kw = dict(priors=None, method="posterior", draws=50, tune=20, chains=2, random_seed=4)
    serial = pnmf.fit_loadings(V, W, **kw)["posterior"]["H"].values
    with ThreadPoolExecutor(2) as ex:
        threaded = pnmf.fit_loadings(V, W, executor=ex, **kw)["posterior"]["H"].values
    np.testing.assert_array_equal(serial, threaded)


def test_map_tree_is_a_point_estimate_for_diagnose():
    W = _catalogue(F=8, K=2)
    V = np.arange(24).reshape(8, 3)
    tree = pnmf.fit_loadings(V, W)
    diag = pnmf.diagnose(tree)
    assert diag.verdict == "ok"
    assert all(c.severity == "info" for c in diag.checks)
    table = pnmf.posterior_summary(tree)
    assert table["sd"].isna().all()
    np.testing.assert_array_equal(table["lower"], table["mean"])


def test_cut_posterior_over_the_draws_of_a_tree():
    rng = np.random.default_rng(9)
    F, K = 15, 2
    base = _catalogue(F=F, K=K, seed=9)
    # a stand-in posterior: 2 chains x 40 draws of W scattered around the catalogue
    Wd = base[None, None] * rng.gamma(50.0, 1 / 50.0, size=(2, 40, F, K))
    Wd /= Wd.sum(axis=2, keepdims=True)
    post = xr.Dataset(
        {"W": (("chain", "draw", "row", "component"), Wd)},
        coords={"row": np.arange(F), "component": np.arange(K)},
    )
    tree = xr.DataTree.from_dict({"posterior": post})
    V = rng.poisson(base @ rng.gamma(2.0, 40.0, size=(K, 5)))
    out = pnmf.fit_loadings(
        V, tree, priors=None, method="posterior", draws=30, chains=2, random_seed=0
    )
    cut = json.loads(out.attrs["cut_posterior"])
    assert cut["w_draws_used"] == 60 and cut["w_draws_available"] == 80
    assert out["posterior"]["H"].shape == (2, 30, K, 5)
    # the draws of W add spread: wider than with W fixed at the catalogue
    fixed = pnmf.fit_loadings(
        V, base, priors=None, method="posterior", draws=30, chains=2, random_seed=0
    )
    assert float(out["posterior"]["H"].std()) > 0
    assert fixed["posterior"]["H"].shape == (2, 30, K, 5)
