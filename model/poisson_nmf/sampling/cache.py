"""The sampler's compiled code in Numba's disk cache, compiled in a process of its own.

A process that compiles the callbacks runs them as compiled in memory, and that machine
code can differ in the last bit of a few gradient entries from what the cache stores
and every later process loads (enough for chains to part after some hundred draws;
both are exact NUTS). So the sampler never runs code it compiled itself: on a cache
miss :func:`load_callbacks` first runs :func:`precompile` in a fresh Python process,
then loads the cache; equal seeds give equal draws in every process.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any

import numba
import numpy as np

from ..numba_cache import ensure_fresh
from .callbacks import expand_callback, logp_callback
from .warmup import LEARN_MIN_TUNE

__all__ = ["load_callbacks", "precompile"]

_COMPILING = "POISSON_NMF_COMPILING"  # set in the process that fills the cache


def precompile() -> bool:
    """Compile the sampler's C callbacks into Numba's disk cache; return whether they were there.

    Through tiny runs it also compiles every other function of the sampling path and
    :func:`poisson_nmf.fit_loadings`' sampler (any
    compiled function that calls another can differ in its last bits between in-memory
    and cached code, as the callbacks do). :func:`load_callbacks` runs this in a
    process of its own on a cache miss; ``make`` runs it once after installing, which
    moves the compile time out of the first run.
    """
    from .api import sample_posterior  # here: the entry point imports this module

    ensure_fresh()
    os.environ[_COMPILING] = "1"
    try:
        hit = bool(load_callbacks()[0].cache_hits)
        # every other compiled function of the sampling path, through tiny runs (the
        # same effect holds for any of them that calls another: to_y did): dense and
        # sparse kernels, the two-stage warm-up, the pointwise groups
        rng = np.random.default_rng(0)
        dense = rng.poisson(rng.gamma(1.0, 1.0, (30, 2)) @ rng.gamma(1.0, 3.0, (2, 12)))
        sparse = np.zeros((40, 30), dtype=np.int64)
        sparse[rng.integers(0, 40, 60), rng.integers(0, 30, 60)] = 1
        for V in (dense, sparse):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sample_posterior(
                    V, 2, draws=10, tune=LEARN_MIN_TUNE, chains=2, random_seed=0,
                    pointwise_draws=10, progress=False,
                )  # fmt: skip
        # and fit_loadings' exact sampler (its kernels are Numba-cached too: about 30 s
        # to compile, which would otherwise fall on a user's first call)
        from ..loadings import fit_loadings

        W = rng.gamma(1.0, 1.0, (30, 2))
        fit_loadings(dense[:, :3], W, method="posterior", draws=10, tune=10, chains=1,
                     random_seed=0, progress=False)  # fmt: skip
    finally:
        os.environ.pop(_COMPILING, None)
    return hit


def _cache_in_other_process(sig: Any) -> None:
    """Fill Numba's cache with the callbacks from a fresh process, if they are not there.

    Does nothing inside that process, or where the cache already holds them; if the
    process fails (no cache directory one can write, no interpreter to start) the
    caller compiles here, and this process's draws may then differ in the last bits
    from those of later processes.
    """
    if os.environ.get(_COMPILING):
        return
    import subprocess
    import sys

    from numba.core.caching import FunctionCache
    from numba.core.registry import cpu_target

    try:
        if FunctionCache(logp_callback).load_overload(sig, cpu_target.target_context):
            return
    except Exception:  # an unreadable cache: compile as usual
        return
    code = "from poisson_nmf.sampling.cache import precompile; precompile()"
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)


@functools.cache
def load_callbacks() -> tuple[Any, Any]:
    """Load the C callbacks from Numba's disk cache (the data come as user data).

    On a cache miss they are compiled in a process of their own first
    (:func:`precompile`), so that every process runs the same machine code.
    """
    ptr = numba.types.CPointer(numba.types.double)
    u64, vp = numba.types.uint64, numba.types.voidptr
    sig = numba.types.int64(u64, ptr, ptr, ptr, vp)
    sig_x = numba.types.int64(u64, u64, ptr, ptr, vp)
    ensure_fresh()
    _cache_in_other_process(sig)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", numba.NumbaWarning)  # type: ignore[attr-defined]
        return (
            numba.cfunc(sig, cache=True)(logp_callback),
            numba.cfunc(sig_x, cache=True)(expand_callback),
        )
