import numpy as np
import pytest

import poisson_nmf as pnmf
from tests.conftest import named_rng


@pytest.fixture(scope="module")
def small():
    rng = named_rng("small_fit")
    W, H = rng.gamma(1.0, 1.0, (40, 3)), rng.gamma(1.0, 2.0, (3, 25))
    return rng.poisson(W @ H)


def test_fit_map_increases_pymc_logp_and_matches_objective(small):
    res = pnmf.fit_map(small, 3, random_seed=1, max_iter=300, tol=1e-10, warn=False)
    assert np.all(np.diff(res.history) <= 1e-9 * res.history[0])  # monotone ascent of logp
    assert res.objective == pytest.approx(pnmf.kl_divergence(small, (res.W, res.H)), rel=1e-12)
    # logp + KL = constant on the PyMC model itself
    assert res.logp + res.objective == pytest.approx(pnmf.loglik_constant(small), rel=1e-12)


def test_fit_map_is_reproducible_and_validates_init(small):
    a = pnmf.fit_map(small, 2, random_seed=5, max_iter=5, warn=False)
    b = pnmf.fit_map(small, 2, random_seed=5, max_iter=5, warn=False)
    np.testing.assert_array_equal(a.W, b.W)
    with pytest.raises(ValueError, match=r"init W0 has shape \(3, 2\)"):
        pnmf.fit_map(small, 2, init=(np.ones((3, 2)), np.ones((2, 25))))
    with pytest.raises(ValueError, match="has no mode"):
        pnmf.fit_map(small, 2, priors=pnmf.GammaPriors(h_shape=0.5))


@pytest.mark.parametrize("priors", [None, pnmf.GammaPriors(w_shape=1.5, h_shape=1.2)])
def test_map_and_kl_agree_at_stationary_points(small, priors):
    cmp = pnmf.compare_map_kl(small, 3, priors=priors, random_seed=0)
    # polishing a converged solution by the other method moves the objective by
    # no more than the stopping tolerances allow (1e-10 per iteration, few hundred steps)
    assert cmp.objective_gap < 1e-5
    # PyTensor and NumPy evaluate the Gamma log-density with different formulas and
    # summation orders; seen here: 1e-15 with flat priors, 2e-10 with Gamma priors
    assert cmp.identity_error < 1e-8
    assert np.isfinite(cmp.kkt_kl_under_map) and np.isfinite(cmp.kkt_map_under_kl)
    assert "objective gap" in cmp.summary()


def test_matched_agreement_undoes_permutation_and_scale():
    from poisson_nmf.compare import matched_agreement

    rng = named_rng("matched_agreement")
    W, H = rng.gamma(1.0, 1.0, (20, 4)), rng.gamma(1.0, 1.0, (4, 7))
    perm = rng.permutation(4)
    d = rng.uniform(0.1, 10, 4)
    w, h, p = matched_agreement(W, H, (W * d)[:, perm], (H / d[:, None])[perm])
    assert w < 1e-12 and h < 1e-12
    np.testing.assert_array_equal(perm[p], np.arange(4))
