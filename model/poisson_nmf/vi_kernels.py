"""Numba kernels of the variational engine (:mod:`poisson_nmf.vi`): one iteration's passes.

Every kernel works on a range of rows ``lo..hi-1`` of row-major (rows, K) arrays, so
that :class:`poisson_nmf.vi_cavi.Blocks` can run the ranges in threads (the kernels
release the GIL) and add their partial results in a fixed order: the same result for
any number of threads. H's side is stored transposed, (N, K), so that one kernel
serves both factors.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .vecmath import FAST as _FAST
from .vecmath import flog

__all__ = ["digamma", "extrapolate", "masked_sums", "nz_pass", "step"]


@numba.njit(nogil=True, fastmath=_FAST, error_model="numpy", cache=True)
def nz_pass(
    L: np.ndarray,
    M: np.ndarray,
    indptr: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    Sw: np.ndarray,
    Sh: np.ndarray,
    lo: int,
    hi: int,
) -> float:  # pragma: no cover - compiled
    """One pass over the non-zeros of rows lo..hi-1: sum v log (LM), and the ratio sums.

    Parameters
    ----------
    L : (F, K) float64
        exp E[log w].
    M : (N, K) float64
        exp E[log h], transposed.
    indptr, cols, vals
        The non-zeros in CSR form (vals float64).
    Sw : (F, K) float64
        Out: rows lo..hi-1 get sum_n v_fn / (LM)_fn M[n, k].
    Sh : (N, K) float64
        Out (zeroed here: one buffer per block of rows): sum over the block's rows f of
        v_fn / (LM)_fn L[f, k].

    Returns
    -------
    float
        sum over the block's non-zeros of v log (LM). O(nnz K).
    """
    K = L.shape[1]
    Sh[:] = 0.0
    total = 0.0
    for f in range(lo, hi):
        for k in range(K):
            Sw[f, k] = 0.0
        for i in range(indptr[f], indptr[f + 1]):
            n = cols[i]
            lam = 0.0
            for k in range(K):
                lam += L[f, k] * M[n, k]
            total += vals[i] * flog(lam)
            r = vals[i] / lam
            for k in range(K):
                Sw[f, k] += r * M[n, k]
                Sh[n, k] += r * L[f, k]
    return total


@numba.njit(nogil=True, cache=True)
def masked_sums(
    B: np.ndarray, rows: np.ndarray, cols: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """out[rows[i], k] = sum over masked entries i of B[cols[i], k] (out zeroed here)."""
    out[:] = 0.0
    for i in range(rows.size):
        r, c = rows[i], cols[i]
        for k in range(out.shape[1]):
            out[r, k] += B[c, k]


@numba.njit(nogil=True, error_model="numpy", cache=True)
def digamma(x: float) -> float:  # pragma: no cover - compiled
    """Digamma for x > 0: recurrence up to x >= 10, then the asymptotic series.

    Abramowitz & Stegun 6.3.18 to the x^-12 term: the first term left out, x^-14 / 12,
    is below 1e-15 for x >= 10.
    """
    r = 0.0
    while x < 10.0:
        r -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    t = f * (
        1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f * (1 / 132 - f * 691 / 32760))))
    )
    return r + np.log(x) - 0.5 / x - t


@numba.njit(nogil=True, error_model="numpy", cache=True)
def step(
    update: bool,
    alpha: np.ndarray,
    beta: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    L: np.ndarray,
    S: np.ndarray,
    colsum: np.ndarray,
    corr: np.ndarray,
    E: np.ndarray,
    lo: int,
    hi: int,
) -> float:  # pragma: no cover - compiled
    """Update q = Gamma(alpha, beta) on rows lo..hi-1, then fill L, E; return ELBO terms.

    With ``update``: alpha = a + L * S, beta = b + colsum - corr (the coordinate update
    of one factor given q(S), from the pass's ratio sums S, and the other factor's column
    sums less its masked entries ``corr``; ``corr`` is read only if it has rows). Then,
    always, L = exp E[log x] = exp(psi(alpha)) / beta and E = alpha / beta, and the
    return value is the rows' sum of E_q[log p(x)] + the entropy of q, p = Gamma(a, b),
    less the prior's normaliser a log b - log Gamma(a) (a constant the caller adds once):
    (a - alpha) psi(alpha) - a log beta + alpha - b alpha / beta + log Gamma(alpha).
    """
    K = alpha.shape[1]
    masked = corr.shape[0] > 0
    total = 0.0
    for i in range(lo, hi):
        for k in range(K):
            if update:
                alpha[i, k] = a[i, k] + L[i, k] * S[i, k]
                beta[i, k] = b[i, k] + (colsum[k] - corr[i, k] if masked else colsum[k])
            al = alpha[i, k]
            lb = np.log(beta[i, k])
            psi = digamma(al)
            e = al / beta[i, k]
            L[i, k] = np.exp(psi - lb)
            E[i, k] = e
            total += (a[i, k] - al) * psi - a[i, k] * lb + al - b[i, k] * e + math.lgamma(al)
    return total


@numba.njit(nogil=True, error_model="numpy", cache=True)
def extrapolate(
    a: np.ndarray, c: np.ndarray, gamma: float, out: np.ndarray, lo: int, hi: int
) -> None:  # pragma: no cover - compiled
    """Set out = a (c / a)^gamma on rows lo..hi-1: gamma times the step a -> c, log scale.

    The over-relaxed step of :func:`poisson_nmf.vi_cavi.cavi` (shapes or rates of q; on
    the log scale they stay positive for any gamma).
    """
    for i in range(lo, hi):
        for k in range(a.shape[1]):
            out[i, k] = a[i, k] * np.exp(gamma * np.log(c[i, k] / a[i, k]))
