"""MAP versus KL: the two solvers agree where they must, and the checks behind it."""

import numpy as np
import pytest

import poisson_nmf as pnmf
from poisson_nmf.optim.compare import kkt_residual, matched_agreement
from tests.conftest import named_rng


@pytest.mark.parametrize(
    "priors", [None, pnmf.GammaPriors(), pnmf.GammaPriors(w_shape=1.5, h_shape=1.2)]
)
def test_map_and_kl_agree_at_stationary_points(small, priors):
    cmp = pnmf.compare_map_kl(small, 3, priors=priors, random_seed=0)
    # a converged solution polished by the other method moves by less than the
    # stopping rules leave (1e-12 relative per iteration; seen here: ~1e-11 at most)
    assert cmp.objective_gap < 1e-9
    # both are KKT points of both objectives (seen: <= 1e-6 for seeds 0..2)
    assert cmp.kkt_kl_under_map < 1e-5 and cmp.kkt_map_under_kl < 1e-5
    # logp + objective = constant: PyTensor and NumPy sum ~1000 terms of size up to
    # |logp| in a different order, so the identity holds to a few ulp of |logp| (seen:
    # <= 1.2e-15; before the prior parameters were passed as float64, 2e-10)
    assert cmp.identity_error < 1e-13
    # K = 3 on data drawn with K = 3: both fits find the one optimum from this start,
    # the factors agree to the stopping rules (seen: 2e-6 in W, 1.4e-5 in H at most)
    assert cmp.same_optimum
    assert cmp.w_agreement < 1e-4 and cmp.h_agreement < 1e-3
    assert "objective gap" in cmp.summary()


def test_kkt_residual_matches_dense_reference():
    """The non-zero form against the obvious dense formula, with a mask and a = 1 zeros."""
    rng = named_rng("kkt_dense")
    X = rng.poisson(1.5, size=(12, 9))
    mask = rng.random(X.shape) < 0.25
    W, H = rng.gamma(1.0, 1.0, (12, 2)), rng.gamma(1.0, 1.0, (2, 9))
    W[0, 1] = 0.0  # allowed with shape 1 (no log term)
    priors = pnmf.GammaPriors(w_shape=1.0, w_rate=2.0, h_shape=1.3, h_rate=0.5)
    counts = pnmf.as_counts(X, mask=mask)
    obs = ~mask
    lam = W @ H
    ratio = np.where(obs & (X > 0), X / lam, 0.0)
    gW = obs @ H.T - ratio @ H.T + 2.0
    gH = W.T @ obs - W.T @ ratio + 0.5 - 0.3 / H
    scale = max(np.abs(obs @ H.T).max(), np.abs(W.T @ obs).max())
    expected = max(
        np.abs(np.minimum(W / W.mean(), gW)).max(), np.abs(np.minimum(H / H.mean(), gH)).max()
    )
    assert kkt_residual(counts, W, H, priors) == pytest.approx(expected / scale, rel=1e-12)
    assert kkt_residual(counts, W, H, gradient=(gW, gH)) == pytest.approx(expected / scale)


def test_matched_agreement_undoes_permutation_and_scale():
    rng = named_rng("matched_agreement")
    W, H = rng.gamma(1.0, 1.0, (20, 4)), rng.gamma(1.0, 1.0, (4, 7))
    perm = rng.permutation(4)
    d = rng.uniform(0.1, 10, 4)
    w, h, p = matched_agreement(W, H, (W * d)[:, perm], (H / d[:, None])[perm])
    assert w < 1e-12 and h < 1e-12
    np.testing.assert_array_equal(perm[p], np.arange(4))


def test_compare_on_a_table_fitted_exactly():
    # objective ~0: the gap is measured against a floor, not divided by zero
    V = np.outer([1, 2, 3], [2, 4, 6, 8])
    cmp = pnmf.compare_map_kl(V, 1, random_seed=0)
    assert cmp.same_optimum
    assert cmp.objective_gap < 1e-6
    assert pnmf.compare_map_kl(np.array([[3], [7]]), 1, random_seed=0).same_optimum
