"""The compiled coordinate-descent kernels and how they are run."""

import numpy as np

import poisson_nmf as pnmf
from poisson_nmf import initial_factors
from poisson_nmf.optim.kl_kernels import cd_half_serial, layout, n_threads
from tests.conftest import named_rng
from tests.optim.conftest import poisson_lowrank


def test_n_jobs_none_honours_numba_and_threadpoolctl_limits():
    import numba
    from threadpoolctl import threadpool_limits

    most = numba.config.NUMBA_NUM_THREADS
    assert n_threads(-1) == most and n_threads(1) == 1 and n_threads(10**6) == most
    with threadpool_limits(1):
        assert n_threads(None) == 1
    previous = numba.get_num_threads()
    numba.set_num_threads(1)  # what parallel.map_pieces does for each piece
    try:
        assert n_threads(None) == 1
    finally:
        numba.set_num_threads(previous)


def test_dense_rows_read_in_place_give_the_same_sweep():
    # rows whose counts are all non-zero use H's columns in place (no gathered copy):
    # the same arithmetic in the same order as the gathered path, so the same bits
    rng = named_rng("test_dense_rows_read_in_place")
    V = poisson_lowrank(rng, F=30, N=20, K=3, scale=20.0)
    V[0, 0] = 0  # one row and one column take the gathered path
    assert (V > 0).mean() > 0.99
    counts = pnmf.as_counts(V)
    lay = layout(counts)
    W0, H0 = initial_factors(V, 3, random_seed=0)
    zeros = np.zeros((30, 3))
    out = []
    for YT in (np.ascontiguousarray(H0), np.empty((3, 0))):  # in place / always gathered
        W, res = W0.copy(), np.empty(30)
        Ht = np.ascontiguousarray(H0.T)
        args = (*lay.by_row, *lay.miss_by_row, zeros, zeros, 1, False, np.zeros(2, np.int64))
        cd_half_serial(W, Ht, Ht.sum(axis=0), *args, res, YT)
        out.append(W)
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.array_equal(out[0], W0)
