"""The pointwise groups' arrays."""

import numpy as np

import poisson_nmf as pnmf


def test_pointwise_predictive_never_wraps():
    # counts near 3e9 (past int32, within 2**53): the predictive draws are stored as int64
    from poisson_nmf.sampling.pointwise import pointwise

    V = np.array([[3_000_000_000, 5], [7, 2_500_000_000]])
    counts = pnmf.as_counts(V)
    W = np.broadcast_to(np.eye(2), (1, 4, 2, 2)).copy()
    H = np.broadcast_to(V.astype(float), (1, 4, 2, 2)).copy()
    ll, pp = pointwise(counts, W, H, np.arange(4), np.random.default_rng(0), chunk=2)
    assert pp.dtype == np.int64
    # Poisson(3e9) draws lie within 10 sd (5.5e5) of the rate; a wrap would be negative
    np.testing.assert_allclose(pp[0, :, 0], 3e9, atol=6e5)
    assert (pp[0, :, 1] < 100).all()
    small = np.array([[3, 5], [7, 2]])
    Hs = np.broadcast_to(small.astype(float), (1, 4, 2, 2)).copy()
    _, pp3 = pointwise(pnmf.as_counts(small), W, Hs, np.arange(4), np.random.default_rng(0))
    assert pp3.dtype == np.int32  # small counts keep the compact dtype


def test_pointwise_draws_are_rounded_up_per_chain():
    # chains=3, pointwise_draws=20: 7 per chain (21), not 6 (18, under the predictive
    # checks' floor of 20); never more than every draw the chains hold
    from poisson_nmf.sampling.pointwise import add_pointwise_groups

    V = np.array([[3, 5], [7, 2]])
    rng = np.random.default_rng(0)
    for chains, draws, asked, kept in ((3, 50, 20, 21), (2, 50, 5, 6), (2, 50, 4, 4),
                                       (3, 4, 20, 12), (3, 50, 1, 3)):  # fmt: skip
        W = np.ones((chains, draws, 2, 2))
        H = np.ones((chains, draws, 2, 2))
        groups: dict = {}
        add_pointwise_groups(groups, pnmf.as_counts(V), W, H, asked, None, rng, 1, 4)
        assert groups["posterior_predictive"].sizes["draw"] * chains == kept
        assert groups["log_likelihood"].sizes["draw"] * chains == kept
