"""Shared fixtures of the sampler's tests: a small table and one run on it."""

import pytest

from poisson_nmf.sampling.api import sample_posterior
from tests.conftest import named_rng

SMALL = {"draws": 60, "tune": 60, "chains": 2}


@pytest.fixture(scope="module")
def small_counts():
    rng = named_rng("small_counts")
    W = rng.gamma(1.0, 1.0, (30, 2)) + 0.1
    H = rng.gamma(1.0, 3.0, (2, 12)) + 0.1
    return rng.poisson(W @ H)


@pytest.fixture(scope="module")
def small_tree(small_counts):
    return sample_posterior(small_counts, 2, random_seed=7, **SMALL)
