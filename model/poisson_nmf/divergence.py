r"""The math of the claim: KL divergence, Poisson log-likelihood, the constant between.

For V (F x N) and a rate Λ = WH, summing over the observed entries:

.. math::

    D(V \| Λ) = \sum_{fn} v_{fn} \log(v_{fn}/λ_{fn}) - v_{fn} + λ_{fn}

    \log p(V | Λ) = \sum_{fn} v_{fn} \log λ_{fn} - λ_{fn} - \log(v_{fn}!)
                  = -D(V \| Λ) + \sum_{fn} v_{fn} \log v_{fn} - v_{fn} - \log(v_{fn}!)

with 0 log 0 = 0. The last sum, :func:`loglik_constant`, depends on V alone, so
maximum likelihood and KL minimisation pick the same (W, H).

Every function works from the non-zeros of V plus the total rate over the observed
entries, so sparse V is never densified, and a rate given as a pair ``(W, H)`` is
never multiplied out: Σ λ = sum(W, 0) @ sum(H, 1), less the masked entries.
NumPy/SciPy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import gammaln, rel_entr, xlogy

from .data import Counts, as_counts

__all__ = ["kl_divergence", "loglik_constant", "poisson_loglik", "rate_terms"]


def _as_float_array(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x.values if hasattr(x, "dims") else x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf; rates must be finite and non-negative")
    if (a < 0).any():
        raise ValueError(f"{name} contains negative values; rates must be non-negative")
    return a


def rate_terms(counts: Counts, rate: Any) -> tuple[np.ndarray, float]:
    """Return the rate at the observed non-zeros and its total over the observed entries.

    Parameters
    ----------
    counts : Counts
        Validated counts V, shape (F, N).
    rate : array_like, shape (F, N), or tuple (W, H)
        Λ given whole, or as its factors W (F x K) and H (K x N) (never multiplied out).

    Returns
    -------
    lam_nz : numpy.ndarray, shape (nnz,)
        λ at ``(counts.nz_rows, counts.nz_cols)``.
    lam_total : float
        Σ λ over the observed (unmasked) entries.
    """
    F, N = counts.shape
    r, c = counts.nz_rows, counts.nz_cols
    mr, mc = counts.missing_rows, counts.missing_cols
    if isinstance(rate, tuple):
        if len(rate) != 2:
            raise ValueError("rate given as a tuple must be the pair (W, H)")
        W = _as_float_array(rate[0], "W")
        H = _as_float_array(rate[1], "H")
        if W.ndim != 2 or H.ndim != 2 or W.shape[0] != F or H.shape[1] != N:
            raise ValueError(
                f"W and H must have shapes (F, K) and (K, N) with (F, N) = {(F, N)}, "
                f"got {W.shape} and {H.shape}"
            )
        if W.shape[1] != H.shape[0]:
            raise ValueError(f"W has {W.shape[1]} components but H has {H.shape[0]}")
        lam_nz = np.einsum("ik,ki->i", W[r], H[:, c])
        total = float(W.sum(axis=0) @ H.sum(axis=1))
        if mr.size:
            total -= float(np.einsum("ik,ki->i", W[mr], H[:, mc]).sum())
        return lam_nz, total
    lam = _as_float_array(rate, "rate")
    if lam.shape != (F, N):
        raise ValueError(f"rate has shape {lam.shape} but V has shape {(F, N)}")
    total = float(lam.sum())
    if mr.size:
        total -= float(lam[mr, mc].sum())
    return lam[r, c], total


def kl_divergence(V: Any, rate: Any, *, mask: Any = None) -> float:
    """Generalised Kullback-Leibler (I-)divergence D(V || Λ), with 0 log 0 = 0.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`.
    rate : array_like, shape (F, N), or tuple (W, H)
        Non-negative rate Λ, or its factors W (F x K) and H (K x N).
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries, left out of the sum.

    Returns
    -------
    float
        D(V || Λ) >= 0; ``inf`` where some λ = 0 with v > 0 (never NaN).
    """
    counts = as_counts(V, mask=mask)
    lam_nz, total = rate_terms(counts, rate)
    v = counts.nz_values
    return float(total + np.sum(rel_entr(v, lam_nz) - v))


def poisson_loglik(V: Any, rate: Any, *, mask: Any = None) -> float:
    """Poisson log-likelihood Σ log Poisson(v | λ) over the observed entries.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`.
    rate : array_like, shape (F, N), or tuple (W, H)
        Non-negative rate Λ, or its factors W (F x K) and H (K x N).
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries, left out of the sum.

    Returns
    -------
    float
        The log-likelihood; ``-inf`` where some λ = 0 with v > 0 (never NaN).
    """
    counts = as_counts(V, mask=mask)
    lam_nz, total = rate_terms(counts, rate)
    v = counts.nz_values
    return float(np.sum(xlogy(v, lam_nz) - gammaln(v + 1.0)) - total)


def loglik_constant(V: Any, *, mask: Any = None) -> float:
    """Return Σ [v log v - v - log v!], the constant in log p(V | Λ) = -D(V || Λ) + constant.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`.
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries, left out of the sum.

    Returns
    -------
    float
        The constant, which depends on V alone.
    """
    counts = as_counts(V, mask=mask)
    v = counts.nz_values
    return float(np.sum(xlogy(v, v) - v - gammaln(v + 1.0)))
