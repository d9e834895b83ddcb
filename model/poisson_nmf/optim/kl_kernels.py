r"""Compiled kernels of the KL-NMF coordinate descent (Numba), and how they are run.

The mathematics is in :mod:`poisson_nmf.optim.kl`; this module holds the passes over
the non-zeros, one half-sweep (every row of W given H, or every column of H given W)
serial or in Numba's threads, and the choice between them. The kernels call each other,
so they stay in one file: Numba's disk cache keys a function on its own file and would
miss an edited callee in another one.

Cost: each coordinate takes ``N_NEWTON`` Newton steps per sweep. The pass over the
row's non-zeros that applies the step (λ ← λ + Δw h) also computes, with the same
division by λ, g' and g'' of the step just taken (for the chord test) and of the next
coordinate, so a coordinate costs one pass, not one to evaluate and one per step. A row
whose counts are all non-zero (dense tables) reads the columns of H in place from a
transposed copy instead of gathering its own (the same arithmetic, the same bits).

Threads: the rows of W are independent given H (and the columns of H given W), so each
half-sweep is split into runs of rows of about equal work that Numba threads take one
at a time. Every row's update and objective term depend on that row alone, and the
terms are summed in row order afterwards: every step, accept/reject and stopping
decision, hence the fit, is the same bit for bit on any number of threads. The "tbb"
and "omp" threading layers are safe to launch from several Python threads at once
(restarts run in threads); under "workqueue" one launch at a time runs in parallel and
the others run the serial kernel.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from ..data import Counts, csr_index
from ..priors import GammaPriors
from ..vecmath import FAST, flog

__all__ = [
    "N_NEWTON",
    "PARALLEL_MIN_WORK",
    "Layout",
    "cd_half_parallel",
    "cd_half_serial",
    "cd_sweep",
    "layout",
    "n_threads",
    "prior_arrays",
]

# re-association only (vectorised sums); inf and NaN keep their IEEE meaning
_FASTMATH = {"reassoc", "contract"}
# Newton steps per coordinate and sweep (each costs one pass over the row's non-zeros);
# one was the fastest to a given objective (benchmarks/README.md, experiments log)
N_NEWTON = 1
# a half-sweep runs on several threads from this much work on (non-zeros x K); below it
# the threads' start-up and synchronisation cost more than they save
PARALLEL_MIN_WORK = 1 << 17


@dataclass(frozen=True, slots=True)
class Layout:
    """V's non-zeros and missing entries grouped by row and by column.

    Attributes
    ----------
    by_row, by_col : tuple (indptr, indices, values)
        The observed non-zeros in CSR (by row) and CSC (by column) form.
    miss_by_row, miss_by_col : tuple (indptr, indices)
        The missing entries, likewise.
    """

    by_row: tuple[Any, ...]
    by_col: tuple[Any, ...]
    miss_by_row: tuple[Any, ...]
    miss_by_col: tuple[Any, ...]


def layout(counts: Counts) -> Layout:
    """Group the non-zeros and missing entries of ``counts`` by row and by column."""
    F, N = counts.shape
    r, c, v = counts.nz_rows, counts.nz_cols, counts.nz_values
    mr, mc = counts.missing_rows, counts.missing_cols
    ip_r, ix_r, o_r = csr_index(r, c, F)
    ip_c, ix_c, o_c = csr_index(c, r, N)
    return Layout(
        (ip_r, ix_r, np.ascontiguousarray(v[o_r])),
        (ip_c, ix_c, np.ascontiguousarray(v[o_c])),
        csr_index(mr, mc, F)[:2],
        csr_index(mc, mr, N)[:2],
    )


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FASTMATH)
def _pass(
    lam: np.ndarray, v: np.ndarray, y: np.ndarray, z: np.ndarray, d: float
) -> tuple[float, float, float, float, bool]:
    """λ += d y, then Σ v y/λ, Σ v y²/λ², Σ v z/λ, Σ v z²/λ² and whether some λ <= 0.

    One division per entry serves both coordinates: the step on y and the gradient of
    the next coordinate z, so a coordinate costs one pass per Newton step.
    """
    s1 = 0.0
    s2 = 0.0
    t1 = 0.0
    t2 = 0.0
    n_bad = 0.0
    if d == 0.0:
        for j in range(v.size):
            inv = 1.0 / lam[j]
            vi = v[j] * inv
            q = vi * y[j]
            s1 += q
            s2 += q * y[j] * inv
            r = vi * z[j]
            t1 += r
            t2 += r * z[j] * inv
        return s1, s2, t1, t2, False
    for j in range(v.size):
        lj = lam[j] + d * y[j]
        lam[j] = lj
        n_bad += 1.0 if lj <= 0.0 else 0.0
        inv = 1.0 / lj
        vi = v[j] * inv
        q = vi * y[j]
        s1 += q
        s2 += q * y[j] * inv
        r = vi * z[j]
        t1 += r
        t2 += r * z[j] * inv
    return s1, s2, t1, t2, n_bad > 0.0


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST)
def _data_term(v: np.ndarray, lam: np.ndarray) -> float:
    """Σ v log(v / λ) - v over one entity's non-zeros (λ > 0)."""
    s = 0.0
    for j in range(v.size):
        s += v[j] * flog(v[j] / lam[j]) - v[j]
    return s


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cd_entities(
    lo: int,
    hi: int,
    X: np.ndarray,
    Y: np.ndarray,
    ysum: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    m_indptr: np.ndarray,
    m_indices: np.ndarray,
    am1: np.ndarray,
    b: np.ndarray,
    n_newton: int,
    with_data: bool,
    out: np.ndarray,
    YT: np.ndarray,
) -> None:
    """Coordinate descent on entities ``lo:hi`` of X (E, K) given Y (M, K), in place.

    Entity e (a row of W, or a column of H with X = H^T) sees the observed non-zeros
    ``values[indptr[e]:indptr[e+1]]`` at ``indices`` into Y and misses ``m_indices``.
    Writes into ``out[e]`` the penalty of X[e] plus, when ``with_data``, its part of
    D(V || XY^T). Entities are independent: the result does not depend on how the
    entities are split between threads. ``YT`` is Y^T, contiguous (K, M): an entity
    whose M entries are all observed non-zeros (a dense row) reads Y^T's rows in place
    instead of gathering its own copy.
    """
    K = X.shape[1]
    width = 0
    for e in range(lo, hi):
        width = max(width, indptr[e + 1] - indptr[e])
    Yl_buf = np.empty(K * width + 1)
    lam_buf = np.empty(width)
    lin = np.empty(K)
    for e in range(lo, hi):
        start, stop = indptr[e], indptr[e + 1]
        n = stop - start
        v = values[start:stop]
        lin[:] = ysum
        for i in range(m_indptr[e], m_indptr[e + 1]):
            for k in range(K):
                lin[k] -= Y[m_indices[i], k]
        lam = lam_buf[:n]
        if n == YT.shape[1]:
            # dense row: its non-zeros are the columns 0..M-1 in order (sorted indices)
            Yl = YT
            lam[:] = 0.0
            for k in range(K):
                xk = X[e, k]
                for j in range(n):
                    lam[j] += xk * YT[k, j]
        else:
            Yl = Yl_buf[: K * n].reshape((K, n))
            for j in range(n):
                c = indices[start + j]
                acc = 0.0
                for k in range(K):
                    yk = Y[c, k]
                    Yl[k, j] = yk
                    acc += X[e, k] * yk
                lam[j] = acc
        s1, s2, t1, t2, bad = _pass(lam, v, Yl[0], Yl[0], 0.0)
        for k in range(K):
            x = X[e, k]
            a1 = am1[e, k]
            lk = lin[k] + b[e, k]
            y = Yl[k]
            z = Yl[k + 1] if k + 1 < K else y
            g = lk - s1
            gg = s2
            if a1 > 0.0:
                g -= a1 / x
                gg += a1 / (x * x)
            passed = False
            for _ in range(n_newton):
                if g == 0.0 or (x == 0.0 and g >= 0.0):
                    break
                if gg > 0.0:
                    xn = x - g / gg
                elif g > 0.0:
                    xn = 0.0
                else:
                    break
                if xn <= 0.0:
                    xn = 0.0 if a1 == 0.0 else 0.5 * x
                d = xn - x
                if d == 0.0:
                    break
                applied = 0.0
                accepted = False
                g1 = g
                gg1 = gg
                for _half in range(60):
                    s1, s2, t1, t2, bad = _pass(lam, v, y, z, d - applied)
                    passed = True
                    applied = d
                    g1 = lk - s1
                    gg1 = s2
                    if a1 > 0.0:
                        g1 -= a1 / (x + d)
                        gg1 += a1 / ((x + d) * (x + d))
                    # right steps never overshoot (g' is concave); left steps need
                    # the chord bound g(x + d) - g(x) <= d (g'(x) + g'(x + d)) / 2
                    if not bad and (d > 0.0 or g + g1 >= 0.0):
                        accepted = True
                        break
                    d *= 0.5
                if not accepted:
                    s1, s2, t1, t2, bad = _pass(lam, v, y, z, -applied)
                    break
                x = x + d
                g = g1
                gg = gg1
            X[e, k] = x
            if k + 1 < K:
                if not passed:
                    s1, s2, t1, t2, bad = _pass(lam, v, z, z, 0.0)
                else:
                    s1, s2 = t1, t2
        pen = 0.0
        for k in range(K):
            pen += b[e, k] * X[e, k]
            if am1[e, k] > 0.0:
                pen -= am1[e, k] * math.log(X[e, k])
        if with_data:
            for k in range(K):
                pen += lin[k] * X[e, k]
            pen += _data_term(v, lam)
        out[e] = pen


