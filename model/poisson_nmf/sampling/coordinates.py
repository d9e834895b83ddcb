r"""The sampler's coordinates: x = (log W, log H) = L (s * (M (t * y))).

- **L, the scale ridges straightened.** Along :math:`w_{\cdot k} c, h_{k \cdot} / c` the
  likelihood is flat and only the prior bounds the density: in log space a straight
  ridge e_k, several times longer than any single coordinate's spread, which a diagonal
  mass matrix cannot follow. NUTS runs in coordinates where it is β_k times shorter,
  L = I + sum_k (β_k - 1) e_k e_k^T (:func:`ridge_stretch` finds β_k from the prior's
  curvature along the ridge and the Hessian diagonal at the start).
- **s**, each coordinate's conditional sd at the start.
- **M = I + U diag(c) U^T**, stretching the few long directions that the warm-up learns
  (:mod:`poisson_nmf.sampling.warmup`; rank 0 at first).
- **t**, an inner scale, ones except in a continued chain: there it makes nutpie's first
  mass matrix the one the chain was tuned with (:mod:`poisson_nmf.sampling.continuation`).

All three are fixed while draws are kept: a fixed linear map has a constant Jacobian,
so the posterior sampled is exactly the same. The compiled maps here are also called by
the C callbacks (:mod:`poisson_nmf.sampling.callbacks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from ..vecmath import FAST
from .density import LogDensity

__all__ = ["Coords", "lowrank_map", "ridge_map", "ridge_stretch"]


@numba.njit(nogil=True, fastmath=FAST, cache=True)
def ridge_map(
    y: np.ndarray,
    F: int,
    N: int,
    K: int,
    bm1: np.ndarray,
    s: np.ndarray,
    s_first: bool,
    out: np.ndarray,
) -> None:
    """Write L (s * y) (``s_first``) or s * (L y) into out, L = I + sum_k bm1[k] e_k e_k^T.

    L is symmetric (also L^T). e_k is +1 on column k of log W and -1 on row k of log H,
    over sqrt(F + N). The elementwise scale s rides along, so that the callback's maps
    make one pass to sum and one to write over each block.
    """
    nW = F * K
    norm = 1.0 / (F + N)
    p = np.zeros(K)
    for f in range(F):
        for k in range(K):
            i = f * K + k
            p[k] += s[i] * y[i] if s_first else y[i]
    for k in range(K):
        q = 0.0
        for n in range(N):
            j = nW + k * N + n
            q += s[j] * y[j] if s_first else y[j]
        p[k] = bm1[k] * (p[k] - q) * norm
    for f in range(F):
        for k in range(K):
            i = f * K + k
            out[i] = s[i] * y[i] + p[k] if s_first else s[i] * (y[i] + p[k])
    for k in range(K):
        for n in range(N):
            j = nW + k * N + n
            out[j] = s[j] * y[j] - p[k] if s_first else s[j] * (y[j] - p[k])


def ridge_stretch(dens: LogDensity, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return beta_k, how much shorter to make each component's scale ridge, and sds.

    The sds are the conditional sd of every coordinate (from the Hessian diagonal).

    Along e_k = (+1 on log W[:, k], -1 on log H[k, :]) / sqrt(F + N) the product WH,
    hence the likelihood, is constant and only the prior curves the density: its sd
    there is about sqrt((F + N) / c_k) with c_k = sum_f b_w w_fk + sum_n b_h h_kn.
    That is several times the sd of single coordinates (its inverse square root of
    the Hessian diagonal, from 2K gradients since the Hessian of log W given H is
    block diagonal by rows), which a diagonal mass matrix cannot express; the
    sampler works in y = L^-1 x, L = I + sum_k (beta_k - 1) e_k e_k^T, a fixed linear
    map (constant Jacobian, so the posterior is exactly the same) in which the ridge
    is beta_k times shorter.
    """
    F, N, K = dens.F, dens.N, dens.K
    nW = F * K
    W, H = dens.unpack(x)
    c = (dens.bw * W).sum(axis=0) + (dens.bh * H).sum(axis=1)
    ridge_sd = np.sqrt((F + N) / np.maximum(c, 1e-300))
    g0 = np.empty(dens.n_dim)
    g1 = np.empty(dens.n_dim)
    dens(x, g0)
    eps = 1e-4
    beta = np.ones(K)
    cond_sd = np.ones(dens.n_dim)
    for k in range(K):
        idx = np.concatenate([np.arange(F) * K + k, nW + k * N + np.arange(N)])
        # perturb one component's W column, then its H row: their Hessians given the
        # other block are diagonal within that column / row
        curv = np.empty(idx.size)
        for part in (slice(0, F), slice(F, F + N)):
            xp = x.copy()
            xp[idx[part]] += eps
            dens(xp, g1)
            curv[part] = -(g1[idx[part]] - g0[idx[part]]) / eps
        sd = np.clip(1.0 / np.sqrt(np.maximum(curv, 1e-12)), 1e-3, 10.0)
        cond_sd[idx] = sd
        typical = float(np.sqrt(np.mean(sd**2)))
        beta[k] = max(1.0, float(ridge_sd[k]) / typical)
    return beta, cond_sd


