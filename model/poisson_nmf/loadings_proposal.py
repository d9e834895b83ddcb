r"""The starting proposal of :func:`poisson_nmf.fit_loadings`' sampler: a Laplace fit in y.

Per column of V_new, the mode of log π(y) (y = h^(1/p), see
:mod:`poisson_nmf.loadings_kernels`) and the Cholesky factor of the inverse negative
Hessian there: the location and scale of the multivariate t that importance sampling
then moves (:func:`poisson_nmf.loadings_kernels.block_draws`).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from .data import ZeroRowsColumnsWarning, as_counts
from .optim.kl import fit_h
from .priors import GammaPriors

__all__ = ["MAP_MAX_ITER", "MAP_TOL", "laplace", "power"]

# tolerance of the MAP given W: columns are convex problems, solved to rounding
MAP_TOL = 1e-12
MAP_MAX_ITER = 2000


def power(a: np.ndarray) -> np.ndarray:
    """Return the power p of h = |y|^p per loading.

    2 (the square root of a Poisson rate is near-Gaussian), more for prior shapes below
    1, so that p a >= 2 and the density of y vanishes at 0.
    """
    return np.maximum(2.0, 2.0 / a)


def laplace(
    by_col: sp.csc_array,
    W: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    p: np.ndarray,
    inflate: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Mode and Cholesky factor of the inverse negative Hessian of log π(y), per column.

    With h = y^p the Jacobian adds (1 - 1/p) log h, so the mode of log π(y) is the
    h-space MAP with prior shape a + 1 - 1/p (> 1: the mode is inside), found by
    :func:`poisson_nmf.optim.kl.fit_h`. There the negative Hessian in y is
    D^-1 [P (Σ_f v_f r_f r_f^T) P + diag(p (p a - 1))] D^-1, with D = diag(y),
    P = diag(p) and r_fk = w_fk h_k / λ_f.
    """
    F, N = by_col.shape
    K = W.shape[1]
    # fit_h takes a GammaPriors (rate > 0): a flat rate becomes negligible, 1e-300
    shift = GammaPriors(h_shape=(a + 1.0 - 1.0 / p).T, h_rate=np.maximum(b, 1e-300).T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroRowsColumnsWarning)
        cnt = as_counts(by_col, name="V_new", allow_all_zero=True, integer=False)
    H, _, _ = fit_h(cnt, W, priors=shift, max_iter=MAP_MAX_ITER, tol=MAP_TOL)
    y = H.T ** (1.0 / p)
    L = np.empty((N, K, K))
    for n in range(N):
        lo, hi = by_col.indptr[n], by_col.indptr[n + 1]
        rows, v = by_col.indices[lo:hi], by_col.data[lo:hi]
        R = W[rows] * H[:, n]
        R /= R.sum(axis=1, keepdims=True)
        R *= p[n]
        A = np.diag(p[n] * (p[n] * a[n] - 1.0)) + (R * v[:, None]).T @ R
        A /= np.outer(y[n], y[n])
        L[n] = np.linalg.cholesky(np.linalg.inv(A)) * inflate
    return np.ascontiguousarray(y), L
