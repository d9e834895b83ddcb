import numpy as np
import pytest

import poisson_nmf as pnmf


def named_rng(name: str) -> np.random.Generator:
    """A generator seeded from a test's name, so each test has its own fixed stream."""
    return np.random.default_rng(sum(map(ord, name)))


@pytest.fixture(scope="session")
def digits():
    return pnmf.load_digits()


@pytest.fixture(scope="session")
def digits_counts(digits):
    return pnmf.as_counts(digits)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