@numba.njit(nogil=True, fastmath=FAST, error_model="numpy", cache=True)
def lowrank_map(y: np.ndarray, UT: np.ndarray, c: np.ndarray, out: np.ndarray) -> None:
    """Write M y into out, M = I + U diag(c) U^T (UT = U^T, (r, n), orthonormal rows)."""
    r, n = UT.shape
    for i in range(n):
        out[i] = y[i]
    for j in range(r):
        t = 0.0
        for i in range(n):
            t += UT[j, i] * y[i]
        t *= c[j]
        for i in range(n):
            out[i] += t * UT[j, i]


@dataclass(frozen=True)
class Coords:
    """The sampler's coordinates y: x = (log W, log H) = L (scale * (M (inner * y))).

    L shortens the scale ridges (:func:`ridge_stretch`), ``scale`` puts every
    coordinate on its own sd, and M = I + U diag(c) U^T stretches the few directions
    that the warm-up found longest (:func:`learn_long_directions`; rank 0 at first).
    ``inner`` (shape (n,); empty: ones) rescales each coordinate once more, for a
    continued chain (:mod:`poisson_nmf.sampling.continuation`). All are fixed while
    draws are kept, so the density of y is that of x times a constant Jacobian: the
    same posterior.
    """

    F: int
    N: int
    beta: np.ndarray
    scale: np.ndarray
    U: np.ndarray
    c: np.ndarray
    inner: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_y(self, x: np.ndarray) -> np.ndarray:
        """Y of x, shape (n,) or (draws, n): M^-1 (L^-1 x / scale) / inner."""
        flat = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float64)
        out = np.empty_like(flat)
        inv_c = 1.0 / (1.0 + self.c) - 1.0
        UT = np.ascontiguousarray(self.U.T)
        _rows_to_y(flat, self.F, self.N, 1.0 / self.beta - 1.0, self.scale, UT, inv_c, out)
        if self.inner.size:
            out /= self.inner
        return out.reshape(np.shape(x))


@numba.njit(nogil=True, cache=True)
def _rows_to_y(X, F, N, bm1_inv, scale, UT, inv_c, out):  # type: ignore[no-untyped-def]
    """Write each row of X (m, n) as y = M^-1 (L^-1 x / scale) into out.

    One compiled loop, rather than a Python loop over the draws.
    """
    t = np.empty(X.shape[1])
    inv_scale = 1.0 / scale
    for i in range(X.shape[0]):
        ridge_map(X[i], F, N, bm1_inv.size, bm1_inv, inv_scale, False, t)
        lowrank_map(t, UT, inv_c, out[i])
