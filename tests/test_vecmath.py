import numba
import numpy as np
import pytest

from poisson_nmf.vecmath import FAST, fexp, flog, flog_t
from tests.conftest import named_rng


@numba.njit(fastmath=FAST, error_model="numpy")
def _apply(x, which):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = flog(x[i]) if which == 0 else fexp(x[i])
    return out


def test_flog_matches_numpy_to_a_few_ulp():
    rng = named_rng("test_flog")
    # the whole normal range, and the mantissa range where log is near 0
    for x in (np.exp(rng.uniform(-700.0, 700.0, 200_000)), rng.uniform(0.5, 2.0, 200_000)):
        ref = np.log(x)
        err = np.abs(_apply(x, 0) - ref)
        # 4 ulp of the result (or of 1 ulp near log = 0, where ulps are tiny)
        assert np.all(err <= 4 * np.spacing(np.maximum(np.abs(ref), 1e-16)))
    exact = pytest.approx([0.0, np.log(2.0), 1.0], rel=1e-15, abs=1e-300)
    assert _apply(np.array([1.0, 2.0, np.e]), 0) == exact


def test_fexp_matches_numpy_and_clamps():
    rng = named_rng("test_fexp")
    x = rng.uniform(-50.0, 50.0, 200_000)
    # the reduction x - n log 2 is reassociated under FAST: a few ulp
    np.testing.assert_allclose(_apply(x, 1), np.exp(x), rtol=4e-15, atol=0)
    x = rng.uniform(-708.0, 709.0, 200_000)
    # far from 0 the reduction x - n log 2 loses a few bits: 3e-14 relative at |x| ~ 700
    np.testing.assert_allclose(_apply(x, 1), np.exp(x), rtol=5e-14, atol=0)
    big = _apply(np.array([-1e4, 1e4, 0.0]), 1)
    np.testing.assert_allclose(big, np.exp([-708.0, 709.0, 0.0]), rtol=5e-14)
    assert big[2] == 1.0


@numba.njit(fastmath=FAST, error_model="numpy")
def _log_t(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = flog_t(x[i])
    return out


def test_flog32_matches_numpy_to_two_float32_ulp():
    """flog_t of float32 is flog32, in float32; of float64 it is flog."""
    rng = named_rng("test_flog32")
    for x in (np.exp(rng.uniform(-87.0, 88.0, 200_000)), rng.uniform(0.5, 2.0, 200_000)):
        x = x.astype(np.float32)
        got = _log_t(x)
        assert got.dtype == np.float32
        ref = np.log(x.astype(np.float64))
        # 2 ulp of the float32 result (measured: 1.6), or of 1 float32 ulp near 0
        ulp = np.spacing(np.maximum(np.abs(ref), 1e-7).astype(np.float32)).astype(np.float64)
        assert np.all(np.abs(got - ref) <= 2 * ulp)
    x64 = np.exp(rng.uniform(-700.0, 700.0, 1000))
    np.testing.assert_array_equal(_log_t(x64), _apply(x64, 0))
