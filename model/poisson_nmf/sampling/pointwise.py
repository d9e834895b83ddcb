"""The pointwise groups: ``log_likelihood`` and ``posterior_predictive`` per observed entry.

They have one value per draw and observed entry, so they hold ``pointwise_draws``
draws in all, rounded up to a multiple of the chains (thinned evenly within each chain;
coordinate ``draw`` keeps the original draw numbers), in float32 (log-likelihood) and
int32 (predictive counts; past the int32 range int64, never wrapped), computed in chunks.

Sparse input with more than 200,000 observed entries keeps them on an ``entry`` dim:
every non-zero, and a fixed random subsample of m = max(nnz, 50,000) observed zeros with
the coordinate ``weight`` = n_zero / m (1 for the non-zeros), so that diagnose's
coverage, discrepancy and elpd_loo are weighted estimates over all observed entries;
their rates come from the rows of W and columns of H, never a dense F x N array.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr
from scipy.special import gammaln
from threadpoolctl import threadpool_limits

from ..data import Counts
from ..diagnostics.ppc import draw_rates

__all__ = [
    "ZERO_SUBSAMPLE_ABOVE",
    "ZERO_SUBSAMPLE_MIN",
    "ZERO_SUBSAMPLE_SEED",
    "add_pointwise_groups",
    "pointwise",
    "pointwise_entries",
]

#: sparse input with more observed entries than this keeps its pointwise groups on an
#: `entry` dim: every non-zero, and a fixed random subsample of the zeros with a weight
ZERO_SUBSAMPLE_ABOVE = 200_000
#: the fewest zeros in that subsample
ZERO_SUBSAMPLE_MIN = 50_000
#: its fixed seed (the same entries in every run)
ZERO_SUBSAMPLE_SEED = 1618


def pointwise_entries(counts: Counts) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Entries of the pointwise groups of large sparse input, with their weights.

    Returns None (every observed entry, the dense layout) unless V is sparse with more
    than ``ZERO_SUBSAMPLE_ABOVE`` observed entries. Then: every observed non-zero
    (weight 1) and m = max(nnz, 50 000) observed zeros drawn uniformly without
    replacement with a fixed seed (weight n_zero / m), so that a weighted sum over the
    entries is an unbiased estimate of the sum over all observed entries (stratified
    sampling: the non-zeros exactly, the zeros by their sample). Never an F x N array.
    """
    if not counts.is_sparse or counts.n_observed <= ZERO_SUBSAMPLE_ABOVE:
        return None
    F, N = counts.shape
    nz = np.ravel_multi_index((counts.nz_rows, counts.nz_cols), (F, N))
    taken = np.union1d(nz, np.ravel_multi_index((counts.missing_rows, counts.missing_cols), (F, N)))
    n_zero = F * N - taken.size
    m = min(n_zero, max(nz.size, ZERO_SUBSAMPLE_MIN))
    rng = np.random.default_rng(ZERO_SUBSAMPLE_SEED)
    zeros = np.zeros(0, dtype=np.int64)
    while zeros.size < m:
        cand = np.unique(rng.integers(0, F * N, size=2 * (m - zeros.size) + 16))
        cand = cand[~np.isin(cand, taken, assume_unique=True) & ~np.isin(cand, zeros)]
        zeros = np.concatenate([zeros, rng.permutation(cand)[: m - zeros.size]])
    zeros = np.sort(zeros)
    flat = np.concatenate([nz, zeros])
    r, c = np.unravel_index(flat, (F, N))
    weight = np.concatenate([np.ones(nz.size), np.full(zeros.size, n_zero / max(m, 1))])
    return r.astype(np.int64), c.astype(np.int64), weight


