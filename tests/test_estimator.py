import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.exceptions import SkipTestWarning
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_estimator

import poisson_nmf as pnmf


def _table(n=60, F=30, K=3, seed=0):
    rng = np.random.default_rng(seed)
    comps = rng.dirichlet(np.full(F, 0.3), size=K)  # (K, F), rows sum to one
    load = rng.gamma(2.0, 40.0, size=(n, K))  # NumPy's gamma is (shape, scale)
    return rng.poisson(load @ comps), comps


def test_check_estimator_passes_with_no_expected_failures():
    # scikit-learn 1.9.1: every check passes; check_array_api_input skips itself
    # (SkipTest) unless SCIPY_ARRAY_API is set, as it does for every estimator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkipTestWarning)
        # the checks fit K = 10 to tables of 3 to 5 features, unseeded: a component can
        # die (K above the rank), and kl_nmf rightly reports it; pytest's error filter
        # would turn that report into a failure of whichever check drew such a start
        warnings.simplefilter("ignore", pnmf.TrappedZerosWarning)
        results = check_estimator(pnmf.PoissonNMF(), on_fail=None)
    failed = [r for r in results if r["status"] == "failed"]
    assert not failed, [(r["check_name"], r["exception"]) for r in failed]
    assert sum(r["status"] == "passed" for r in results) >= 45


def test_feature_names_and_set_output():
    X, _ = _table()
    df = pd.DataFrame(X, columns=[f"t{i}" for i in range(X.shape[1])])
    est = pnmf.PoissonNMF(3, random_state=0).set_output(transform="pandas")
    out = est.fit_transform(df)
    assert list(out.columns) == ["poissonnmf0", "poissonnmf1", "poissonnmf2"]
    assert list(est.feature_names_in_) == list(df.columns)
    with pytest.raises(ValueError, match="feature names should match"):
        est.transform(df.rename(columns={"t0": "other"}))
    plain = pnmf.PoissonNMF(3, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 5 features, but PoissonNMF is expecting 30"):
        plain.transform(X[:, :5])


def test_components_sum_to_one_and_loadings_carry_the_scale():
    X, comps = _table()
    est = pnmf.PoissonNMF(3, random_state=1).fit(X)
    np.testing.assert_allclose(est.components_.sum(axis=1), 1.0, rtol=1e-12)
    L = est.transform(X)
    assert est.n_components_ == 3 and L.shape == (60, 3)
    # the loadings are the KL minimiser given the components: no worse than the fit
    rec = est.inverse_transform(L)
    assert pnmf.kl_divergence(X, rec) <= est.fit_.objective * (1 + 1e-9)
    # the totals are kept (the KL stationarity: sum of WH equals sum of V per sample)
    np.testing.assert_allclose(rec.sum(axis=1), X.sum(axis=1), rtol=1e-6)


def test_flat_map_agrees_with_sklearn_kl_nmf():
    from sklearn.decomposition import NMF

    X, _ = _table(seed=2)
    ours = pnmf.PoissonNMF(3, random_state=0, tol=1e-10, max_iter=5000).fit(X)
    theirs = NMF(
        3,
        beta_loss="kullback-leibler",
        solver="mu",
        init="nndsvda",
        max_iter=20000,
        tol=1e-6,
        random_state=0,
    ).fit(X.astype(float))
    d_ours = pnmf.kl_divergence(X, ours.inverse_transform(ours.transform(X)))
    d_theirs = pnmf.kl_divergence(X.T, (theirs.components_.T, theirs.transform(X).T))
    # same objective at a (local) optimum: ours no worse than 0.1% above scikit-learn's
    assert d_ours <= d_theirs * 1.001
    # and the same components up to order (cosine similarity of matched rows)
    T = theirs.components_ / theirs.components_.sum(axis=1, keepdims=True)
    cos = (ours.components_ @ T.T) / np.outer(
        np.linalg.norm(ours.components_, axis=1), np.linalg.norm(T, axis=1)
    )
    assert cos.max(axis=1).min() > 0.99


def test_reconstruction_err_is_scikit_learns():
    # scikit-learn 1.9.1 sets reconstruction_err_ = _beta_divergence(X, W, H, beta_loss,
    # square_root=True), i.e. sqrt(2 D_KL(X || W H)) for beta_loss="kullback-leibler"
    from sklearn.decomposition._nmf import _beta_divergence

    X, _ = _table(seed=2)
    est = pnmf.PoissonNMF(3, random_state=0).fit(X)
    W_sk, H_sk = est.fit_.H.T, est.fit_.W.T  # scikit-learn's loadings and components
    ref = _beta_divergence(X.astype(float), W_sk, H_sk, "kullback-leibler", square_root=True)
    assert est.reconstruction_err_ == pytest.approx(ref, rel=1e-10)  # rounding of two sums
    assert est.reconstruction_err_ == pytest.approx(np.sqrt(2 * est.fit_.objective), rel=1e-6)
    sparse = pnmf.PoissonNMF(3, random_state=0).fit(sp.csr_matrix(X))
    assert sparse.reconstruction_err_ == pytest.approx(ref, rel=1e-10)
    # a posterior fit: at the posterior means of W and H
    vi = pnmf.PoissonNMF(3, method="vi", draws=50, random_state=0).fit(X)
    post = vi.idata_["posterior"].to_dataset().astype(float)  # float32 draws, float64 means
    W = post["W"].mean(("chain", "draw")).transpose("row", "component").values
    H = post["H"].mean(("chain", "draw")).transpose("component", "column").values
    ref_vi = _beta_divergence(X.astype(float), H.T, W.T, "kullback-leibler", square_root=True)
    assert vi.reconstruction_err_ == pytest.approx(ref_vi, rel=1e-10)


def test_pipeline_on_sparse_counts_without_densifying(monkeypatch):
    docs = [
        "cats purr and cats sleep", "dogs bark and dogs run", "cats and dogs play",
        "stocks rise as markets rally", "markets fall and stocks drop", "bonds and stocks",
    ] * 5  # fmt: skip
    pipe = make_pipeline(CountVectorizer(), pnmf.PoissonNMF(2, random_state=0))

    def refuse(*args, **kwargs):
        raise AssertionError("a sparse matrix was densified")

    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.csr_array, sp.csc_array):
        monkeypatch.setattr(cls, "toarray", refuse)
        monkeypatch.setattr(cls, "todense", refuse)
    L = pipe.fit_transform(docs)
    assert L.shape == (30, 2) and np.all(L >= 0)
    assert pipe.transform(["cats sleep"]).shape == (1, 2)


