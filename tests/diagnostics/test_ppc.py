"""The rates WH per draw and the predictive checks, against plain NumPy references."""

import numpy as np
import pytest
from scipy.stats import binom

from poisson_nmf.diagnostics import draw_rates
from poisson_nmf.diagnostics.ppc import ppc_summary
from tests.diagnostics.trees import hand_tree


def test_draw_rates_dense_and_at_entries():
    rng = np.random.default_rng(sum(map(ord, "test_draw_rates")))
    W = rng.gamma(1.0, 1.0, (3, 5, 2))
    H = rng.gamma(1.0, 1.0, (3, 2, 4))
    dense = draw_rates(W, H)
    ref = np.stack([W[d] @ H[d] for d in range(3)])
    # the same products summed in another order: equal to the last few ulp
    np.testing.assert_allclose(dense, ref, rtol=1e-14)
    r, c = np.array([0, 4, 2]), np.array([3, 0, 1])
    np.testing.assert_allclose(draw_rates(W, H, (r, c)), ref[:, r, c], rtol=1e-14)
    assert draw_rates(W, H, (r, c)).shape == (3, 3)


def test_ppc_summary_against_numpy():
    t = hand_tree(C=2, D=50, pointwise=True, seed=3)
    info, disc, cov = ppc_summary(t, 0.9)
    W = t["posterior"]["W"].values.reshape(100, 3, 2)
    H = t["posterior"]["H"].values.reshape(100, 2, 4)
    lam = np.einsum("dfk,dkn->dfn", W, H).reshape(100, -1)
    y = t["observed_data"]["V"].values.ravel().astype(float)
    yrep = t["posterior_predictive"]["V"].values.reshape(100, -1)
    real = ((y - lam) ** 2 / lam).sum(1)
    rep = ((yrep - lam) ** 2 / lam).sum(1)
    np.testing.assert_allclose(disc["realised"], real, rtol=1e-12)
    np.testing.assert_allclose(disc["replicated"], rep, rtol=1e-12)
    assert info["ppp"] == pytest.approx(np.mean(rep >= real))
    # the interval of each entry: ArviZ's equal-tailed one, so the share is a count / 12
    assert info["coverage"] == pytest.approx(cov["covered"].mean())
    n_in = int(cov["covered"].sum())
    assert info["coverage_p"] == pytest.approx(binom.cdf(n_in, 12, 0.9))
    assert info["n_entries"] == 12 and not info["weighted"]
