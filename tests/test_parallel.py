import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from poisson_nmf.parallel import connect_scheduler, map_pieces, resolve_executor


def _draw(seed: np.random.SeedSequence, size: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=size)


def _slow_first(i: int) -> int:
    # the first piece finishes last, so completion order differs from submission order
    time.sleep(0.2 if i == 0 else 0.0)
    return i * i


def _blas_threads(_: int) -> int:
    return max((p["num_threads"] for p in threadpool_info()), default=1)


def _fail(i: int) -> int:
    if i == 2:
        raise RuntimeError("piece 2 failed")
    return i


def test_serial_equals_executors():
    seeds = np.random.SeedSequence(7).spawn(6)
    serial = map_pieces(_draw, seeds)
    with ThreadPoolExecutor(2) as ex:
        threaded = map_pieces(partial(_draw, size=3), seeds, executor=ex)
    with ProcessPoolExecutor(2) as ex:
        processes = map_pieces(_draw, seeds, executor=ex)
    for a, b, c in zip(serial, threaded, processes, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_results_in_piece_order():
    with ThreadPoolExecutor(2) as ex:
        assert map_pieces(_slow_first, range(4), executor=ex) == [0, 1, 4, 9]


def test_threads_limited_per_piece():
    assert map_pieces(_blas_threads, range(2)) == [1, 1]


def test_progress_counts_finished_pieces():
    lines: list[str] = []
    map_pieces(_slow_first, range(3), progress=lines.append, desc="fits")
    assert lines == ["fits: 1/3 done", "fits: 2/3 done", "fits: 3/3 done"]


def test_piece_error_propagates():
    with ThreadPoolExecutor(2) as ex, pytest.raises(RuntimeError, match="piece 2 failed"):
        map_pieces(_fail, range(4), executor=ex)


def test_bad_arguments():
    with pytest.raises(TypeError, match="executor must be None"):
        resolve_executor("threads")
    with pytest.raises(ValueError, match="threads_per_piece must be at least 1"):
        map_pieces(_draw, [], threads_per_piece=0)


def test_unreachable_scheduler_fails_fast():
    pytest.importorskip("distributed")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="could not reach a Dask scheduler"):
        connect_scheduler("tcp://127.0.0.1:9", timeout=2)
    assert time.perf_counter() - t0 < 10


def test_dask_client_equals_serial():
    distributed = pytest.importorskip("distributed")
    seeds = np.random.SeedSequence(3).spawn(4)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        got = map_pieces(_draw, seeds, executor=client)
    for a, b in zip(map_pieces(_draw, seeds), got, strict=True):
        np.testing.assert_array_equal(a, b)