@numba.njit(cache=True, nogil=True, error_model="numpy")
def cd_half_serial(
    X: np.ndarray,
    Y: np.ndarray,
    ysum: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    m_indptr: np.ndarray,
    m_indices: np.ndarray,
    am1: np.ndarray,
    b: np.ndarray,
    n_newton: int,
    with_data: bool,
    bounds: np.ndarray,
    out: np.ndarray,
    YT: np.ndarray,
) -> None:
    """:func:`_cd_entities` on all entities, in this thread (``bounds`` unused)."""
    _cd_entities(
        0,
        X.shape[0],
        X,
        Y,
        ysum,
        indptr,
        indices,
        values,
        m_indptr,
        m_indices,
        am1,
        b,
        n_newton,
        with_data,
        out,
        YT,
    )


@numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def cd_half_parallel(
    X: np.ndarray,
    Y: np.ndarray,
    ysum: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    m_indptr: np.ndarray,
    m_indices: np.ndarray,
    am1: np.ndarray,
    b: np.ndarray,
    n_newton: int,
    with_data: bool,
    bounds: np.ndarray,
    out: np.ndarray,
    YT: np.ndarray,
) -> None:
    """:func:`_cd_entities` on the chunks ``bounds[c]:bounds[c + 1]``, in Numba's threads.

    Called with a parallel chunk size of 1, the chunks are handed out one at a time
    (dynamic scheduling), so a thread that the operating system holds back delays the
    sweep by about one chunk, not by half of it.
    """
    for c in numba.prange(bounds.size - 1):
        _cd_entities(
            bounds[c],
            bounds[c + 1],
            X,
            Y,
            ysum,
            indptr,
            indices,
            values,
            m_indptr,
            m_indices,
            am1,
            b,
            n_newton,
            with_data,
            out,
            YT,
        )


