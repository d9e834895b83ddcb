"""The extrapolation state shared by the KL solver and the MAP."""

import numpy as np

from poisson_nmf.optim.extrapolation import BETA0, ETA, GAMMA, GAMMA_MAX, Extrapolation


def test_propose_grows_beta_and_keeps_half_of_each_entry():
    ex = Extrapolation()
    W, W_prev = np.array([[2.0, 0.0, 1.0]]), np.array([[1.0, 0.0, 4.0]])
    (W_hat,) = ex.propose((W,), (W_prev,))
    beta = min(1.0, GAMMA * BETA0)
    assert ex.beta == beta and ex.beta_max == min(1.0, GAMMA_MAX) and ex.pending
    # 2 + beta * 1; a zero stays zero; 1 + beta * (-3) < 0.5 is held at half the entry
    np.testing.assert_array_equal(W_hat, [[2.0 + beta, 0.0, 0.5]])


def test_floor_bounds_the_proposal():
    ex = Extrapolation()
    (x,) = ex.propose((np.array([1e-9]),), (np.array([1.0]),), floor=1e-6)
    assert x[0] == 1e-6


def test_reject_damps_and_caps_beta():
    ex = Extrapolation()
    ex.propose((np.ones(1),), (np.ones(1),))
    beta = ex.beta
    ex.reject()
    assert (ex.beta, ex.beta_max, ex.pending) == (beta / ETA, beta, False)
    # the next growth is capped by the beta that failed
    ex.accept()
    for _ in range(5):
        ex.propose((np.ones(1),), (np.ones(1),))
    assert ex.beta <= beta * GAMMA_MAX**5


def test_accept_keeps_beta():
    ex = Extrapolation()
    ex.propose((np.ones(1),), (np.ones(1),))
    beta = ex.beta
    ex.accept()
    assert ex.beta == beta and not ex.pending
