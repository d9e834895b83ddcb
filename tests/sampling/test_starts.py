"""Start strategies: given values are checked, MAP starts shared, zeros filled."""

import numpy as np
import pytest

import poisson_nmf as pnmf
from poisson_nmf.sampling.density import LogDensity
from poisson_nmf.sampling.starts import at_map, chain_starts, fill_zeros, from_values, jittered


def test_from_values_checks_count_shape_and_sign():
    W, H = np.ones((4, 2)), np.ones((2, 3))
    st = from_values([(W, H), (2 * W, H)], 2, 4, 3, 2)
    assert st.W_ref is st.pairs[0][0] and np.isnan(st.objective)
    with pytest.raises(ValueError, match="init has 1"):
        from_values([(W, H)], 2, 4, 3, 2)
    with pytest.raises(ValueError, match=r"init\[0\] must be non-negative"):
        from_values([(np.ones((3, 2)), H)], 1, 4, 3, 2)
    with pytest.raises(ValueError, match=r"init\[1\] must be non-negative"):
        from_values([(W, H), (-W, H)], 2, 4, 3, 2)


def test_chain_starts_by_name(small_counts):
    counts = pnmf.as_counts(small_counts)
    with pytest.raises(ValueError, match="init must be"):
        chain_starts("mapp", counts, 2, pnmf.GammaPriors(), np.random.default_rng(0), 2, {})
    st = at_map(counts, 2, pnmf.GammaPriors(), np.random.default_rng(0), 3, {})
    # every chain at the one MAP, which is also the reference
    assert len(st.pairs) == 3 and all(p[0] is st.W_ref and p[1] is st.H_ref for p in st.pairs)
    assert np.isfinite(st.objective)


def test_zeros_filled_and_starts_jittered(small_counts):
    counts = pnmf.as_counts(small_counts)
    dens = LogDensity.build(counts, 2, pnmf.GammaPriors())
    W, H = np.ones((30, 2)), np.ones((2, 12))
    W[0, 1] = 0.0  # a MAP entry on the boundary
    Wf, Hf = fill_zeros(counts, W, H, dens)
    assert Wf[0, 1] > 0 and W[0, 1] == 0.0  # filled in a copy
    np.testing.assert_array_equal(np.delete(Wf.ravel(), 1), 1.0)  # the rest untouched
    st = from_values([(W, H)] * 2, 2, 30, 12, 2)
    xs = jittered(st, counts, dens, 0.05, np.random.default_rng(1))
    assert len(xs) == 2 and xs[0].shape == (dens.n_dim,)
    # log-normal jitter of sd 0.05 around the filled start (and different per chain)
    assert 0.03 < float(np.std(xs[0] - dens.pack(Wf, Hf))) < 0.07
    assert not np.array_equal(xs[0], xs[1])