def pointwise(
    counts: Counts,
    W: np.ndarray,
    H: np.ndarray,
    draw_idx: np.ndarray,
    rng: np.random.Generator,
    workers: int = 1,
    chunk: int = 32,
    entries: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise log-likelihood (float32) and predictive counts (int32, int64 past it).

    W (C, D, F, K), H (C, D, K, N); returns arrays (C, len(draw_idx), n_obs) over the
    observed entries in row-major order. Chunks of ``chunk`` draws run in ``workers``
    threads (NumPy's log and Poisson draws release the GIL), each chunk with its own
    generator spawned from ``rng``, so the draws do not depend on the order the chunks
    run in. With ``entries`` (rows and columns, from :func:`pointwise_entries`) only
    those entries are computed, from the factors' rows and columns (never a dense F x N
    rate).
    """
    if entries is None:
        r, c = np.nonzero(counts.observed())
        v = counts.dense()[r, c]
    else:
        r, c = entries
        v = np.asarray(counts.values[r, c], dtype=np.float64).ravel()
    lgv = gammaln(v + 1.0)
    C = W.shape[0]
    D = draw_idx.size
    ll = np.empty((C, D, r.size), dtype=np.float32)
    pp = np.empty((C, D, r.size), dtype=np.int32)
    full = not counts.has_mask and entries is None
    jobs = [(ch, lo) for ch in range(C) for lo in range(0, D, chunk)]
    rngs = rng.spawn(len(jobs))
    # predictive counts past int32 are drawn again as int64 from the same generator
    # state: never a silent wrap, and the same values as if int64 had been used all along
    first = [copy.deepcopy(g) for g in rngs]
    too_big: list[int] = []

    def rate(j: int) -> np.ndarray:
        ch, lo = jobs[j]
        idx = draw_idx[lo : lo + chunk]
        if entries is not None:  # (d, entries): each rate from its row of W, column of H
            return draw_rates(W[ch, idx], H[ch, idx], (r, c))
        lam = draw_rates(W[ch, idx], H[ch, idx])  # (d, F, N)
        return lam.reshape(len(idx), -1) if full else lam[:, r, c]

    def one(j: int) -> None:
        ch, lo = jobs[j]
        lam = rate(j)
        ll[ch, lo : lo + lam.shape[0]] = v * np.log(lam) - lam - lgv
        x = rngs[j].poisson(lam)
        if x.size and x.max() > np.iinfo(np.int32).max:
            too_big.append(j)
        pp[ch, lo : lo + lam.shape[0]] = x

    with threadpool_limits(1), ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        list(ex.map(one, range(len(jobs))))
    if too_big:
        pp = pp.astype(np.int64)
        for j in too_big:
            ch, lo = jobs[j]
            lam = rate(j)
            pp[ch, lo : lo + lam.shape[0]] = first[j].poisson(lam)
    return ll, pp


def add_pointwise_groups(
    groups: dict[str, xr.Dataset],
    counts: Counts,
    W: np.ndarray,
    H: np.ndarray,
    n_draws: int,
    entries: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    rng: np.random.Generator,
    workers: int,
    chunk: int,
) -> None:
    """Add ``log_likelihood`` and ``posterior_predictive`` of ``n_draws`` draws in all.

    Each chain keeps ``ceil(n_draws / chains)`` draws (evenly spaced; at most all of
    them), so the groups hold at least ``n_draws`` draws (up to ``chains - 1`` more)
    when the chains have that many: a floor such as the predictive checks' 20 draws is
    met whatever the number of chains.

    W (C, D, F, K), H (C, D, K, N) aligned; ``entries`` from :func:`pointwise_entries`
    (None: every observed entry). Dims (chain, draw, row, column), or (chain, draw,
    entry) with a mask or ``entries`` (with ``weight`` for the latter).
    """
    chains, draws = W.shape[:2]
    F, N = counts.shape
    per_chain = min(draws, max(1, -(-n_draws // chains)))  # rounded up, at most every draw
    draw_idx = np.unique(np.linspace(0, draws - 1, per_chain).round().astype(int))
    ent = None if entries is None else entries[:2]
    ll_pw, pp = pointwise(counts, W, H, draw_idx, rng, workers, chunk, ent)
    pc: dict[str, Any] = {"chain": np.arange(chains), "draw": draw_idx}
    dims: tuple[str, ...]
    if entries is not None:
        r, cc, wt = entries
        dims = ("chain", "draw", "entry")
        pc = {**pc, "entry": np.arange(r.size), "row": ("entry", counts.row[r]),
              "column": ("entry", counts.column[cc]), "weight": ("entry", wt)}  # fmt: skip
    elif counts.has_mask:
        r, cc = np.nonzero(counts.observed())
        dims = ("chain", "draw", "entry")
        pc = {**pc, "entry": np.arange(r.size), "row": ("entry", counts.row[r]),
              "column": ("entry", counts.column[cc])}  # fmt: skip
    else:
        ll_pw = ll_pw.reshape(chains, draw_idx.size, F, N)
        pp = pp.reshape(chains, draw_idx.size, F, N)
        dims = ("chain", "draw", "row", "column")
        pc = {**pc, "row": counts.row, "column": counts.column}
    groups["log_likelihood"] = xr.Dataset({"V": (dims, ll_pw)}, coords=pc)
    groups["posterior_predictive"] = xr.Dataset({"V": (dims, pp)}, coords=pc)
