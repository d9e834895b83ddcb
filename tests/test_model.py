import numpy as np
import pytest
import scipy.sparse as sp

import poisson_nmf as pnmf
from poisson_nmf.model import choose_likelihood
from tests.conftest import named_rng


def _point(model, W, H):
    return {"W_log__": np.log(W), "H_log__": np.log(H)}


@pytest.mark.parametrize("priors", [None, pnmf.GammaPriors(w_shape=2.0, h_rate=[[1.0], [3.0]])])
def test_dense_sparse_and_masked_forms_agree(priors):
    rng = named_rng("forms_agree")
    X = rng.poisson(1.0, size=(15, 9))
    X[0, 0] = 3
    W, H = rng.gamma(1.0, 1.0, (15, 2)), rng.gamma(1.0, 1.0, (2, 9))
    nothing = np.zeros(X.shape, bool)
    models = [
        pnmf.build_model(X, 2, priors=priors, likelihood="dense"),
        pnmf.build_model(X, 2, priors=priors, likelihood="sparse"),
        pnmf.build_model(sp.csr_matrix(X), 2, priors=priors),
        pnmf.build_model(X, 2, priors=priors, mask=nothing, likelihood="dense"),
    ]
    lps = [m.compile_logp(jacobian=False)(_point(m, W, H)) for m in models]
    grads = [m.compile_dlogp(jacobian=False)(_point(m, W, H)) for m in models]
    # identical sums in a different order: agreement to rounding error
    np.testing.assert_allclose(lps, lps[0], rtol=1e-9)
    for g in grads[1:]:
        np.testing.assert_allclose(g, grads[0], rtol=1e-9)
    # and the logp is the Poisson log-likelihood plus the Gamma log-prior
    expected = pnmf.poisson_loglik(X, (W, H))
    if priors is not None:
        expected += priors.log_normaliser(15, 9, 2) - priors.penalty(W, H)
    assert lps[0] == pytest.approx(expected, rel=1e-12)


def test_masked_entries_are_left_out():
    rng = named_rng("masked_left_out")
    X = rng.poisson(2.0, size=(10, 6))
    mask = rng.random(X.shape) < 0.3
    W, H = rng.gamma(1.0, 1.0, (10, 2)), rng.gamma(1.0, 1.0, (2, 6))
    expected = pnmf.poisson_loglik(X, (W, H), mask=mask)
    for form in ("dense", "sparse"):
        m = pnmf.build_model(X, 2, priors=None, mask=mask, likelihood=form)
        assert m.compile_logp(jacobian=False)(_point(m, W, H)) == pytest.approx(expected, rel=1e-9)


def test_model_dims_and_auto_choice(digits_counts):
    m = pnmf.build_model(digits_counts, 3)
    assert m.named_vars_to_dims["W"] == ("row", "component")
    assert m.named_vars_to_dims["H"] == ("component", "column")
    assert len(m.coords["component"]) == 3
    assert choose_likelihood(digits_counts) == "dense"
    assert choose_likelihood(pnmf.as_counts(sp.csr_matrix(np.eye(5)))) == "sparse"
    with pytest.raises(ValueError, match="likelihood must be 'auto', 'dense' or 'sparse'"):
        choose_likelihood(digits_counts, "fast")
    with pytest.raises(TypeError, match="priors must be a GammaPriors or None"):
        pnmf.build_model(digits_counts, 3, priors={"w_shape": 1})


def test_prior_parameters_stay_float64():
    """2.0, 3.0 and 1.5 are exact in float32; PyTensor would make float32 constants of them.

    PyMC's Gamma then computed log Γ(a) and the scale 1/b in float32, and the
    log-density was off by ~1e-8 relative (b = 3 became 1/float32(1/3)).
    """
    from poisson_nmf import pymc_logp_grad

    rng = named_rng("prior_float64")
    X = rng.poisson(2.0, size=(12, 7))
    priors = pnmf.GammaPriors(w_shape=2.0, w_rate=3.0, h_shape=1.5, h_rate=0.25)
    W, H = rng.gamma(2.0, 1.0, (12, 2)), rng.gamma(2.0, 1.0, (2, 7))
    lp, gW, _ = pymc_logp_grad(X, W, H, priors=priors)
    expected = pnmf.poisson_loglik(X, (W, H)) + priors.log_normaliser(12, 7, 2)
    expected -= priors.penalty(W, H)
    # the same ~100 terms summed in another order: a few ulp of the largest term
    assert lp == pytest.approx(expected, rel=1e-14)
    expected_gW = (X / (W @ H) - 1.0) @ H.T - 3.0 + 1.0 / W
    np.testing.assert_allclose(gW, expected_gW, rtol=1e-13)