def test_grid_search_over_n_components_prefers_the_true_rank_over_one():
    X, _ = _table(n=80, F=40, K=3, seed=4)
    grid = GridSearchCV(pnmf.PoissonNMF(random_state=0), {"n_components": [1, 3]}, cv=3)
    grid.fit(sp.csr_matrix(X))
    scores = grid.cv_results_["mean_test_score"]
    assert scores[1] > scores[0]  # held-out log-likelihood per entry, higher is better
    assert grid.best_params_ == {"n_components": 3}


def test_score_is_held_out_and_deterministic():
    X, _ = _table(seed=5)
    est = pnmf.PoissonNMF(3, random_state=0).fit(X[:40])
    s1, s2 = est.score(X[40:]), est.score(X[40:])
    assert s1 == s2 and np.isfinite(s1) and s1 < 0


def test_return_std_and_posterior_methods_need_counts():
    X, _ = _table(n=20, seed=6)
    est = pnmf.PoissonNMF(3, random_state=0).fit(X)
    L, sd = est.transform(X[:4], return_std=True)
    np.testing.assert_array_equal(L, est.transform(X[:4]))
    assert sd.shape == (4, 3) and np.all(sd > 0)
    with pytest.raises(ValueError, match="needs counts"):
        pnmf.PoissonNMF(3, method="nuts").fit(X + 0.5)
    with pytest.raises(ValueError, match="Negative values"):
        pnmf.PoissonNMF(3).fit(-X)
    with pytest.raises(ValueError, match="NaN"):
        pnmf.PoissonNMF(3).fit(np.where(X > 5, np.nan, X))
    with pytest.raises(ValueError, match="method must be one of"):
        pnmf.PoissonNMF(3, method="gibbs").fit(X)


def test_vi_is_passed_through_or_refused_clearly():
    import inspect

    X, _ = _table(n=20, seed=7)
    if "method" in inspect.signature(pnmf.sample_posterior).parameters:
        pytest.skip("sample_posterior has method=: covered by the VI engine's tests")
    with pytest.raises(ValueError, match="method='vi' needs sample_posterior"):
        pnmf.PoissonNMF(2, method="vi").fit(X)


@pytest.mark.slow
def test_nuts_fit_keeps_its_tree():
    X, _ = _table(n=30, F=12, K=2, seed=8)
    est = pnmf.PoissonNMF(2, method="nuts", draws=200, tune=300, chains=2, random_state=0)
    est.fit(X)
    assert est.idata_ is not None
    np.testing.assert_allclose(est.components_.sum(axis=1), 1.0, rtol=1e-6)
    L, sd = est.transform(X[:3], return_std=True)
    assert np.all(sd > 0)


