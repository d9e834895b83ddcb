"""Starts of the solvers and the zeros that trap them."""

import numpy as np

import poisson_nmf as pnmf
from poisson_nmf.optim.starts import FILL, dead_components, random_start, untrap_start
from tests.conftest import named_rng
from tests.optim.conftest import poisson_lowrank


def _case():
    rng = named_rng("test_starts")
    V = poisson_lowrank(rng, F=6, N=5, K=2)
    V[0, 0] = 3  # row 0 and column 0 have a positive count
    counts = pnmf.as_counts(V)
    W, H = pnmf.initial_factors(V, 2, random_seed=0)
    zeros = np.zeros((6, 2)), np.zeros((2, 5))
    return counts, W, H, zeros


def test_cd_fills_a_zero_row_of_w_over_counts():
    counts, W, H, (am1_w, am1_h) = _case()
    W[0] = 0.0
    W1, H1, msg = untrap_start(counts, W, H, "cd", am1_w, am1_h)
    np.testing.assert_array_equal(W1[0], FILL * W[W > 0].mean())
    np.testing.assert_array_equal(W1[1:], W[1:])
    np.testing.assert_array_equal(H1, H)
    assert "1 zero row(s) of W0" in msg
    assert W[0].sum() == 0  # the caller's start is left alone


def test_no_live_component_is_the_seeded_random_start():
    counts, W, H, (am1_w, am1_h) = _case()
    for Wz, Hz in ((0 * W, H), (W, 0 * H), (0 * W, 0 * H)):
        assert dead_components(Wz, Hz).all()
        W1, H1, msg = untrap_start(counts, Wz, Hz, "mu", am1_w, am1_h, random_seed=4)
        W2, H2 = random_start(counts, 2, np.random.default_rng(4))
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(H1, H2)
        assert "no live component" in msg


def test_a_clean_start_is_kept():
    counts, W, H, (am1_w, am1_h) = _case()
    for method in ("cd", "mu"):
        W1, H1, msg = untrap_start(counts, W, H, method, am1_w, am1_h)
        assert W1 is W and H1 is H and msg is None
