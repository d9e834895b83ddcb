import pytest

from tests.conftest import named_rng


@pytest.fixture(scope="module")
def small():
    """A 40 x 25 table drawn with K = 3 (the MAP and comparison tests share it)."""
    rng = named_rng("small_fit")
    W, H = rng.gamma(1.0, 1.0, (40, 3)), rng.gamma(1.0, 2.0, (3, 25))
    return rng.poisson(W @ H)


def poisson_lowrank(rng, F=40, N=30, K=3, scale=3.0):
    W = rng.gamma(1.0, 1.0, size=(F, K))
    H = rng.gamma(1.0, 1.0, size=(K, N))
    return rng.poisson(scale * W @ H)