def prior_arrays(
    priors: GammaPriors | None, F: int, N: int, K: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(a_w - 1, b_w) with shape (F, K) and (a_h - 1, b_h) with shape (N, K)."""
    if priors is None:
        return np.zeros((F, K)), np.zeros((F, K)), np.zeros((N, K)), np.zeros((N, K))
    aw, bw, ah, bh = priors.arrays(F, N, K)
    return (
        np.ascontiguousarray(aw - 1.0),
        np.ascontiguousarray(bw),
        np.ascontiguousarray((ah - 1.0).T),
        np.ascontiguousarray(bh.T),
    )


def _chunks(indptr: np.ndarray, n: int) -> np.ndarray:
    """Bounds of ``n`` runs of consecutive entities with about equal work (non-zeros + 1 each)."""
    E = indptr.size - 1
    work = indptr + np.arange(E + 1)
    cuts = np.searchsorted(work, np.linspace(0, work[-1], n + 1)[1:-1])
    return np.unique(np.concatenate([[0], cuts, [E]])).astype(np.int64)


# Launches of Numba's parallel kernels from several Python threads at once (restarts,
# the sampler's MAP start, an executor's pieces) are safe with the "tbb" and "omp"
# threading layers, not with "workqueue": there, one launch at a time holds this lock
# and the others run the serial kernel (same results).
_THREADSAFE_LAYERS = ("tbb", "omp")
_CHUNKS_PER_THREAD = 8
_LAUNCH_LOCK = threading.Lock()


def _layer_is_threadsafe() -> bool:
    numba.get_num_threads()  # starts the threading layer if nothing did yet
    return numba.threading_layer() in _THREADSAFE_LAYERS


_POOLS: Any = None


def n_threads(n_jobs: Any) -> int:
    """Threads for one call: ``n_jobs``, or what Numba and threadpoolctl allow here."""
    config: Any = numba.config  # its attributes are set at run time
    most = int(config.NUMBA_NUM_THREADS)
    if n_jobs is None:
        global _POOLS
        n = numba.get_num_threads()  # thread-local; starts the threading layer
        if _POOLS is None:
            from threadpoolctl import ThreadpoolController

            _POOLS = ThreadpoolController()  # finds the BLAS/OpenMP pools once
        limits = [lib.num_threads for lib in _POOLS.lib_controllers]
        return max(1, min([n, *limits]))
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer):
        raise TypeError(f"n_jobs must be None or an integer, got {type(n_jobs).__name__}")
    if n_jobs == -1:
        return most
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be None, -1 or a positive integer, got {n_jobs}")
    return min(int(n_jobs), most)


def cd_sweep(
    W: np.ndarray,
    Ht: np.ndarray,
    lay: Layout,
    prior_w: tuple[np.ndarray, np.ndarray],
    prior_h: tuple[np.ndarray, np.ndarray],
    threads: int,
    bounds_cache: dict[int, tuple[np.ndarray, np.ndarray]],
) -> float:
    """One coordinate-descent sweep in place: every row of W, then every column of H.

    Parameters
    ----------
    W : numpy.ndarray, shape (F, K)
    Ht : numpy.ndarray, shape (N, K)
        H transposed, so that both halves read contiguous rows.
    lay : Layout
    prior_w, prior_h : tuple (a - 1, b)
        Shapes (F, K) and (N, K); zeros without priors (see :func:`prior_arrays`).
    threads : int
        Numba threads for the half-sweeps (1: serial). Below ``PARALLEL_MIN_WORK`` or
        while another Python thread holds a non-thread-safe layer, serial.
    bounds_cache : dict
        The chunks of work per thread count, filled on first use (the caller keeps it).

    Returns
    -------
    float
        The objective after the sweep: D(V || WH) plus the penalty, its per-row and
        per-column terms summed in a fixed order (the same on any number of threads).
    """
    nn = N_NEWTON
    sweep: Any = cd_half_serial  # a numba dispatcher, untyped for mypy
    locked = False
    if threads > 1 and lay.by_row[2].size * W.shape[1] < PARALLEL_MIN_WORK:
        threads = 1
    if threads > 1 and (_layer_is_threadsafe() or (locked := _LAUNCH_LOCK.acquire(False))):
        sweep = cd_half_parallel
    chunksize = numba.set_parallel_chunksize(1) if sweep is cd_half_parallel else None
    try:
        bounds = bounds_cache.get(threads)
        if bounds is None:
            n = _CHUNKS_PER_THREAD * threads
            bounds = (_chunks(lay.by_row[0], n), _chunks(lay.by_col[0], n))
            bounds_cache[threads] = bounds
        out_w, out_h = np.empty(W.shape[0]), np.empty(Ht.shape[0])
        ysum, YT = Ht.sum(axis=0), np.ascontiguousarray(Ht.T)
        sweep(W, Ht, ysum, *lay.by_row, *lay.miss_by_row, *prior_w, nn, False, bounds[0], out_w, YT)
        ysum, YT = W.sum(axis=0), np.ascontiguousarray(W.T)
        sweep(Ht, W, ysum, *lay.by_col, *lay.miss_by_col, *prior_h, nn, True, bounds[1], out_h, YT)
    finally:
        if chunksize is not None:
            numba.set_parallel_chunksize(chunksize)
        if locked:
            _LAUNCH_LOCK.release()
    # per-entity terms summed in a fixed order: the same J on any number of threads
    return float(out_w.sum() + out_h.sum())
