"""The compiled code comes from Numba's cache, the same in every process."""

import sys

import numpy as np

from poisson_nmf.sampling.api import sample_posterior

_SUBPROCESS_RUN = """
import sys, numpy as np
from poisson_nmf import sample_posterior
V = np.load(sys.argv[1])
tree = sample_posterior(V, 2, random_seed=7, draws=40, tune=300, chains=2, pointwise_draws=0)
np.save(sys.argv[2], tree["posterior"]["W"].values)
"""


def test_reproducible_across_processes(small_counts, tmp_path):
    """Equal seeds give equal draws in another process too (two-stage warm-up).

    The sampler runs its compiled code as Numba cached it, never as compiled in the
    running process, which may differ in the last bits (see
    ``poisson_nmf.sampling.cache.precompile``). Should this process have compiled the callbacks
    itself all the same (a cache directory it cannot write), the draws of two fresh
    processes are compared instead.
    """
    import subprocess

    from poisson_nmf.sampling.cache import load_callbacks

    np.save(tmp_path / "V.npy", small_counts)

    def run(name: str) -> np.ndarray:
        out = tmp_path / f"{name}.npy"
        subprocess.run(
            [sys.executable, "-c", _SUBPROCESS_RUN, str(tmp_path / "V.npy"), str(out)],
            check=True,
            timeout=600,
        )
        return np.load(out)

    other = run("other")
    if load_callbacks()[0].cache_hits:
        here = sample_posterior(
            small_counts, 2, random_seed=7, draws=40, tune=300, chains=2, pointwise_draws=0
        )["posterior"]["W"].values
    else:
        here = run("again")
    np.testing.assert_array_equal(here, other)