def _sklearn_objective(sk, X, W_sk, H_sk):
    """scikit-learn's own objective for beta_loss='kullback-leibler' (its private helpers,
    sklearn/decomposition/_nmf.py, 1.9.1): divergence plus the scaled L1 terms."""
    from sklearn.decomposition._nmf import _beta_divergence

    l1_w, l1_h, l2_w, l2_h = sk._compute_regularization(X)
    assert l2_w == 0 and l2_h == 0  # l1_ratio=1
    return _beta_divergence(X, W_sk, H_sk, 1) + l1_w * W_sk.sum() + l1_h * H_sk.sum()


def test_alpha_w_alpha_h_are_scikit_learns_l1_objective():
    from sklearn.decomposition import NMF

    from poisson_nmf.optim.kl import kl_nmf

    X, _ = _table(n=50, F=20, K=3, seed=4)
    X = X.astype(np.float64)
    n, F = X.shape
    kw = dict(alpha_W=0.02, alpha_H=0.05, l1_ratio=1.0)
    est = pnmf.PoissonNMF(3, random_state=0, max_iter=3000, tol=1e-10, **kw).fit(X)
    sk = NMF(3, beta_loss="kullback-leibler", solver="mu", **kw)
    # the same objective: ours (divergence + Gamma(1, rate) penalty) at our own solution
    # equals scikit-learn's function of the same factors (X = loadings @ components)
    W, H = est.fit_.W, est.fit_.H
    np.testing.assert_allclose(est.fit_.objective, _sklearn_objective(sk, X, H.T, W.T), rtol=1e-10)
    # from the same start both reach the same minimum (scikit-learn's multiplicative
    # updates converge slowly: after 20,000 iterations theirs is 3.7e-5 above ours)
    rng = np.random.default_rng(0)
    W0, H0 = rng.uniform(0.5, 1.5, (n, 3)) * X.mean(), rng.uniform(0.5, 1.5, (3, F))
    # tol=0: scikit-learn's stopping rule watches the divergence alone, which a penalised
    # update may raise, and would stop it after 10 iterations
    sk = NMF(3, beta_loss="kullback-leibler", solver="mu", init="custom", max_iter=20000,
             tol=0, **kw)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        Wsk = sk.fit_transform(X, W=W0.copy(), H=H0.copy())
    theirs = _sklearn_objective(sk, X, Wsk, sk.components_)
    priors = est._alpha_priors(n, F, posterior=False)
    ours = kl_nmf(X.T, 3, priors=priors, init=(H0.T, W0.T), max_iter=20000, tol=1e-13, method="mu")
    assert ours.objective <= theirs * (1 + 1e-9)
    assert theirs - ours.objective < 1e-4 * theirs
    rec_ours, rec_sk = (ours.W @ ours.H).T, Wsk @ sk.components_
    # the same fitted means up to what the unconverged multiplicative updates leave
    # along the flat valley of NMF (1.5 % measured; the objectives agree to 4e-5)
    rel = np.linalg.norm(rec_ours - rec_sk) / np.linalg.norm(rec_sk)
    assert rel < 0.03, rel
    # transform under alpha_W applies the loadings' penalty on the fit's scale of the
    # components: given the fitted components it gives back the fit's own loadings
    # (H minimises the penalised objective given W), expressed on components_'s scale
    scale = W.sum(axis=0)
    np.testing.assert_allclose(est.transform(X), (H * scale[:, None]).T, rtol=1e-4, atol=1e-6)


def test_alpha_refuses_l2_and_priors_together():
    X, _ = _table(n=20, F=10)
    with pytest.raises(ValueError, match="need l1_ratio=1 here.*Gaussian-type penalty"):
        pnmf.PoissonNMF(2, alpha_W=0.1).fit(X)  # l1_ratio=0: pure L2
    with pytest.raises(ValueError, match="need l1_ratio=1"):
        pnmf.PoissonNMF(2, alpha_W=0.1, l1_ratio=0.5).fit(X)
    with pytest.raises(ValueError, match="either priors or alpha_W"):
        pnmf.PoissonNMF(2, alpha_W=0.1, l1_ratio=1, priors=pnmf.GammaPriors()).fit(X)
    with pytest.raises(ValueError, match="alpha_H must be a float or 'same'"):
        pnmf.PoissonNMF(2, alpha_H="other").fit(X)
    with pytest.raises(ValueError, match="needs alpha_W > 0 and alpha_H > 0"):
        pnmf.PoissonNMF(2, method="nuts", alpha_W=0.1, alpha_H=0.0, l1_ratio=1).fit(X)
    # alpha 0 (the default) ignores l1_ratio, as scikit-learn does
    pnmf.PoissonNMF(2, l1_ratio=0.5, random_state=0).fit(X)
