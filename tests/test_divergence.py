import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import poisson

import poisson_nmf as pnmf
from tests.conftest import named_rng


def kl_reference(V, lam):
    """Slow, obvious reference: a Python loop with 0 log 0 = 0."""
    total = 0.0
    for v, m in zip(np.ravel(V), np.ravel(lam), strict=True):
        v, m = float(v), float(m)
        if v == 0:
            total += m
        elif m == 0:
            return np.inf
        else:
            total += v * np.log(v / m) - v + m
    return total


def random_factors(rng, F, N, K):
    return rng.gamma(0.5, 2.0, size=(F, K)), rng.gamma(0.5, 2.0, size=(K, N))


def sparse_counts(rng, F=60, N=40, density=0.1):
    X = rng.poisson(3.0, size=(F, N)) * (rng.random((F, N)) < density)
    X[0, 0] = 1  # never all zero
    return X


def test_identity_on_digits_for_20_random_factors(digits_counts):
    rng = named_rng("identity_digits")
    const = pnmf.loglik_constant(digits_counts)
    F, N = digits_counts.shape
    for _ in range(20):
        W, H = random_factors(rng, F, N, 10)
        ll = pnmf.poisson_loglik(digits_counts, W @ H)
        kl = pnmf.kl_divergence(digits_counts, W @ H)
        # every term is O(1) with ~1e5 terms: summation error stays near 1e-13 relative
        assert ll + kl == pytest.approx(const, rel=1e-10)


def test_identity_on_sparse_random_data_with_many_zeros():
    rng = named_rng("identity_sparse")
    for _ in range(20):
        X = sparse_counts(rng)
        W, H = random_factors(rng, *X.shape, 4)
        for V in (X, sp.csr_matrix(X)):
            ll = pnmf.poisson_loglik(V, (W, H))
            kl = pnmf.kl_divergence(V, (W, H))
            assert ll + kl == pytest.approx(pnmf.loglik_constant(V), rel=1e-10)


def test_against_scipy_logpmf_and_slow_reference():
    rng = named_rng("against_scipy")
    X = sparse_counts(rng, 30, 20, density=0.5)
    W, H = random_factors(rng, 30, 20, 3)
    lam = W @ H
    assert pnmf.poisson_loglik(X, lam) == pytest.approx(poisson.logpmf(X, lam).sum(), rel=1e-12)
    assert pnmf.kl_divergence(X, lam) == pytest.approx(kl_reference(X, lam), rel=1e-12)


def test_dense_sparse_masked_and_factored_agree():
    rng = named_rng("dense_sparse_masked")
    X = sparse_counts(rng)
    W, H = random_factors(rng, *X.shape, 5)
    nothing = np.zeros(X.shape, bool)
    kls = [
        pnmf.kl_divergence(X, W @ H),
        pnmf.kl_divergence(sp.csr_matrix(X), W @ H),
        pnmf.kl_divergence(sp.csr_matrix(X), (W, H)),
        pnmf.kl_divergence(X, (W, H), mask=nothing),
        pnmf.kl_divergence(sp.coo_matrix(X), (W, H), mask=sp.csr_matrix(nothing)),
    ]
    np.testing.assert_allclose(kls, kls[0], rtol=1e-12)
    lls = [pnmf.poisson_loglik(X, W @ H), pnmf.poisson_loglik(sp.csr_matrix(X), (W, H))]
    np.testing.assert_allclose(lls, lls[0], rtol=1e-12)


def test_mask_leaves_entries_out():
    rng = named_rng("mask_leaves_out")
    X = sparse_counts(rng, 20, 10, density=0.6)
    W, H = random_factors(rng, 20, 10, 2)
    mask = rng.random(X.shape) < 0.3
    lam = W @ H
    expected = kl_reference(X[~mask], lam[~mask])
    Xn = X.astype(float)
    Xn[mask] = np.nan
    for V, rate in [(Xn, lam), (Xn, (W, H)), (sp.csr_matrix(X), (W, H))]:
        assert pnmf.kl_divergence(V, rate, mask=mask) == pytest.approx(expected, rel=1e-12)
    ll = poisson.logpmf(X[~mask], lam[~mask]).sum()
    assert pnmf.poisson_loglik(Xn, (W, H), mask=mask) == pytest.approx(ll, rel=1e-12)


def test_underflowing_rate_gives_inf_not_nan():
    X = np.array([[0, 3], [2, 0]])
    lam = np.array([[0.0, 0.0], [1.0, 0.0]])
    assert pnmf.kl_divergence(X, lam) == np.inf
    assert pnmf.poisson_loglik(X, lam) == -np.inf
    # zero rate where v = 0 is fine: 0 log 0 = 0
    assert np.isfinite(pnmf.kl_divergence(np.array([[0, 1]]), np.array([[0.0, 1.0]])))
    tiny = np.full((2, 2), 1e-320)
    assert np.isfinite(pnmf.kl_divergence(X, tiny))


def test_kl_is_zero_at_the_data():
    X = np.array([[1, 0], [4, 7]])
    assert pnmf.kl_divergence(X, X.astype(float)) == 0.0


@pytest.mark.parametrize(
    ("rate", "match"),
    [
        (np.full((2, 2), -1.0), r"rate contains negative values"),
        (np.full((2, 2), np.nan), r"rate contains NaN or inf"),
        (np.ones((3, 2)), r"rate has shape \(3, 2\) but V has shape \(2, 2\)"),
        ((np.ones((2, 1)), np.ones((2, 2))), r"W has 1 components but H has 2"),
        ((np.ones((3, 1)), np.ones((1, 2))), r"W and H must have shapes"),
    ],
)
def test_bad_rates(rate, match):
    with pytest.raises(ValueError, match=match):
        pnmf.kl_divergence(np.ones((2, 2)), rate)


def test_priors_penalty_and_validation():
    p = pnmf.GammaPriors(w_shape=2.0, w_rate=3.0, h_shape=[[1.0], [2.0]], h_rate=1.0)
    W = np.array([[1.0, 2.0]])
    H = np.array([[1.0], [4.0]])
    # 3*1 - log 1 + 3*2 - log 2 ; h: 1*1 - 0 + 1*4 - 1*log 4
    expected = 3 + 6 - np.log(2) + 1 + 4 - np.log(4)
    assert p.penalty(W, H) == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"GammaPriors.w_rate must be finite and > 0"):
        pnmf.GammaPriors(w_rate=0.0)
    with pytest.raises(ValueError, match=r"w_shape < 1 has no mode"):
        pnmf.GammaPriors(w_shape=0.5).check_map()
    with pytest.raises(ValueError, match=r"GammaPriors.h_rate has shape \(3,\)"):
        pnmf.GammaPriors(h_rate=[1.0, 2.0, 3.0]).arrays(2, 2, 2)
