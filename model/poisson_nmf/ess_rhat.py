"""Rank-normalised R-hat, bulk and tail ESS and MCSE of many entries at once.

The estimators are those of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021),
"Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC", *Bayesian Analysis* 16(2), 667-718, exactly as ArviZ
(``arviz_stats``) computes them, so that the numbers equal ``arviz_stats.rhat``,
``arviz_stats.ess(method="bulk" | "tail")`` and ``arviz_stats.mcse(method="mean")``
(``tests/test_ess_rhat.py`` checks that):

- split chains: each chain's first and last ``draws // 2`` draws become two chains;
- rank normalisation: average ranks over all split chains, ``z = Phi^-1((r - 3/8) /
  (S + 1/4))`` (Blom 1958), S the number of draws;
- R-hat: the larger of the split R-hat of ``z`` (bulk) and of the z-scaled draws
  folded about their median (tail), eq. (4) of the paper;
- ESS: Geyer's initial monotone sequence over the autocorrelations averaged over
  chains (eq. (10) to (12)); bulk ESS of ``z``; tail ESS the smaller of the ESS of
  the indicators ``x <= q`` at the quantiles ``(1 - p) / 2`` and ``(1 + p) / 2``, with
  ``p`` ArviZ's ``stats.ci_prob`` (0.89 by default), as ``arviz_stats.ess`` does;
- MCSE of the mean: the sd over ``sqrt(ESS of the split draws)``.

ArviZ computes them one entry at a time, in Python: about 7 ms an entry for 4 x 1000
draws, so a minute for the 18,580 entries of W and H of the digits at K = 10. Here
each step is one NumPy call over a block of entries (the ranks, one FFT for the
autocovariances, Geyer's sequence through cumulative minima), which is what lets the
stopping rule of :func:`poisson_nmf.sample_posterior` check every entry as it goes.

Undefined values are NaN, as in ArviZ: fewer than 4 draws (or, for R-hat, fewer
than 2 chains), or an entry with a NaN draw. :mod:`poisson_nmf.convergence`
classifies them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft
from scipy.special import ndtri

__all__ = ["MIN_DRAWS", "RankDiagnostics", "average_ranks", "rank_diagnostics"]

#: draws per chain below which R-hat and ESS are undefined (NaN), as in ArviZ
MIN_DRAWS = 4

# values per block of entries (chains x draws x entries): bounds the temporaries (each
# float64 copy of a block is 8 MB) whatever the number of draws; blocks run on threads
# (NumPy's sorts and SciPy's FFTs release the GIL)
_BLOCK_VALUES = 2**20
_BLOM = 3 / 8


@dataclass(frozen=True)
class RankDiagnostics:
    """Per-entry diagnostics, each an array of shape ``(n_entries,)`` (float64)."""

    r_hat: np.ndarray
    ess_bulk: np.ndarray
    ess_tail: np.ndarray
    mcse_mean: np.ndarray


def rank_diagnostics(
    draws: np.ndarray,
    tail_prob: float | None = None,
    *,
    mcse: bool = True,
    workers: int | None = None,
) -> RankDiagnostics:
    """Rank-normalised R-hat, bulk and tail ESS and MCSE of the mean of every entry.

    Parameters
    ----------
    draws : numpy.ndarray, shape (chains, draws, n_entries)
        Draws of each entry. float32 and float64 are used as they are (the tail ESS's
        quantiles are taken in that dtype, as ArviZ does); any other dtype (bool,
        integers, float16) is computed in float64.
    tail_prob : float, optional
        Central probability ``p`` whose quantiles ``(1 - p) / 2`` and ``(1 + p) / 2``
        the tail ESS uses; default ArviZ's ``rcParams["stats.ci_prob"]``.
    mcse : bool
        Compute the MCSE of the mean (``False`` leaves it NaN and saves a quarter of
        the work; the stopping rule does not use it).
    workers : int, optional
        Threads over blocks of entries; default the number of CPUs (at most 4).

    Returns
    -------
    RankDiagnostics
        Arrays of shape ``(n_entries,)``; NaN where undefined (see the module).

    Raises
    ------
    ValueError
        If ``draws`` is not three-dimensional, or ``tail_prob`` is not in (0, 1).
    """
    x = np.asarray(draws)
    if x.ndim != 3:
        raise ValueError(f"draws must have shape (chains, draws, n_entries), got {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)  # bool, integers, float16: computed in float64
    if tail_prob is None:
        from arviz_stats.validate import validate_ci_prob

        tail_prob = float(validate_ci_prob(None))
    if not 0 < tail_prob < 1:
        raise ValueError(f"tail_prob must be in (0, 1), got {tail_prob!r}")
    n_chain, n_draw, n_ent = x.shape
    if n_chain == 0:
        nan = np.full(n_ent, np.nan)
        return RankDiagnostics(nan, nan, nan, nan)
    block = max(1, _BLOCK_VALUES // max(1, n_chain * n_draw))
    starts = range(0, n_ent, block)
    n_workers = min(len(starts), workers or min(4, os.cpu_count() or 1))

    def one(i: int) -> tuple[np.ndarray, ...]:
        return _block(np.moveaxis(x[:, :, i : i + block], 2, 0), tail_prob, mcse)

    if n_workers > 1:
        with ThreadPoolExecutor(n_workers) as pool:
            parts = list(pool.map(one, starts))
    else:
        parts = [one(i) for i in starts]
    if not parts:
        empty = np.zeros(0)
        return RankDiagnostics(empty, empty, empty, empty)
    return RankDiagnostics(*(np.concatenate(p) for p in zip(*parts, strict=True)))


def _block(x: np.ndarray, tail_prob: float, mcse: bool) -> tuple[np.ndarray, ...]:
    """Return the four diagnostics of a block ``x`` of shape (entries, chains, draws)."""
    E, n_chain, n_draw = x.shape
    nan = np.full(E, np.nan)
    if n_draw < MIN_DRAWS:
        return nan, nan, nan, nan
    bad = np.isnan(x).any(axis=(1, 2))
    split = _split(x)
    z = _z_scale(split)
    folded = np.abs(split - np.median(split.reshape(E, -1), axis=1)[:, None, None])
    r_bulk = _rhat(z)
    r_tail = _rhat(_z_scale(folded))
    # Python's max(bulk, tail), as ArviZ takes it (NaN-aware the same way)
    r_hat = np.where(r_tail > r_bulk, r_tail, r_bulk) if n_chain >= 2 else nan
    ess_bulk = _ess(z)
    lo, hi = sorted((tail_prob, 1 - tail_prob))
    q = np.quantile(x.reshape(E, -1), [lo, hi], axis=1)  # in x's dtype, as ArviZ
    ess_tail = np.minimum(
        _ess(_split(x <= q[0][:, None, None])), _ess(_split(x <= q[1][:, None, None]))
    )
    mcse_mean = nan
    if mcse:
        sd = x.reshape(E, -1).std(axis=1, ddof=1, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mcse_mean = sd / np.sqrt(_ess(split))
    out = [r_hat, ess_bulk, ess_tail, mcse_mean]
    return tuple(np.where(bad, np.nan, np.asarray(v, dtype=np.float64)) for v in out)


def _split(x: np.ndarray) -> np.ndarray:
    """Each chain's first and last ``draws // 2`` draws as two chains."""
    half = x.shape[2] // 2
    return np.concatenate([x[:, :, :half], x[:, :, x.shape[2] - half :]], axis=1)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Return the normal scores of the average ranks of each entry's draws (Blom)."""
    E = x.shape[0]
    flat = x.reshape(E, -1)
    size = flat.shape[1]
    r = average_ranks(flat)
    # ndtri is scipy.stats.norm.ppf without its argument checks
    return np.asarray(ndtri((r - _BLOM) / (size - 2 * _BLOM + 1))).reshape(x.shape)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis of a 2-D array, ties given their average rank.

    ``scipy.stats.rankdata(x, method="average", axis=1)``, three times faster: an
    unstable sort suffices (tied values get one rank whatever their order), and the
    tie groups are resolved only in the rows that have ties.
    """
    order = np.argsort(x, axis=1)
    s = np.take_along_axis(x, order, axis=1)
    n = s.shape[1]
    avg = np.broadcast_to(np.arange(1.0, n + 1), s.shape)
    tie = s[:, 1:] == s[:, :-1]
    rows = np.flatnonzero(tie.any(axis=1))
    if rows.size:
        first = np.ones((rows.size, n), dtype=bool)  # starts a group of equal values
        first[:, 1:] = ~tie[rows]
        last = np.ones((rows.size, n), dtype=bool)  # ends one
        last[:, :-1] = first[:, 1:]
        pos = np.broadcast_to(np.arange(n), first.shape)
        start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
        end = np.minimum.accumulate(np.where(last, pos, n - 1)[:, ::-1], axis=1)[:, ::-1]
        avg = avg.copy()
        avg[rows] = (start + end) / 2 + 1
    r = np.empty(s.shape)
    np.put_along_axis(r, order, avg, axis=1)
    return r


def _rhat(x: np.ndarray) -> np.ndarray:
    """Split R-hat of (entries, chains, draws), eq. (4) of Vehtari et al. (2021)."""
    n = x.shape[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = n * np.var(x.mean(axis=2), axis=1, ddof=1)
        within = np.var(x, axis=2, ddof=1).mean(axis=1)
        return np.sqrt((between / within + n - 1) / n)


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of (entries, chains, draws) by Geyer's initial monotone sequence.

    ArviZ's loop, in closed form: the pairs ``P_j = rho_2j + rho_2j+1`` are read up to
    the first that is not positive (or the last that fits), their cumulative minimum is
    the monotone sequence, and the even term after the last pair is added when positive.
    """
    x = np.asarray(x, dtype=np.float64)
    E, m, n = x.shape
    flat = x.reshape(E, -1)
    const = (flat.max(axis=1) - flat.min(axis=1)) < np.finfo(float).resolution
    acov = _autocov(x)
    chain_mean = x.mean(axis=2)
    mean_var = acov[:, :, 0].mean(axis=1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + np.var(chain_mean, axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]
    rho[:, 0] = 1.0
    j_max = max(0, (n - 3) // 2)  # the last pair ArviZ's loop can read
    pairs = rho[:, 0 : 2 * j_max + 1 : 2] + rho[:, 1 : 2 * j_max + 2 : 2]
    nonpos = ~(pairs > 0)  # NaN ends the sequence too
    j_star = np.where(nonpos.any(axis=1), nonpos.argmax(axis=1), j_max)
    mono = np.minimum.accumulate(pairs, axis=1)
    sums = np.concatenate([np.zeros((E, 1)), np.cumsum(mono, axis=1)], axis=1)
    rows = np.arange(E)
    even = rho[rows, 2 * j_star]
    last = np.where((j_star == 0) | (even > 0) | (pairs[rows, j_star] >= 0), even, 0.0)
    tau = -1.0 + 2.0 * sums[rows, j_star] + last
    total = m * n
    tau = np.maximum(tau, 1 / np.log10(total))
    with np.errstate(divide="ignore", invalid="ignore"):
        ess = total / tau
    ess = np.where(np.isnan(rho[:, 1]), np.nan, ess)
    return np.where(const, float(total), ess)


def _autocov(x: np.ndarray) -> np.ndarray:
    """Autocovariance at every lag along the last axis (FFT, divided by n), as ArviZ."""
    n = x.shape[-1]
    m = next_fast_len(2 * n)
    f = rfft(x - x.mean(axis=-1, keepdims=True), n=m, axis=-1)
    f *= np.conjugate(f)
    return irfft(f, n=m, axis=-1)[..., :n] / n
