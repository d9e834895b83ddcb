import numpy as np
import pytest

from poisson_nmf.align import align_factors, match_components, normalize_factors
from tests.conftest import named_rng


@pytest.mark.parametrize("seed", range(20))
def test_align_recovers_planted_permutation_and_scale(seed):
    rng = np.random.default_rng(seed)
    F, N, K = 15, 9, 4
    W = rng.gamma(0.5, 1.0, (F, K))
    H = rng.gamma(0.5, 1.0, (K, N))
    perm = rng.permutation(K)
    d = np.exp(rng.normal(0, 2, K))
    Wp, Hp = W[:, perm] * d, H[perm] / d[:, None]
    res = align_factors(Wp, Hp, W, H)
    Wr, Hr, _ = normalize_factors(W, H)
    np.testing.assert_allclose(res.W, Wr, rtol=1e-12)
    np.testing.assert_allclose(res.H, Hr, rtol=1e-12)
    np.testing.assert_array_equal(perm[res.permutation], np.arange(K))
    np.testing.assert_allclose(res.W @ res.H, W @ H, rtol=1e-12)


@pytest.mark.parametrize("normalize", ["W", "H"])
def test_normalize_keeps_product(normalize):
    rng = named_rng("test_normalize_keeps_product")
    W = rng.gamma(1.0, 1.0, (3, 7, 5, 2))
    H = rng.gamma(1.0, 1.0, (3, 7, 2, 6))
    Wn, Hn, s = normalize_factors(W, H, normalize=normalize)
    np.testing.assert_allclose(Wn @ Hn, W @ H, rtol=1e-12)
    sums = Wn.sum(-2) if normalize == "W" else Hn.sum(-1)
    np.testing.assert_allclose(sums, 1.0)
    assert s.shape == (3, 7, 2)


def test_match_is_vectorised_over_draws():
    rng = named_rng("test_match_is_vectorised_over_draws")
    W = rng.gamma(0.5, 1.0, (10, 3))
    H = rng.gamma(0.5, 1.0, (3, 8))
    perms = np.array([rng.permutation(3) for _ in range(6)]).reshape(2, 3, 3)
    Ws = W[:, perms].transpose(1, 2, 0, 3)  # (2, 3, F, K)
    Hs = H[perms]  # (2, 3, K, N)
    got = match_components(Ws, Hs, W, H)
    assert got.shape == (2, 3, 3)
    for idx in np.ndindex(2, 3):
        np.testing.assert_array_equal(perms[idx][got[idx]], np.arange(3))


def test_bad_normalize_and_shapes():
    W, H = np.ones((4, 2)), np.ones((2, 3))
    with pytest.raises(ValueError, match="normalize must be 'W'"):
        normalize_factors(W, H, normalize="X")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reference shapes"):
        match_components(W, H, np.ones((5, 2)), H)
