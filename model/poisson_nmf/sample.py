r"""Full posterior sampling of Poisson NMF, with label switching and modes handled.

The posterior sampled is exactly that of :func:`poisson_nmf.model.build_model`:
:math:`v_{fn} \sim \mathrm{Poisson}((WH)_{fn})`, :math:`w_{fk} \sim \mathrm{Gamma}(a_w, b_w)`,
:math:`h_{kn} \sim \mathrm{Gamma}(a_h, b_h)`, sampled by NUTS on
:math:`(\log W, \log H)` (PyMC's log transform, Jacobian included).

Strategy (``sampler="nutpie"``, the default)
--------------------------------------------
- **Start at the MAP.** :func:`poisson_nmf.kl_nmf` with the same priors (the best of
  four random starts) gives the exact mode; entries the MAP puts at zero (the
  boundary, for shapes a = 1) start at their conditional posterior mean
  :math:`a / g'(0)`, and every chain is jittered a little (log-normal, sd
  ``jitter``). Chains then spend no warm-up travelling between modes.
- **A cheap, exact gradient.** The log density and its gradient are a hand-written
  Numba kernel,

  .. math::

      \log p = \sum_{nz} [v \log λ - \log v!] - \sum_k (\textstyle\sum_f w_{fk})
      (\textstyle\sum_n h_{kn}) + \sum [a \log b - \log Γ(a) + a u - b e^u],

  with :math:`u = \log w` (or :math:`\log h`), and
  :math:`\partial / \partial u_{fk} = w_{fk} (\sum_{n \in nz(f)} v h_{kn} / λ_{fn} -
  \sum_n h_{kn}) + a_w - b_w w_{fk}` (and likewise for H). Counts with more than a
  fifth non-zeros go through a fused row-by-row pass over a zero-padded dense copy
  of the counts (O(F N K) in vectorised loops, no F x N temporary); sparser counts
  through a loop over the non-zeros alone (O(nnz K)). ``log`` and ``exp`` are the
  vectorisable polynomials of :mod:`poisson_nmf.vecmath` (a few ulp; the C library's
  are called one value at a time and were the largest cost). Inside the sampler the
  dense kernel runs in float32 by default (``precision``), twice the lanes per
  instruction. The tests check both kernels against PyMC's ``logp``
  and ``dlogp`` of the same model to rounding error.
  The C callbacks nutpie calls are compiled once and cached on disk; the data reach
  them as addresses.
- **The scale ridge, straightened.** Along :math:`w_{\cdot k} c, h_{k \cdot} / c` the
  likelihood is flat and only the prior bounds the density: in log space a straight
  ridge, several times longer than any single coordinate's spread, which a diagonal
  mass matrix cannot follow (at the MAP of 300 digits, K = 6, the K longest axes of
  the posterior are exactly these ridges). NUTS runs in coordinates
  :math:`y = L^{-1} x`, :math:`L = I + \sum_k (β_k - 1) e_k e_k^T`, where the ridge
  :math:`e_k` is :math:`β_k` times shorter; :math:`β_k` comes from the prior's
  curvature along the ridge and the Hessian diagonal at the start. A fixed linear map
  has a constant Jacobian, so the posterior sampled is exactly the same.
- **The longest directions, learned in the warm-up.** Beyond the ridges the posterior
  has a few dozen long, slowly mixing directions (on the digits the slowest is an
  exchange of a few pixels between two components, a shear W -> W M, H -> M^-1 H,
  which holds the smallest ESS down). With ``tune >= 300`` the warm-up runs in two
  stages: ``tune // 4`` tuning steps and ``tune // 2`` draws per chain, from which
  :func:`_learn_long_directions` finds the long directions (at most 32, each checked
  on held-out draws, or within the span of the K (K - 1) shears when no generic one
  proves real); a fixed map M = I + U diag(c) U^T shrinks them to unit variance and
  the rest of the tuning runs in those coordinates (nutpie adapts its own diagonal
  mass matrix again, in the last quarter of the tuning). Half the tuning as draws
  for learning, rather than a fifth, mixes better at the same cost.
  The map is fixed before any kept draw, so the posterior is
  again exactly the same. The number learned is in ``attrs["sampler"]``. (nutpie's
  own ``adaptation="low_rank"`` re-learns such a map all along, far more slowly and
  no better.) Measured figures: ``benchmarks/README.md``.
- **One nutpie sampler per chain**, run in parallel threads (the kernel releases the
  GIL), each from its own start and seed, so that starts are explicit and runs
  reproducible; ``cores`` at a time, the next starting when one ends.

``sampler="pymc"`` runs ``pm.sample`` on :func:`~poisson_nmf.model.build_model` from the
same starts (slower; for checking).

Post-processing
---------------
Every draw is normalised and aligned to the MAP with
:func:`poisson_nmf.align.align_factors` (``normalize="W"``: columns of W sum to one,
scale in H; ``normalize="H"``: rows of H sum to one, scale in W). Chains are then
compared by their mean log-likelihood and their aligned factor means
(:func:`detect_modes`); chains in different modes are reported (a
:class:`MultipleModesWarning` and ``attrs["modes"]``) and kept unless ``keep="main"``.

Memory
------
W and H draws are stored in float64 (chains x draws x (F + N) x K values). The
pointwise groups ``log_likelihood`` and ``posterior_predictive`` have one value per
draw and observed entry; they hold at most ``pointwise_draws`` draws in all (default
500, thinned evenly within each chain; coordinate ``draw`` keeps the original draw
numbers), in float32 (log-likelihood) and int32 (predictive counts), and are computed
in chunks. On all digits (109,617 entries) that is 219 MB each rather than 3.5 GB.
``pointwise_draws=None`` keeps every draw, ``0`` leaves the groups out. Predictive
counts past the int32 range are kept as int64 (never wrapped).

Sparse input with more than 200,000 observed entries keeps its pointwise groups on an
``entry`` dim: every non-zero, and a fixed random subsample of m = max(nnz, 50,000)
observed zeros with the coordinate ``weight`` = n_zero / m (1 for the non-zeros), so
that diagnose's coverage, discrepancy and elpd_loo are weighted estimates over all
observed entries; their rates come from the rows of W and columns of H, never a dense
F x N array. ``max_memory`` (default "4GB") is planned before sampling
(:mod:`poisson_nmf.memory`): past it the pointwise draws are thinned or left out with a
warning, or the run is refused before sampling.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numba
import numba.extending
import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import gammaln
from threadpoolctl import threadpool_limits

from .align import Normalize, _check_normalize, align_factors
from .data import Counts, as_counts, check_n_components
from .exceptions import MultipleModesWarning
from .memory import (
    DEFAULT_MAX_MEMORY,
    MemoryBudgetWarning,
    draws_within,
    plan_memory,
    thinning_message,
)
from .numba_cache import ensure_fresh
from .priors import GammaPriors
from .progress import ProgressArg, SamplingProgress
from .stopping import MAX_DRAWS as _MAX_DRAWS
from .vecmath import FAST as _FAST
from .vecmath import fexp, flog, flog_t

__all__ = [
    "ModeReport",
    "MultipleModesWarning",
    "detect_modes",
    "log_density",
    "posterior_summary",
    "sample_posterior",
    "select_chains",
]

_DEFAULT_PRIORS = GammaPriors()
_SAMPLE_DIMS = ("chain", "draw")
_TINY = 1e-300  # rates are floored here before their log (a normal float64)
_TINY32 = np.float32(1e-30)  # the same in float32 (whose smallest normal is 1.2e-38)
_PAD = 16  # dense rows are padded to whole blocks of this many columns


# ---------------------------------------------------------------------------------------
# the log density and its gradient


@numba.njit(nogil=True, error_model="numpy", cache=True)
def _lik_sparse(
    W: np.ndarray,
    H: np.ndarray,
    indptr: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    m_indptr: np.ndarray,
    m_cols: np.ndarray,
    gW: np.ndarray,
    gH: np.ndarray,
) -> float:
    """sum_nz v log(WH) + sum_masked WH, with its gradient written into gW and gH.

    O(nnz K), no F x N temporary: for sparse counts.
    """
    F, K = W.shape
    N = H.shape[1]
    Ht = np.ascontiguousarray(H.T)  # (N, K)
    gHt = np.zeros((N, K))
    lp = 0.0
    for f in range(F):
        for i in range(indptr[f], indptr[f + 1]):
            n = cols[i]
            v = vals[i]
            lam = 0.0
            for k in range(K):
                lam += W[f, k] * Ht[n, k]
            lam = max(lam, _TINY)
            lp += v * flog(lam)
            r = v / lam
            for k in range(K):
                gW[f, k] += r * Ht[n, k]
                gHt[n, k] += r * W[f, k]
        # masked entries: their rate is taken back out of the total
        for i in range(m_indptr[f], m_indptr[f + 1]):
            n = m_cols[i]
            for k in range(K):
                lp += W[f, k] * Ht[n, k]
                gW[f, k] += Ht[n, k]
                gHt[n, k] += W[f, k]
    gH += gHt.T
    return lp


@numba.njit(nogil=True, fastmath=_FAST, error_model="numpy", cache=True)
def _lik_rows(
    W: np.ndarray,
    Hp: np.ndarray,
    Vp: np.ndarray,
    Op: np.ndarray,
    masked: bool,
    tiny: float | np.floating,
    gW: np.ndarray,
    gHp: np.ndarray,
) -> float:
    """sum_obs [v log(WH) - WH], gradient into gW and gHp, dense and row by row.

    O(F N K) in short vectorised loops, no F x N temporary: for counts with more than
    about a fifth non-zeros. Hp, Vp (and the observed weights Op, when ``masked``)
    have their columns padded with zeros to a multiple of 16 (whole AVX2 blocks);
    a padded column has rate 0 and count 0, so it adds nothing (and its gHp is unused).
    Compiles for float64 or float32 arrays alike (``tiny``, the floor of the rates
    before their log, has their type; each row's sum is then in that type, the total
    in float64).
    """
    F, K = W.shape
    Np = Hp.shape[1]
    lam = np.empty(Np, dtype=Hp.dtype)
    zero = tiny - tiny
    one = tiny / tiny
    lp = 0.0
    for f in range(F):
        for n in range(Np):
            lam[n] = zero
        for k in range(K):
            w = W[f, k]
            for n in range(Np):
                lam[n] += w * Hp[k, n]
        acc = zero
        if masked:
            for n in range(Np):
                v = Vp[f, n]
                o = Op[f, n]
                lc = max(lam[n], tiny)
                acc += v * flog_t(lc) - o * lam[n]
                lam[n] = v / lc - o  # d/dlam, reusing the buffer
        else:
            for n in range(Np):
                v = Vp[f, n]
                lc = max(lam[n], tiny)
                acc += v * flog_t(lc) - lam[n]
                lam[n] = v / lc - one
        lp += float(acc)
        for k in range(K):
            s = zero
            w = W[f, k]
            for n in range(Np):
                r = lam[n]
                s += r * Hp[k, n]
                gHp[k, n] += w * r
            gW[f, k] = s
    return lp


@numba.njit(nogil=True, fastmath=_FAST, error_model="numpy", cache=True)
def _lik_dense(
    W: np.ndarray,
    H: np.ndarray,
    Vp: np.ndarray,
    Op: np.ndarray,
    masked: bool,
    tiny: float | np.floating,
    grad: np.ndarray,
) -> float:
    """Return the dense log-likelihood, computed in the precision of Vp.

    Rates and logs are in Vp's type; the gradient with respect to (log W, log H) is
    written into grad in float64.
    """
    F, K = W.shape
    N = H.shape[1]
    nW = F * K
    Np = Vp.shape[1]
    Wd = np.empty((F, K), dtype=Vp.dtype)
    for f in range(F):
        for k in range(K):
            Wd[f, k] = W[f, k]
    Hp = np.zeros((K, Np), dtype=Vp.dtype)
    for k in range(K):
        for n in range(N):
            Hp[k, n] = H[k, n]
    gW = np.empty((F, K), dtype=Vp.dtype)
    gHp = np.zeros((K, Np), dtype=Vp.dtype)
    lp = _lik_rows(Wd, Hp, Vp, Op, masked, tiny, gW, gHp)
    for f in range(F):
        for k in range(K):
            grad[f * K + k] = W[f, k] * gW[f, k]
    for k in range(K):
        for n in range(N):
            grad[nW + k * N + n] = H[k, n] * gHp[k, n]
    return lp


@numba.njit(nogil=True, fastmath=_FAST, error_model="numpy", cache=True)
def _logp_grad(
    x: np.ndarray,
    F: int,
    N: int,
    K: int,
    indptr: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    m_indptr: np.ndarray,
    m_cols: np.ndarray,
    Vp: np.ndarray,
    Op: np.ndarray,
    Vs: np.ndarray,
    Os: np.ndarray,
    aw: np.ndarray,
    bw: np.ndarray,
    ah: np.ndarray,
    bh: np.ndarray,
    const: float,
    grad: np.ndarray,
    with_prior: bool,
    dense: bool,
    masked: bool,
    single: bool,
) -> float:
    nW = F * K
    nH = K * N
    Wv = np.empty(nW)
    Hv = np.empty(nH)
    for i in range(nW):
        Wv[i] = fexp(x[i])
    for i in range(nH):
        Hv[i] = fexp(x[nW + i])
    W = Wv.reshape(F, K)
    H = Hv.reshape(K, N)
    if dense and single:
        lp = _lik_dense(W, H, Vs, Os, masked, _TINY32, grad)
    elif dense:
        lp = _lik_dense(W, H, Vp, Op, masked, _TINY, grad)
    else:
        gW = np.zeros((F, K))
        gH = np.zeros((K, N))
        lp = _lik_sparse(W, H, indptr, cols, vals, m_indptr, m_cols, gW, gH)
        # the rate total sum_fn (WH)_fn = sum_k (sum_f w_fk)(sum_n h_kn)
        sW = np.zeros(K)
        sH = np.zeros(K)
        for f in range(F):
            for k in range(K):
                sW[k] += W[f, k]
        for k in range(K):
            for n in range(N):
                sH[k] += H[k, n]
        for k in range(K):
            lp -= sW[k] * sH[k]
        for f in range(F):
            for k in range(K):
                grad[f * K + k] = W[f, k] * (gW[f, k] - sH[k])
        for k in range(K):
            for n in range(N):
                grad[nW + k * N + n] = H[k, n] * (gH[k, n] - sW[k])
    if with_prior:
        awf, bwf, ahf, bhf = aw.ravel(), bw.ravel(), ah.ravel(), bh.ravel()
        for i in range(nW):
            lp += awf[i] * x[i] - bwf[i] * Wv[i]
            grad[i] += awf[i] - bwf[i] * Wv[i]
        for i in range(nH):
            j = nW + i
            lp += ahf[i] * x[j] - bhf[i] * Hv[i]
            grad[j] += ahf[i] - bhf[i] * Hv[i]
    return lp + const


# the dense kernel pays O(F N K) in vectorised loops; worth it above this fill (timed
# in benchmarks/README.md), and only while its padded F x N copy of the counts is small
_DENSE_MIN_FILL = 0.2
_DENSE_MAX_ENTRIES = 4_000_000


def _use_dense(counts: Counts) -> bool:
    F, N = counts.shape
    return F * N <= _DENSE_MAX_ENTRIES and counts.nz_values.size >= _DENSE_MIN_FILL * F * N


def _csr(rows: np.ndarray, cols: np.ndarray, F: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (indptr, sorted cols, the sorting order) of entries given by row, col."""
    order = np.lexsort((cols, rows))
    indptr = np.searchsorted(rows[order], np.arange(F + 1)).astype(np.int64)
    return indptr, np.ascontiguousarray(cols[order], dtype=np.int64), order


@dataclass(frozen=True)
class _Density:
    """Everything the kernel needs, for one data set, K and priors."""

    F: int
    N: int
    K: int
    indptr: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    m_indptr: np.ndarray
    m_cols: np.ndarray
    Vp: np.ndarray
    Op: np.ndarray
    Vs: np.ndarray
    Os: np.ndarray
    aw: np.ndarray
    bw: np.ndarray
    ah: np.ndarray
    bh: np.ndarray
    lik_const: float
    prior_const: float
    dense: bool
    masked: bool

    @classmethod
    def build(
        cls, counts: Counts, K: int, priors: GammaPriors, dense: bool | None = None
    ) -> _Density:
        """Arrays for the kernel; ``dense=None`` picks the kernel by fill (:func:`_use_dense`)."""
        F, N = counts.shape
        indptr, cols, order = _csr(counts.nz_rows, counts.nz_cols, F)
        vals = np.ascontiguousarray(counts.nz_values[order])
        m_indptr, m_cols, _ = _csr(counts.missing_rows, counts.missing_cols, F)
        aw, bw, ah, bh = (np.ascontiguousarray(a) for a in priors.arrays(F, N, K))
        dense = _use_dense(counts) if dense is None else bool(dense)
        masked = bool(counts.has_mask)
        Vp = np.zeros((F, -(-N // _PAD) * _PAD if dense else 0))
        Op = np.zeros((F, Vp.shape[1] if dense and masked else 0))
        if dense:
            Vp[counts.nz_rows, counts.nz_cols] = counts.nz_values
            if masked:
                Op[:, :N] = counts.observed()
        # float32 copies for the sampler's single-precision kernel (counts above 2^24
        # would round: those keep float64)
        single_ok = dense and float(np.max(counts.nz_values, initial=0.0)) < 2.0**24
        Vs = Vp.astype(np.float32) if single_ok else np.zeros((F, 0), np.float32)
        Os = Op.astype(np.float32) if single_ok else np.zeros((F, 0), np.float32)
        return cls(
            F, N, K, indptr, cols, vals, m_indptr, m_cols, Vp, Op, Vs, Os, aw, bw, ah, bh,
            lik_const=-float(np.sum(gammaln(vals + 1.0))),
            prior_const=priors.log_normaliser(F, N, K),
            dense=dense,
            masked=masked,
        )  # fmt: skip

    @property
    def n_dim(self) -> int:
        return (self.F + self.N) * self.K

    @property
    def can_single(self) -> bool:
        """Whether the dense kernel can run in float32 (:attr:`Vs` holds the counts)."""
        return self.dense and self.Vs.shape[1] > 0

    def __call__(
        self,
        x: np.ndarray,
        grad: np.ndarray | None = None,
        with_prior: bool = True,
        single: bool = False,
    ) -> float:
        if single and not self.can_single:
            raise ValueError("the float32 kernel needs dense counts below 2**24")
        g = np.empty(self.n_dim) if grad is None else grad
        const = self.lik_const + (self.prior_const if with_prior else 0.0)
        return float(
            _logp_grad(
                x, self.F, self.N, self.K, self.indptr, self.cols, self.vals,
                self.m_indptr, self.m_cols, self.Vp, self.Op, self.Vs, self.Os, self.aw,
                self.bw, self.ah, self.bh, const, g, with_prior, self.dense, self.masked,
                single,
            )
        )  # fmt: skip

    def log_prior(self, W: np.ndarray, H: np.ndarray) -> np.ndarray:
        """Log prior on (log W, log H), Jacobian included, per draw: shape W.shape[:-2]."""
        lw = np.einsum("...fk,fk->...", np.log(W), self.aw) - np.einsum("...fk,fk->...", W, self.bw)
        lh = np.einsum("...kn,kn->...", np.log(H), self.ah) - np.einsum("...kn,kn->...", H, self.bh)
        return lw + lh + self.prior_const

    def pack(self, W: np.ndarray, H: np.ndarray) -> np.ndarray:
        return np.concatenate([np.log(W).ravel(), np.log(H).ravel()])

    def unpack(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nW = self.F * self.K
        return np.exp(x[:nW]).reshape(self.F, self.K), np.exp(x[nW:]).reshape(self.K, self.N)


def log_density(
    V: Any,
    n_components: int,
    *,
    priors: GammaPriors = _DEFAULT_PRIORS,
    mask: Any = None,
) -> Any:
    """Return the log posterior density on (log W, log H) and its gradient, as a function.

    The same density as PyMC's ``model.compile_logp()`` for
    :func:`poisson_nmf.model.build_model` (value variables ``W_log__``, ``H_log__``,
    Jacobian included), computed from the non-zeros in O(nnz K).

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`.
    n_components : int
        K.
    priors : GammaPriors
        Gamma priors on W and H.
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries.

    Returns
    -------
    callable
        ``f(x, grad=None, with_prior=True) -> float`` with ``x`` of shape
        ``((F + N) K,)``: ``log W`` (F x K, row-major) then ``log H`` (K x N); the
        gradient is written into ``grad`` when given. ``with_prior=False`` gives the
        Poisson log-likelihood of W = exp(...), H = exp(...) alone.
    """
    counts = as_counts(V, mask=mask)
    K = check_n_components(n_components, counts)
    return _Density.build(counts, K, _check_priors(priors))


def _check_priors(priors: Any) -> GammaPriors:
    if priors is None:
        raise ValueError(
            "priors=None (flat priors) gives an improper posterior: the scale of each "
            "component is unbounded; pass priors=GammaPriors(...) to sample"
        )
    if not isinstance(priors, GammaPriors):
        raise TypeError(f"priors must be a GammaPriors, got {type(priors).__name__}")
    return priors


# ---------------------------------------------------------------------------------------
# starting points


def _fill_zeros(
    counts: Counts, W: np.ndarray, H: np.ndarray, dens: _Density
) -> tuple[np.ndarray, np.ndarray]:
    """Replace entries at zero by their conditional posterior mean a / g'(0).

    With shape a = 1 the MAP puts many entries on the boundary w = 0, where log w is
    -inf. Near there the conditional posterior of w is about Gamma(a, g'(0)), g'(0) the
    derivative of the negative log posterior, so a / g'(0) is a typical value.
    """
    W = np.array(W, dtype=np.float64)
    H = np.array(H, dtype=np.float64)
    tiny = 1e-300
    x = dens.pack(np.maximum(W, tiny), np.maximum(H, tiny))
    g = np.empty(dens.n_dim)
    dens(x, g, with_prior=False)
    Wt, Ht = dens.unpack(x)
    # grad of the log-likelihood w.r.t. w is g_u / w; rate = b - that
    rate_w = dens.bw - g[: W.size].reshape(W.shape) / Wt
    rate_h = dens.bh - g[W.size :].reshape(H.shape) / Ht
    for A, rate, a in ((W, rate_w, dens.aw), (H, rate_h, dens.ah)):
        zero = A <= 0
        if zero.any():
            pos = A[A > 0]
            cap = float(np.median(pos)) if pos.size else 1.0
            fill = np.minimum(a / np.maximum(rate, 1e-12), cap)
            A[zero] = fill[zero]
    return W, H


# MAP fits from random starts behind init="map": the best is the reference and the start
_MAP_RESTARTS = 4


def _map_start(
    counts: Counts,
    K: int,
    priors: GammaPriors,
    rng: np.random.Generator,
    map_kwargs: dict,
    restarts: int = 1,
) -> tuple[np.ndarray, np.ndarray, float]:
    from .kl import kl_nmf

    kw = {"max_iter": 1000, "tol": 1e-6, "n_restarts": restarts, **map_kwargs}
    shape_ok = all(np.all(np.asarray(getattr(priors, n)) >= 1) for n in ("w_shape", "h_shape"))
    res = kl_nmf(counts, K, priors=priors if shape_ok else None, random_seed=rng, **kw)
    return res.W, res.H, float(res.objective)


# ---------------------------------------------------------------------------------------
# samplers


@numba.njit(nogil=True, fastmath=_FAST, cache=True)
def _ridge_map(
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


def _ridge_stretch(dens: _Density, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _as_pointer_typing(typingctx: Any, src: Any) -> Any:  # pragma: no cover - numba typing
    """Cast an integer address to a void pointer (to read arrays given as user data)."""
    from numba.core import cgutils

    def codegen(cgctx: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return numba.types.voidptr(src), codegen


_as_pointer: Any = numba.extending.intrinsic(_as_pointer_typing)


# layout of the user data handed to the callbacks: sizes, then array addresses
_UD_F, _UD_N, _UD_K, _UD_DENSE, _UD_NNZ, _UD_NM, _UD_NP, _UD_NO, _UD_MASKED, _UD_SINGLE = range(10)
_UD_ARRAYS = ("indptr", "cols", "vals", "m_indptr", "m_cols", "Vp", "Op", "Vs", "Os", "aw", "bw",
              "ah", "bh")  # fmt: skip
_UD_A0 = _UD_SINGLE + 1  # where the array addresses start
_UD_BM1 = _UD_A0 + len(_UD_ARRAYS)
_UD_SCALE = _UD_BM1 + 1
_UD_CONST = _UD_SCALE + 1
_UD_LR_U = _UD_CONST + 1
_UD_LR_C = _UD_LR_U + 1
_UD_LR_R = _UD_LR_C + 1
_UD_SIZE = _UD_LR_R + 1


@numba.njit(nogil=True, fastmath=_FAST, error_model="numpy", cache=True)
def _lowrank_map(y: np.ndarray, UT: np.ndarray, c: np.ndarray, out: np.ndarray) -> None:
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


@numba.njit(nogil=True, cache=True)
def _ud_maps(ud: np.ndarray, n: int) -> Any:  # pragma: no cover
    """Read the coordinate maps from the user data: (F, N, K, bm1, scale, U^T, c)."""
    F, N, K = int(ud[_UD_F]), int(ud[_UD_N]), int(ud[_UD_K])
    r = int(ud[_UD_LR_R])
    bm1 = numba.carray(_as_pointer(ud[_UD_BM1]), (K,), np.float64)
    scale = numba.carray(_as_pointer(ud[_UD_SCALE]), (n,), np.float64)
    UT = numba.carray(_as_pointer(ud[_UD_LR_U]), (r, n), np.float64)
    c = numba.carray(_as_pointer(ud[_UD_LR_C]), (r,), np.float64)
    return F, N, K, bm1, scale, UT, c


@numba.njit(nogil=True, cache=True)
def _to_x(y: np.ndarray, ud: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """Map the sampler's y to x = (log W, log H) = L (scale * (M y))."""
    F, N, K, bm1, scale, UT, c = _ud_maps(ud, y.size)
    t = y  # M = I while no direction is learned: no copy
    if c.size:
        t = np.empty(y.size)
        _lowrank_map(y, UT, c, t)
    _ridge_map(t, F, N, K, bm1, scale, True, out)


@numba.njit(nogil=True, cache=True)
def _grad_to_y(gx: np.ndarray, ud: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """Carry a gradient in x to y: M (scale * (L gx)) (L and M are symmetric)."""
    F, N, K, bm1, scale, UT, c = _ud_maps(ud, gx.size)
    t = np.empty(gx.size) if c.size else out  # M = I while no direction is learned
    _ridge_map(gx, F, N, K, bm1, scale, False, t)
    if c.size:
        _lowrank_map(t, UT, c, out)


@numba.njit(nogil=True, cache=True)
def _ud_logp(y: np.ndarray, out: np.ndarray, ud: np.ndarray) -> float:  # pragma: no cover
    F, N, K = int(ud[_UD_F]), int(ud[_UD_N]), int(ud[_UD_K])
    nnz, nm = int(ud[_UD_NNZ]), int(ud[_UD_NM])
    Np, No = int(ud[_UD_NP]), int(ud[_UD_NO])
    a = _UD_A0
    indptr = numba.carray(_as_pointer(ud[a]), (F + 1,), np.int64)
    cols = numba.carray(_as_pointer(ud[a + 1]), (nnz,), np.int64)
    vals = numba.carray(_as_pointer(ud[a + 2]), (nnz,), np.float64)
    m_indptr = numba.carray(_as_pointer(ud[a + 3]), (F + 1,), np.int64)
    m_cols = numba.carray(_as_pointer(ud[a + 4]), (nm,), np.int64)
    Vp = numba.carray(_as_pointer(ud[a + 5]), (F, Np), np.float64)
    Op = numba.carray(_as_pointer(ud[a + 6]), (F, No), np.float64)
    single = int(ud[_UD_SINGLE])  # 1: the float32 copies exist (with Np, No columns)
    Vs = numba.carray(_as_pointer(ud[a + 7]), (F, Np * single), np.float32)
    Os = numba.carray(_as_pointer(ud[a + 8]), (F, No * single), np.float32)
    aw = numba.carray(_as_pointer(ud[a + 9]), (F, K), np.float64)
    bw = numba.carray(_as_pointer(ud[a + 10]), (F, K), np.float64)
    ah = numba.carray(_as_pointer(ud[a + 11]), (K, N), np.float64)
    bh = numba.carray(_as_pointer(ud[a + 12]), (K, N), np.float64)
    n = y.size
    const = numba.carray(_as_pointer(ud[_UD_CONST]), (1,), np.float64)[0]
    x = np.empty(n)
    gx = np.empty(n)
    _to_x(y, ud, x)
    val = _logp_grad(x, F, N, K, indptr, cols, vals, m_indptr, m_cols, Vp, Op, Vs, Os, aw,
                     bw, ah, bh, const, gx, True, ud[_UD_DENSE] != 0, ud[_UD_MASKED] != 0,
                     single != 0)  # fmt: skip
    _grad_to_y(gx, ud, out)
    return val


def _logp_callback(dim, x_, out_, logp_, user_data_):  # type: ignore[no-untyped-def]  # pragma: no cover
    ud = numba.carray(user_data_, (_UD_SIZE,), np.uint64)
    n = int(ud[_UD_N] + ud[_UD_F]) * int(ud[_UD_K])
    if dim != n:
        return -1
    y = numba.carray(x_, (n,))
    out = numba.carray(out_, (n,))
    lp = numba.carray(logp_, ())
    val = _ud_logp(y, out, ud)
    lp[()] = val
    if not np.isfinite(val):
        return 4
    for i in range(n):
        if not np.isfinite(out[i]):
            return 3
    return 0


def _expand_callback(dim, expanded, x_, out_, user_data_):  # type: ignore[no-untyped-def]  # pragma: no cover
    ud = numba.carray(user_data_, (_UD_SIZE,), np.uint64)
    F, N, K = int(ud[_UD_F]), int(ud[_UD_N]), int(ud[_UD_K])
    n = (F + N) * K
    if dim != n or expanded != n:
        return -1
    _to_x(numba.carray(x_, (n,)), ud, numba.carray(out_, (n,)))
    return 0


_COMPILING = "POISSON_NMF_COMPILING"  # set in the process that fills the cache


def precompile() -> bool:
    """Compile the sampler's C callbacks into Numba's disk cache; return whether they were there.

    A process that compiles the callbacks runs them as compiled in memory, and that
    machine code can differ in the last bit of a few gradient entries from what the
    cache stores and every later process loads (seen on 300 digits: differences of
    2e-13 in the gradient, enough for the chains to part after some hundred draws;
    both are exact NUTS); so can any of the sampler's compiled functions that calls
    another (``to_y`` did). So the sampler never runs code it compiled itself: when the
    callbacks are not cached, :func:`sample_posterior` first runs this in a Python
    process of its own, which compiles them and, through tiny runs, everything else on
    the sampling path, and then loads the cache; equal seeds give equal draws in every
    process. ``make`` runs it once after installing, which moves the compile time out
    of the first run.
    """
    ensure_fresh()
    os.environ[_COMPILING] = "1"
    try:
        hit = bool(_callbacks()[0].cache_hits)
        # every other compiled function of the sampling path, through tiny runs (the
        # same effect holds for any of them that calls another: to_y did): dense and
        # sparse kernels, the two-stage warm-up, the pointwise groups
        rng = np.random.default_rng(0)
        dense = rng.poisson(rng.gamma(1.0, 1.0, (30, 2)) @ rng.gamma(1.0, 3.0, (2, 12)))
        sparse = np.zeros((40, 30), dtype=np.int64)
        sparse[rng.integers(0, 40, 60), rng.integers(0, 30, 60)] = 1
        for V in (dense, sparse):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sample_posterior(
                    V, 2, draws=10, tune=_LEARN_MIN_TUNE, chains=2, random_seed=0,
                    pointwise_draws=10, progress=False,
                )  # fmt: skip
    finally:
        os.environ.pop(_COMPILING, None)
    return hit


def _cache_in_other_process(sig: Any) -> None:
    """Fill Numba's cache with the callbacks from a fresh process, if they are not there.

    Does nothing inside that process, or where the cache already holds them; if the
    process fails (no cache directory one can write, no interpreter to start) the
    caller compiles here, and this process's draws may then differ in the last bits
    from those of later processes.
    """
    if os.environ.get(_COMPILING):
        return
    import subprocess
    import sys

    from numba.core.caching import FunctionCache
    from numba.core.registry import cpu_target

    try:
        if FunctionCache(_logp_callback).load_overload(sig, cpu_target.target_context):
            return
    except Exception:  # an unreadable cache: compile as usual
        return
    code = "from poisson_nmf.sample import precompile; precompile()"
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)


@functools.cache
def _callbacks() -> tuple[Any, Any]:
    """Load the C callbacks from Numba's disk cache (the data come as user data).

    On a cache miss they are compiled in a process of their own first
    (:func:`precompile`), so that every process runs the same machine code.
    """
    ptr = numba.types.CPointer(numba.types.double)
    u64, vp = numba.types.uint64, numba.types.voidptr
    sig = numba.types.int64(u64, ptr, ptr, ptr, vp)
    sig_x = numba.types.int64(u64, u64, ptr, ptr, vp)
    ensure_fresh()
    _cache_in_other_process(sig)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", numba.NumbaWarning)  # type: ignore[attr-defined]
        return (
            numba.cfunc(sig, cache=True)(_logp_callback),
            numba.cfunc(sig_x, cache=True)(_expand_callback),
        )


@dataclass(frozen=True)
class _Coords:
    """The sampler's coordinates y: x = (log W, log H) = L (scale * (M y)).

    L shortens the scale ridges (:func:`_ridge_stretch`), ``scale`` puts every
    coordinate on its own sd, and M = I + U diag(c) U^T stretches the few directions
    that the warm-up found longest (:func:`_learn_long_directions`; rank 0 at first).
    All three are fixed while draws are kept, so the density of y is that of x times a
    constant Jacobian: the same posterior.
    """

    F: int
    N: int
    beta: np.ndarray
    scale: np.ndarray
    U: np.ndarray
    c: np.ndarray

    def to_y(self, x: np.ndarray) -> np.ndarray:
        """Y of x, shape (n,) or (draws, n): M^-1 (L^-1 x / scale)."""
        flat = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float64)
        out = np.empty_like(flat)
        inv_c = 1.0 / (1.0 + self.c) - 1.0
        UT = np.ascontiguousarray(self.U.T)
        _rows_to_y(flat, self.F, self.N, 1.0 / self.beta - 1.0, self.scale, UT, inv_c, out)
        return out.reshape(np.shape(x))


@numba.njit(nogil=True, cache=True)
def _rows_to_y(X, F, N, bm1_inv, scale, UT, inv_c, out):  # type: ignore[no-untyped-def]
    """Write each row of X (m, n) as y = M^-1 (L^-1 x / scale) into out.

    One compiled loop, rather than a Python loop over the draws.
    """
    t = np.empty(X.shape[1])
    inv_scale = 1.0 / scale
    for i in range(X.shape[0]):
        _ridge_map(X[i], F, N, bm1_inv.size, bm1_inv, inv_scale, False, t)
        _lowrank_map(t, UT, inv_c, out[i])


def _top_right_singular(A: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the k largest squared singular values of A (m, n) and right vectors (k, n).

    They come from the eigen-decomposition of the smaller Gram matrix.

    Only the k largest pairs are computed, far cheaper than a full ``np.linalg.svd``
    with thousands of draws and coordinates.
    """
    import scipy.linalg

    m, n = A.shape
    k = min(k, m, n)
    if k == 0:
        return np.zeros(0), np.zeros((0, n))
    p = min(m, n)
    G = A @ A.T if m <= n else A.T @ A
    ev, vec = scipy.linalg.eigh(G, subset_by_index=(p - k, p - 1))
    ev, vec = np.maximum(ev[::-1], 0.0), vec[:, ::-1]
    if m > n:
        return ev, np.ascontiguousarray(vec.T)
    s = np.sqrt(ev)
    return ev, (vec.T @ A) / np.where(s > 0, s, 1.0)[:, None]


def _learn_long_directions(
    coords: _Coords, ys: list[np.ndarray], candidates: np.ndarray | None = None
) -> _Coords:
    """Coordinates in which the longest directions of warm-up draws are unit length.

    ``ys``: per chain, warm-up draws (draws, n) in ``coords``; ``candidates``: (n, p)
    directions in x where long ones are expected (:func:`_shear_directions`). Each
    chain is centred (chains may sit in different modes) and each coordinate scaled to
    unit sd; then, on that scale:

    - **Principal directions, as many as prove real on held-out draws.** The draws are
      split in two (alternate chains; the two halves of a lone chain), the principal
      directions of one half are measured on the other, and those with held-out
      variance at least ``_MIN_VARIANCE`` times a single coordinate's count. The
      directions themselves come from all draws, their variance l from the sample one
      lam by the spiked-covariance relation lam = l (1 + gamma / (l - 1)),
      gamma = n / m (m draws).
    - **If none proves real**, the eigen-directions of the candidates' span (p small
      against m, so its sample covariance is accurate) with variance at least
      ``_MIN_VARIANCE``. With far more coordinates than draws the sample principal
      directions are mostly noise, while the shears' span is estimated well; when a
      generic direction does prove real, it is used alone.

    At most ``_MAX_RANK`` directions, each shrunk to unit variance.

    Principal directions of the H block alone, and the same extended to W by its
    conditional response -A^-1 B dh, were tried on all digits and not used: W moves
    with H, and the extension gave no clear gain for a third more time per gradient
    (benchmarks/README.md).
    """
    # in float32: the Gram products over the draws are the cost here, and the
    # directions only precondition
    sizes = np.cumsum([0] + [y.shape[0] for y in ys])
    m, n = int(sizes[-1]), ys[0].shape[1]
    Z = np.empty((m, n), dtype=np.float32)
    for y, lo, hi in zip(ys, sizes[:-1], sizes[1:], strict=True):
        Z[lo:hi] = y - y.mean(axis=0)
    dof = m - len(ys)
    sd = np.sqrt(np.einsum("ij,ij->j", Z, Z, dtype=np.float64) / max(m - 1, 1))
    sd = np.where(sd > 0, sd, 1.0)
    Z /= sd.astype(np.float32)
    blocks = np.split(Z, sizes[1:-1])
    if len(blocks) >= 2:
        a, b = np.concatenate(blocks[0::2]), np.concatenate(blocks[1::2])
    else:
        a, b = Z[: m // 2], Z[m // 2 :]
    Va = _top_right_singular(a, 4 * _MAX_RANK)[1]
    held_out = ((b @ Va.T) ** 2).mean(axis=0)
    rank = min(int((held_out >= _MIN_VARIANCE).sum()), _MAX_RANK)
    if rank > 0 or candidates is None or candidates.shape[1] == 0:
        sv2, Vt = _top_right_singular(Z, rank)
        lam = sv2.astype(np.float64) / dof
        gamma = n / m
        q = lam + 1.0 - gamma
        ell = (q + np.sqrt(np.maximum(q * q - 4.0 * lam, 0.0))) / 2.0
        U = Vt[:rank].T.astype(np.float64)
    else:
        D = coords.to_y(np.ascontiguousarray(candidates.T)) / sd  # (p, n)
        Q = np.linalg.qr(D.T)[0]
        P = (Z @ Q.astype(np.float32)).astype(np.float64)
        ell_c, V = np.linalg.eigh(P.T @ P / dof)
        order = np.argsort(-ell_c)
        sel = order[ell_c[order] >= _MIN_VARIANCE][:_MAX_RANK]
        U, ell = Q @ V[:, sel], ell_c[sel]
    return replace(
        coords,
        scale=coords.scale * sd,
        U=np.ascontiguousarray(U),
        c=np.sqrt(np.maximum(ell, 1.0)) - 1.0,
    )


def _shear_directions(dens: _Density, x: np.ndarray, cap: float = 3.0) -> np.ndarray:
    """Return the K (K - 1) near-symmetries of NMF at x, as directions in (log W, log H).

    WH is unchanged by W -> W M, H -> M^-1 H for any invertible M; scalings (diagonal
    M) are exact symmetries (the ridges), and the shears M = I + t E_ab stay one until
    an entry reaches zero. At first order in t they move log W[:, b] by
    W[:, a] / W[:, b] and log H[a, :] by -H[b, :] / H[a, :] (capped at ``cap``: the
    ratio is huge for entries near zero, where the first order means little).
    Returns an array (n, K (K - 1)).
    """
    F, N, K = dens.F, dens.N, dens.K
    nW = F * K
    W, H = dens.unpack(x)
    out = []
    for a in range(K):
        for b in range(K):
            if a == b:
                continue
            d = np.zeros(dens.n_dim)
            d[np.arange(F) * K + b] = np.minimum(W[:, a] / W[:, b], cap)
            d[nW + a * N + np.arange(N)] = -np.minimum(H[b] / H[a], cap)
            out.append(d)
    return np.array(out).T if out else np.zeros((dens.n_dim, 0))


def _compile_nutpie(dens: _Density, y0: np.ndarray, coords: _Coords, single: bool = False) -> Any:
    """Build a nutpie model whose log density is a Numba C callback (no Python, no GIL).

    The sampler's coordinates are y (:class:`_Coords`; the scale, each coordinate's
    conditional sd at the start, spares nutpie's first draws their tiny steps before
    its own mass matrix adapts); its expand function returns x, so the trace holds
    (log W, log H). The callbacks are compiled once; the data reach them as addresses
    in ``user_data``, and the arrays behind them are kept alive by the returned model.
    ``single``: the dense kernel in float32 where the counts allow it (see
    :func:`sample_posterior`'s ``precision``).
    """
    from nutpie.compile_pymc import CompiledPyMCModel

    n_dim = dens.n_dim
    keep = {name: np.ascontiguousarray(getattr(dens, name)) for name in _UD_ARRAYS}
    keep["bm1"] = np.ascontiguousarray(coords.beta - 1.0, dtype=np.float64)
    keep["scale"] = np.ascontiguousarray(coords.scale, dtype=np.float64)
    keep["const"] = np.array([dens.lik_const + dens.prior_const])
    keep["U"] = np.ascontiguousarray(coords.U.T, dtype=np.float64)  # (r, n)
    keep["c"] = np.ascontiguousarray(coords.c, dtype=np.float64)
    ud = np.zeros(_UD_SIZE, dtype=np.uint64)
    ud[[_UD_F, _UD_N, _UD_K]] = dens.F, dens.N, dens.K
    ud[_UD_DENSE] = int(dens.dense)
    ud[_UD_NNZ], ud[_UD_NM] = dens.vals.size, dens.m_cols.size
    ud[_UD_NP], ud[_UD_NO], ud[_UD_MASKED] = dens.Vp.shape[1], dens.Op.shape[1], int(dens.masked)
    ud[_UD_SINGLE] = int(single and dens.can_single)
    for i, name in enumerate((*_UD_ARRAYS, "bm1", "scale", "const", "U", "c")):
        ud[_UD_A0 + i] = keep[name].ctypes.data
    ud[_UD_LR_R] = coords.c.size
    logp_fn, expand_fn = _callbacks()
    return CompiledPyMCModel(
        dims={"x": ("x_dim_0",)},
        _n_dim=n_dim,
        _coords={"x_dim_0": np.arange(n_dim)},
        _shapes={"x": (n_dim,)},
        compiled_logp_func=logp_fn,
        compiled_expand_func=expand_fn,
        initial_point_func=lambda seed: y0.copy(),
        shared_data=keep,  # keeps the arrays alive as long as the model
        shared_var_keys={},
        user_data=ud,
        n_expanded=n_dim,
        shape_info=(["x"], [slice(0, n_dim)], [(n_dim,)]),
        logp_func=None,
        expand_func=None,
    )


# warm-up split (tune >= _LEARN_MIN_TUNE): a first stage of tune // 4 tuning steps and
# tune // 2 draws whose spread teaches _learn_long_directions, then the rest of the
# tuning in the new coordinates
_LEARN_MIN_TUNE = 300
_STAGE1 = (4, 2)  # the first stage's divisors of tune: tuning steps, draws
_MAX_RANK = 32
_MIN_VARIANCE = 2.0


def _run_nutpie(
    dens: _Density,
    starts: list[np.ndarray],
    seeds: list[int],
    draws: int,
    tune: int,
    cores: int,
    nuts_kwargs: dict,
    info: dict,
    single: bool = False,
    progress: SamplingProgress | None = None,
    monitor: Any = None,
) -> list[tuple[np.ndarray, np.ndarray, xr.Dataset]]:
    """Run the chains; ``info`` receives the warm-up stages and the learned rank.

    ``monitor`` (a :class:`poisson_nmf.stopping.ConvergenceMonitor`): the kept draws are
    drawn until it says stop (``draws`` is then ignored; see :mod:`poisson_nmf.stopping`).
    """
    # imported here, in the calling thread: nutpie converts each chain's trace with
    # arviz_base, whose first import inside a worker thread inspects the whole deep
    # stack (slow)
    import arviz_base  # noqa: F401
    import nutpie  # noqa: F401

    F, N, K = dens.F, dens.N, dens.K
    nW = F * K
    kw = {"progress_bar": False, "save_warmup": False, **nuts_kwargs}
    beta, scale = _ridge_stretch(dens, starts[0])
    coords = _Coords(F, N, beta, scale, np.zeros((dens.n_dim, 0)), np.zeros(0))
    done = 0  # iterations per chain before the run that keeps its draws
    if tune >= _LEARN_MIN_TUNE:
        t1, d1 = tune // _STAGE1[0], tune // _STAGE1[1]
        ys = [coords.to_y(x0) for x0 in starts]
        model = _compile_nutpie(dens, ys[0], coords, single)
        first = _run_chains(model, ys, seeds, d1, t1, cores, kw, progress, 0, False)
        coords = _learn_long_directions(
            coords, [coords.to_y(x) for x, _ in first], _shear_directions(dens, starts[0])
        )
        starts = [x[-1] for x, _ in first]
        seeds = [(s * 7919 + 1) % (2**31 - 1) for s in seeds]
        tune -= t1 + d1
        done = t1 + d1
        div1 = sum(int(st["diverging"].values.sum()) for _, st in first)
        del first
        info["warmup_stage1"] = {"tune": t1, "draws": d1}
        info["warmup_stage1_divergences"] = div1
    info["long_directions"] = int(coords.c.size)
    info["ridge_beta"] = [round(float(b), 3) for b in coords.beta]
    ys = [coords.to_y(x0) for x0 in starts]
    model = _compile_nutpie(dens, ys[0], coords, single)
    info["kernel"] = "float32" if model.user_data[_UD_SINGLE] else "float64"
    from .adaptation import TargetAcceptSchedule, settle_final_stage
    from .stopping import run_until

    def final(kw: dict, abort: bool) -> list[tuple[np.ndarray, xr.Dataset]]:
        if monitor is None:
            return _run_chains(model, ys, seeds, draws, tune, cores, kw, progress, done, True)
        return run_until(model, ys, seeds, tune, cores, kw, monitor, progress, done,
                         abort_on_divergence=abort)  # fmt: skip

    schedule = TargetAcceptSchedule.from_nuts_kwargs(nuts_kwargs)
    status = progress.status if progress is not None else None
    runs = settle_final_stage(final, kw, schedule, monitor, status)
    info.update(schedule.to_info())
    draws = runs[0][0].shape[0]
    out = []
    for x, st in runs:
        W = np.exp(x[:, :nW]).reshape(draws, F, K)
        H = np.exp(x[:, nW:]).reshape(draws, K, N)
        out.append((W, H, st))
    return out


def _unpack_draws(x: np.ndarray, F: int, N: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws of x = (log W, log H), shape (d, n), as W (d, F, K) and H (d, K, N)."""
    d = x.shape[0]
    return np.exp(x[:, : F * K]).reshape(d, F, K), np.exp(x[:, F * K :]).reshape(d, K, N)


def _run_chains(
    base: Any,
    starts: list[np.ndarray],
    seeds: list[int],
    draws: int,
    tune: int,
    cores: int,
    kw: dict,
    progress: SamplingProgress | None = None,
    done: int = 0,
    keeps: bool = True,
) -> list[tuple[np.ndarray, xr.Dataset]]:
    """Draws of x (draws, n) and sample stats, per chain.

    ``progress`` hears of each chain's iterations, ``done`` of them already run in
    earlier stages; divergences count only in the run that ``keeps`` its draws.

    One nutpie sampler per chain (explicit start and seed), ``cores`` at a time, each
    waited on by its own thread (nutpie's wait releases the GIL), so the next chain
    starts as soon as one finishes. Waiting in threads rather than polling
    ``is_finished`` (which costs CPU on every call) leaves the cores to the chains.
    On an interrupt or error every running sampler is cancelled.
    """
    import nutpie

    live: dict[int, Any] = {}
    lock = threading.Lock()

    def one(c: int) -> tuple[np.ndarray, xr.Dataset]:
        model = replace(base, initial_point_func=lambda seed, y0=starts[c]: y0.copy())
        report = {}
        if progress is not None and progress.active:
            cb = progress.nutpie_callback(c, done, tune if keeps else -1)
            report = {"progress_callback": cb, "progress_rate": 500}
        sampler = nutpie.sample(model, draws=draws, tune=tune, chains=1, cores=1,
                                seed=seeds[c], blocking=False, **report, **kw)  # fmt: skip
        with lock:
            live[c] = sampler
        tr = sampler.wait()
        with lock:
            live.pop(c, None)
        if progress is not None:
            div = int(tr["sample_stats"]["diverging"].values.sum()) if keeps else None
            progress.update(c, done + tune + draws, div)
        x = np.asarray(tr["posterior"]["x"].values[0])  # (draw, n_dim)
        return x, tr["sample_stats"].to_dataset().isel(chain=0, drop=True).load()

    ex = ThreadPoolExecutor(max_workers=max(1, cores))
    try:
        # the chains are the parallelism: BLAS threads would only compete with them
        with threadpool_limits(1):
            return list(ex.map(one, range(len(starts))))
    except BaseException:
        with lock:
            for s in live.values():
                s.cancel()
        raise
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _run_pymc(
    counts: Counts,
    dens: _Density,
    priors: GammaPriors,
    starts: list[np.ndarray],
    seeds: list[int],
    draws: int,
    tune: int,
    cores: int,
    nuts_kwargs: dict,
) -> list[tuple[np.ndarray, np.ndarray, xr.Dataset]]:
    import pymc as pm

    from .model import build_model

    model = build_model(counts, dens.K, priors=priors, likelihood="dense")
    initvals = []
    for x0 in starts:
        W0, H0 = dens.unpack(x0)
        initvals.append({"W": W0, "H": H0})
    with model:
        tr = pm.sample(
            draws=draws, tune=tune, chains=len(starts), cores=cores, random_seed=seeds,
            initvals=initvals, compute_convergence_checks=False,
            **{"progressbar": False, **nuts_kwargs},
        )  # fmt: skip
    post, stats = tr["posterior"], tr["sample_stats"]
    out = []
    for c in range(len(starts)):
        out.append(
            (
                np.asarray(post["W"].values[c], dtype=np.float64),
                np.asarray(post["H"].values[c], dtype=np.float64),
                stats.to_dataset().isel(chain=c, drop=True).load(),
            )
        )
    return out


# ---------------------------------------------------------------------------------------
# modes


@dataclass(frozen=True)
class ModeReport:
    """Which chains sit in which posterior mode.

    Attributes
    ----------
    labels : list of int, length chains
        Mode of each chain; modes are numbered by first appearance, after sorting them
        so that mode 0 is the main one (most chains; ties broken by mean log-likelihood).
    n_modes : int
        Number of distinct modes.
    main_chains : list of int
        Chains in the main mode.
    loglik_mean : list of float
        Mean Poisson log-likelihood of each chain.
    loglik_z : list of list of float
        Pairwise difference of chain means of the log-likelihood, in units of the pooled
        within-chain sd.
    factor_z : list of list of float
        Pairwise distance of the chains' aligned factors: the ``quantile`` (default 0.95)
        over W and H entries of ``|mean_c - mean_d| / sqrt((var_c + var_d) / 2)``.
    thresholds : dict
        ``loglik_z`` and ``factor_z`` above which two chains are in different modes.
    """

    labels: list[int]
    n_modes: int
    main_chains: list[int]
    loglik_mean: list[float]
    loglik_z: list[list[float]]
    factor_z: list[list[float]]
    thresholds: dict

    def __str__(self) -> str:
        if self.n_modes == 1:
            return f"all {len(self.labels)} chains in one mode"
        groups = {m: [c for c, lab in enumerate(self.labels) if lab == m] for m in
                  range(self.n_modes)}  # fmt: skip
        parts = [
            f"mode {m}: chains {g} (mean log-likelihood "
            f"{np.mean([self.loglik_mean[c] for c in g]):.1f})"
            for m, g in groups.items()
        ]
        return f"chains sit in {self.n_modes} modes: " + "; ".join(parts)

    def to_json(self) -> str:
        """Return the report as a JSON string (for ``DataTree.attrs``)."""
        return json.dumps(asdict(self))


def _pairwise_z(mean: np.ndarray, var: np.ndarray, quantile: float) -> np.ndarray:
    C = mean.shape[0]
    out = np.zeros((C, C))
    for c in range(C):
        for d in range(c + 1, C):
            sd = np.sqrt((var[c] + var[d]) / 2.0)
            z = np.abs(mean[c] - mean[d]) / np.where(sd > 0, sd, np.inf)
            out[c, d] = out[d, c] = float(np.quantile(z, quantile))
    return out


def detect_modes(
    idata: xr.DataTree,
    *,
    loglik_threshold: float = 2.0,
    factor_threshold: float = 2.0,
    quantile: float = 0.95,
) -> ModeReport:
    """Group chains by the posterior mode they sit in.

    Two chains are in the same mode when their mean log-likelihoods differ by at most
    ``loglik_threshold`` pooled within-chain sds, and the ``quantile`` of their
    standardised aligned factor-mean differences is at most ``factor_threshold``.
    Chains join the first mode whose first chain they match.

    Parameters
    ----------
    idata : xarray.DataTree
        From :func:`sample_posterior` (``posterior`` W, H aligned; ``sample_stats``
        ``log_likelihood``).
    loglik_threshold, factor_threshold : float
        Thresholds, see above.
    quantile : float
        Quantile over entries of the factor distance (a whole component that differs
        moves far more than 5% of the entries when K <= 20).

    Returns
    -------
    ModeReport
    """
    post = idata["posterior"]
    ll = np.asarray(idata["sample_stats"]["log_likelihood"].values, dtype=np.float64)
    C = ll.shape[0]
    # plain NumPy over the draw axis (xarray's default skipna copies every draw first)
    draws = [post[v].transpose("chain", "draw", ...).values for v in ("W", "H")]
    means = [d.mean(axis=1).reshape(C, -1) for d in draws]
    varis = [d.var(axis=1).reshape(C, -1) for d in draws]
    fz = _pairwise_z(np.concatenate(means, 1), np.concatenate(varis, 1), quantile)
    ll_mean = ll.mean(axis=1)
    pooled = float(np.sqrt(ll.var(axis=1).mean()))
    lz = np.abs(ll_mean[:, None] - ll_mean[None, :]) / (pooled if pooled > 0 else np.inf)
    reps: list[int] = []
    raw = np.empty(C, dtype=int)
    for c in range(C):
        for m, r in enumerate(reps):
            if lz[c, r] <= loglik_threshold and fz[c, r] <= factor_threshold:
                raw[c] = m
                break
        else:
            raw[c] = len(reps)
            reps.append(c)
    n = len(reps)
    size = np.bincount(raw, minlength=n)
    mode_ll = np.array([ll_mean[raw == m].mean() for m in range(n)])
    order = sorted(range(n), key=lambda m: (-size[m], -mode_ll[m]))
    relabel = {m: i for i, m in enumerate(order)}
    labels = [relabel[int(m)] for m in raw]
    return ModeReport(
        labels=labels,
        n_modes=n,
        main_chains=[c for c in range(C) if labels[c] == 0],
        loglik_mean=[float(v) for v in ll_mean],
        loglik_z=lz.round(4).tolist(),
        factor_z=fz.round(4).tolist(),
        thresholds={
            "loglik_z": loglik_threshold,
            "factor_z": factor_threshold,
            "quantile": quantile,
        },  # fmt: skip
    )


def select_chains(idata: xr.DataTree, chains: Sequence[int]) -> xr.DataTree:
    """Keep only some chains in every group that has a ``chain`` dim.

    Parameters
    ----------
    idata : xarray.DataTree
    chains : sequence of int
        Positions of the chains to keep (e.g. ``ModeReport.main_chains``); they are
        renumbered 0, 1, ...

    Returns
    -------
    xarray.DataTree
        A new tree; ``attrs["kept_chains"]`` records the original chain numbers.
    """
    chains = [int(c) for c in chains]
    if not chains:
        raise ValueError("chains must name at least one chain to keep")
    groups = {}
    for name, node in idata.children.items():
        ds = node.to_dataset()
        if "chain" in ds.dims:
            ds = ds.isel(chain=chains).assign_coords(chain=np.arange(len(chains)))
        groups[name] = ds
    out = xr.DataTree.from_dict(groups)
    out.attrs = {**idata.attrs, "kept_chains": json.dumps(chains)}
    return out


# ---------------------------------------------------------------------------------------
# pointwise groups


# sparse input with more observed entries than this keeps its pointwise groups on an
# `entry` dim: every non-zero, and a fixed random subsample of the zeros with a weight
_ZERO_SUBSAMPLE_ABOVE = 200_000
_ZERO_SUBSAMPLE_MIN = 50_000
_ZERO_SUBSAMPLE_SEED = 1618


def _pointwise_entries(counts: Counts) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Entries of the pointwise groups of large sparse input, with their weights.

    Returns None (every observed entry, the dense layout) unless V is sparse with more
    than ``_ZERO_SUBSAMPLE_ABOVE`` observed entries. Then: every observed non-zero
    (weight 1) and m = max(nnz, 50 000) observed zeros drawn uniformly without
    replacement with a fixed seed (weight n_zero / m), so that a weighted sum over the
    entries is an unbiased estimate of the sum over all observed entries (stratified
    sampling: the non-zeros exactly, the zeros by their sample). Never an F x N array.
    """
    if not counts.is_sparse or counts.n_observed <= _ZERO_SUBSAMPLE_ABOVE:
        return None
    F, N = counts.shape
    nz = np.ravel_multi_index((counts.nz_rows, counts.nz_cols), (F, N))
    taken = np.union1d(nz, np.ravel_multi_index((counts.missing_rows, counts.missing_cols), (F, N)))
    n_zero = F * N - taken.size
    m = min(n_zero, max(nz.size, _ZERO_SUBSAMPLE_MIN))
    rng = np.random.default_rng(_ZERO_SUBSAMPLE_SEED)
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


def _pointwise(
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
    run in. With ``entries`` (rows and columns, from :func:`_pointwise_entries`) only
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
            return np.einsum("dek,dke->de", W[ch, idx][:, r, :], H[ch, idx][:, :, c])
        lam = np.matmul(W[ch, idx], H[ch, idx])  # (d, F, N)
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


# ---------------------------------------------------------------------------------------
# the public entry point


def _replay_seed(random_seed: Any) -> int | None:
    """Return the int seed a run can be replayed from: the seed, or a fresh one for None."""
    if isinstance(random_seed, int | np.integer) and not isinstance(random_seed, bool):
        return int(random_seed)
    if random_seed is None:
        return int(np.random.SeedSequence().generate_state(2, np.uint32).view(np.uint64)[0] >> 1)
    return None  # a Generator or SeedSequence: not replayable


def _stopping_rule(
    draws: int | None,
    sampler: str,
    target_rhat: Any,
    target_ess: Any,
    max_draws: Any,
    max_time: Any,
    chains: int,
) -> Any:
    """Return the stopping rule of ``draws=None`` (None for an explicit number of draws)."""
    from .stopping import StoppingRule, check_rule_args

    check_rule_args(target_rhat, target_ess, max_draws, max_time)
    if draws is not None:
        return None
    if sampler != "nutpie":
        raise ValueError(
            "draws=None (sample until clean) needs sampler='nutpie'; give sampler='pymc' "
            "an explicit number of draws"
        )
    return StoppingRule(
        float(target_rhat), float(target_ess), int(chains), int(max_draws),
        None if max_time is None else float(max_time),
    )  # fmt: skip


def _stopping_record(monitor: Any, draws: int, resumed_from: int | None) -> str:
    from .stopping import fixed_record

    if monitor is None:
        return fixed_record(draws, resumed_from)
    return str(monitor.record(draws, resumed_from))


def _seed_repr(random_seed: Any) -> Any:
    if random_seed is None or isinstance(random_seed, int | np.integer):
        return None if random_seed is None else int(random_seed)
    return repr(random_seed)


def sample_posterior(
    V: Any,
    n_components: int,
    *,
    priors: GammaPriors = _DEFAULT_PRIORS,
    method: Literal["nuts", "vi"] = "nuts",
    draws: int | None = None,
    tune: int = 1000,
    chains: int = 4,
    target_rhat: float = 1.01,
    target_ess: float = 400,
    max_draws: int = _MAX_DRAWS,
    max_time: float | None = None,
    resume: xr.DataTree | None = None,
    cores: int | None = None,
    random_seed: Any = None,
    sampler: Literal["nutpie", "pymc"] = "nutpie",
    precision: Literal["single", "double"] = "single",
    normalize: Normalize = "W",
    init: Any = "map",
    jitter: float = 0.05,
    mask: Any = None,
    keep: Literal["all", "main"] | Sequence[int] = "all",
    pointwise_draws: int | None = 500,
    max_memory: Any = DEFAULT_MAX_MEMORY,
    map_kwargs: dict | None = None,
    nuts_kwargs: dict | None = None,
    progress: ProgressArg = None,
) -> xr.DataTree:
    """Sample the posterior of W and H, normalised and aligned to the MAP.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`.
    n_components : int
        K.
    priors : GammaPriors
        Gamma priors on W and H (flat priors give an improper posterior and are
        refused).
    method : {"nuts", "vi"}
        ``"nuts"``: exact draws (everything below). ``"vi"``: draws from a mean-field
        variational approximation (:func:`poisson_nmf.sample_vi`, which takes its own
        settings: ``restarts``, ``max_iter``, ``tol``, ``psis_draws``); it uses
        ``priors``, ``draws`` (default: 1000 or fewer, see there), ``random_seed``,
        ``normalize``, ``mask`` and ``pointwise_draws``, and refuses any argument that
        only means something for NUTS when it is set.
    draws : int or None
        ``None`` (default): draw until clean (every entry of W and H meets
        ``target_rhat`` and ``target_ess``) or until ``max_draws`` (or ``max_time``),
        checked every 500 draws per chain; the same chains go on, without a new
        warm-up (:mod:`poisson_nmf.stopping`). An int: exactly that many draws per chain.
        ``attrs["stopping"]`` says which, and why the run stopped.
    tune, chains : int
        Tuning steps per chain, and the number of chains.
    target_rhat, target_ess : float
        The stopping rule (``draws=None``): rank-normalised R-hat at most
        ``target_rhat`` and bulk and tail ESS at least ``max(target_ess, 100 x chains)``
        on every entry, as :func:`poisson_nmf.diagnose` checks them.
    max_draws : int
        Budget of draws per chain with ``draws=None`` (default 4000): reproducible, and
        what memory is planned for (nutpie keeps chains x max_draws x (F + N) K
        values of 8 bytes).
    max_time : float, optional
        Seconds of sampling after which the run stops at its next check, clean or not
        (``draws=None``). Opt-in: the draws kept then depend on the machine's speed.
    resume : xarray.DataTree, optional
        A run of ``sample_posterior`` (or :func:`poisson_nmf.load_fit`) to go on from,
        on the same ``V`` and ``n_components``: its settings (priors, tune, chains, seed,
        ...) are used, its chains continued to ``max_draws`` (or ``draws``, which must
        exceed the draws it holds). nutpie cannot start a chain from a stored step size
        and mass matrix, so the chains are replayed from the stored seed (the warm-up
        and the draws held are computed again, exactly, and compared with the stored
        ones: a :class:`UserWarning` if they differ) and go on from there. It costs
        the first run's time again; no new warm-up enters the draws. Needs a run seeded
        with an int or ``None`` (``settings["replay_seed"]``) and started at
        ``init="map"`` or ``"restarts"``.
    cores : int, optional
        Chains run at the same time (default: ``min(chains, os.cpu_count())``).
    random_seed : int, numpy.random.Generator or None
        Seeds the MAP, the jitter of the starts, the samplers (one spawned seed per
        chain) and the posterior predictive draws.
    sampler : {"nutpie", "pymc"}
        ``"nutpie"``: the Numba log density with nutpie's NUTS (default, fast);
        ``"pymc"``: ``pm.sample`` on :func:`poisson_nmf.model.build_model`.
    precision : {"single", "double"}
        Arithmetic of the dense likelihood kernel inside the sampler (nutpie only).
        ``"single"`` (default): rates, logs and their gradient in float32 (eight
        lanes per AVX2 instruction rather than four); each row's sum is in float32 and
        the total in float64.
        Against float64 the log density differs by about 1e-8 relative (1e-3 on all
        digits, whose log density is 7e5), below any Monte Carlo error: a density
        perturbed by a factor within exp(+-0.004) moves posterior expectations by
        under 1 %, and the rounding is unrelated to the quantities of interest. The
        gradient is within 1e-6 relative; NUTS stays exact for its own target with
        any gradient, so that costs nothing in correctness. Sparse counts (fill
        below a fifth) and counts above 2^24 always use float64. ``"double"``:
        float64 throughout. The pointwise groups and :func:`log_density` are float64
        either way; ``sample_stats.lp`` and ``sample_stats.log_likelihood`` (lp less
        the log prior) are the sampler's own values.
    normalize : {"W", "H"}
        ``"W"``: each column of W sums to one and H carries the scale (W is then a
        distribution over rows, H the amount of each component); ``"H"``: each row of
        H sums to one and W carries the scale.
    init : "map", "restarts" or sequence of (W, H)
        ``"map"``: every chain starts at one MAP (jittered), the best of
        ``_MAP_RESTARTS`` = 4 fits from random starts (lowest objective: the highest
        posterior density found; single fits land in different local optima).
        ``"restarts"``: each chain at the MAP of its own random start, which may be a
        different local mode (to explore modes); the alignment reference is the best of
        them. A sequence of ``chains`` pairs (W (F, K), H (K, N)) gives the starts; the
        reference is then the MAP from the first.
    jitter : float
        Sd of the log-normal jitter of each start entry.
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries.
    keep : "all", "main" or sequence of int
        Chains to keep after mode detection: all (default), those in the main mode,
        or the given chain positions.
    pointwise_draws : int or None
        Most draws in all for ``log_likelihood`` and ``posterior_predictive``
        (thinned evenly within chains); ``None`` keeps all, ``0`` leaves them out.
    max_memory : str, int or None
        Budget for everything the run stores and computes afterwards (default "4GB";
        None: no limit), planned before sampling by :func:`poisson_nmf.memory.plan_memory`:
        past it the pointwise groups are thinned or left out with a
        :class:`~poisson_nmf.memory.MemoryBudgetWarning` giving the sizes, or, when the
        counts and the draws of W and H alone do not fit, a ``ValueError`` names the
        settings to change before anything is sampled.
    map_kwargs : dict, optional
        Passed to :func:`poisson_nmf.kl_nmf` (default ``max_iter=1000, tol=1e-6``, and
        ``n_restarts=4`` with ``init="map"``, 1 with ``init="restarts"``).
    nuts_kwargs : dict, optional
        Passed to ``nutpie.sample`` (e.g. ``adaptation="low_rank"``,
        ``target_accept``) or to ``pm.sample``.
    progress : bool, None or callable
        Progress of the sampling: iterations (tuning and draws) over all chains and
        the divergences among the kept draws, then the post-processing step. ``None``
        (default): a bar on stderr when stderr is a terminal or a Jupyter kernel's
        output (so not in logs or tests); ``True``: the bar always; ``False``:
        nothing; a callable gets each new status as one line of text. With
        ``sampler="pymc"`` a bar is PyMC's own.

    Returns
    -------
    xarray.DataTree
        ``posterior``: ``W`` (chain, draw, row, component), ``H`` (chain, draw,
        component, column), normalised and aligned; ``sample_stats``: the sampler's
        statistics (``diverging``, ``energy``, ``step_size``, ``n_steps``, ``lp``, ...)
        plus ``log_likelihood`` (total Poisson log-likelihood), ``permutation``
        (chain, draw, component: the sampled component matched to each aligned one) and
        ``scale``; ``log_likelihood`` and ``posterior_predictive``: ``V`` per observed
        entry (dims (chain, draw, row, column), or (chain, draw, entry) with a mask),
        thinned; ``observed_data``: ``V``; ``reference``: the normalised MAP ``W``,
        ``H``. ``attrs``: ``settings`` (JSON, with the seed), ``modes`` (JSON of
        :class:`ModeReport`), ``normalize``, ``sampling_time_s``, ``total_time_s``,
        ``map_objective``, ``sampler`` (JSON: the warm-up's first stage, the number of
        long directions learned, the ridge factors), ``stopping`` (JSON: ``rule``
        ``"until_clean"`` or ``"fixed"``, the thresholds, ``reason`` ``"clean"``,
        ``"max_draws"``, ``"max_time"`` or ``"fixed"``, ``draws_per_chain``,
        ``resumed_from`` and each check's slowest entry).

    Warns
    -----
    MultipleModesWarning
        When the chains sit in more than one mode (see :func:`detect_modes`).
    """
    if method != "nuts":
        args = dict(locals())  # the arguments alone: first thing in the function
        from .vi import _from_sample_posterior

        return _from_sample_posterior(args)
    t_start = time.perf_counter()
    counts = as_counts(V, mask=mask)
    K = check_n_components(n_components, counts)
    resumed_from = None
    if resume is not None:
        from .stopping import resume_settings

        rs = resume_settings(resume, counts, K, map_kwargs=map_kwargs, nuts_kwargs=nuts_kwargs)
        priors, tune, chains, sampler = rs.priors, rs.tune, rs.chains, rs.sampler
        precision = rs.precision
        normalize, init, jitter, random_seed = rs.normalize, rs.init, rs.jitter, rs.seed
        resumed_from = rs.draws
        if (draws if draws is not None else max_draws) <= resumed_from:
            raise ValueError(
                f"resume holds {resumed_from} draws per chain: pass a larger "
                f"{'draws' if draws is not None else 'max_draws'} to continue it"
            )
    priors = _check_priors(priors)
    _check_normalize(normalize)
    for name, val in (("draws", draws), ("tune", tune), ("chains", chains)):
        if name == "draws" and val is None:
            continue
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    if sampler not in ("nutpie", "pymc"):
        raise ValueError(f"sampler must be 'nutpie' or 'pymc', got {sampler!r}")
    rule = _stopping_rule(draws, sampler, target_rhat, target_ess, max_draws, max_time, chains)
    if rule is not None:
        rule = replace(rule, start=resumed_from or 0)
        draws = rule.max_draws  # the most it can be, for the progress bar
    if precision not in ("single", "double"):
        raise ValueError(f"precision must be 'single' or 'double', got {precision!r}")
    if isinstance(keep, str) and keep not in ("all", "main"):
        raise ValueError(f"keep must be 'all', 'main' or a sequence of chains, got {keep!r}")
    if pointwise_draws is not None and (
        not isinstance(pointwise_draws, int | np.integer) or pointwise_draws < 0
    ):
        raise ValueError(
            f"pointwise_draws must be None or an integer >= 0, got {pointwise_draws!r}"
        )
    cores = min(chains, os.cpu_count() or 1) if cores is None else int(cores)
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    map_kwargs = dict(map_kwargs or {})
    nuts_kwargs = dict(nuts_kwargs or {})
    F, N = counts.shape
    assert draws is not None
    if rule is not None:
        # draw until clean within the memory budget: a budget of draws that the budget
        # cannot hold is lowered to what it can (a warning says so); too few to check
        # even once is refused below by plan_memory, with the sizes
        fit = draws_within(
            F, N, K, chains=chains, nnz=int(counts.nz_values.size), dense=_use_dense(counts),
            max_memory=max_memory,
        )  # fmt: skip
        if fit is not None and rule.start + rule.check_every <= fit < rule.max_draws:
            warnings.warn(
                f"max_draws = {rule.max_draws} per chain does not fit in max_memory = "
                f"{max_memory}: the run stops at {fit} draws per chain at most (raise "
                "max_memory, command line --max-memory, to allow more)",
                MemoryBudgetWarning,
                stacklevel=2,
            )
            rule = replace(rule, max_draws=fit)
            draws = fit
    n_req = draws * chains if pointwise_draws is None else min(pointwise_draws, draws * chains)
    pw_entries = _pointwise_entries(counts) if n_req else None
    mem = plan_memory(
        F, N, K, chains=chains, draws=draws,
        n_observed=counts.n_observed if pw_entries is None else pw_entries[0].size,
        nnz=int(counts.nz_values.size), dense=_use_dense(counts), pointwise_draws=n_req,
        max_memory=max_memory,
    )  # fmt: skip
    if mem.pointwise_draws < n_req:
        warnings.warn(thinning_message(mem), MemoryBudgetWarning, stacklevel=2)
    with SamplingProgress(progress, chains, tune + draws) as bar:
        if sampler == "nutpie":
            bar.phase("loading the compiled sampler (compiling it on the first run)")
            _callbacks()  # first: on a cache miss, compiled in another process (precompile)

        replay_seed = _replay_seed(random_seed)
        rng = np.random.default_rng(random_seed if replay_seed is None else replay_seed)
        rng_map, rng_jit, rng_chain, rng_pp = rng.spawn(4)
        seeds = [int(s) for s in rng_chain.integers(0, 2**31 - 1, size=chains)]
        dens = _Density.build(counts, K, priors)

        # starting points and the reference
        bar.phase("MAP starting point")
        pairs: list[tuple[np.ndarray, np.ndarray]]
        if isinstance(init, str) and init == "map":
            W_ref, H_ref, obj = _map_start(counts, K, priors, rng_map, map_kwargs, _MAP_RESTARTS)
            pairs = [(W_ref, H_ref)] * chains
        elif isinstance(init, str) and init == "restarts":
            fits = [_map_start(counts, K, priors, r, map_kwargs) for r in rng_map.spawn(chains)]
            pairs = [(f[0], f[1]) for f in fits]
            best = int(np.argmin([f[2] for f in fits]))
            W_ref, H_ref, obj = fits[best]
        elif isinstance(init, Sequence) and not isinstance(init, str):
            if len(init) != chains:
                raise ValueError(f"init has {len(init)} (W, H) pairs but chains={chains}")
            pairs = []
            for i, p in enumerate(init):
                Wi, Hi = (np.asarray(a, dtype=np.float64) for a in p)
                if Wi.shape != (F, K) or Hi.shape != (K, N) or (Wi < 0).any() or (Hi < 0).any():
                    raise ValueError(
                        f"init[{i}] must be non-negative (W, H) of shapes {(F, K)}, {(K, N)}"
                    )
                pairs.append((Wi, Hi))
            W_ref, H_ref = pairs[0]
            obj = float("nan")
        else:
            raise ValueError(
                f"init must be 'map', 'restarts' or a sequence of (W, H), got {init!r}"
            )
        starts = []
        for W0, H0 in pairs:
            Wf, Hf = _fill_zeros(counts, W0, H0, dens)
            x0 = dens.pack(Wf, Hf)
            starts.append(x0 + jitter * rng_jit.standard_normal(x0.size))

        t_sample = time.perf_counter()
        bar.phase("sampling")
        sampler_info: dict[str, Any] = {}
        monitor = None
        if rule is not None:
            from .stopping import ConvergenceMonitor

            mcoords = {"row": counts.row, "column": counts.column, "component": np.arange(K)}
            unpack = functools.partial(_unpack_draws, F=F, N=N, K=K)
            monitor = ConvergenceMonitor(rule, unpack, W_ref, H_ref, normalize, mcoords, bar.status)
        if sampler == "nutpie":
            runs = _run_nutpie(
                dens, starts, seeds, draws, tune, cores, nuts_kwargs, sampler_info,
                single=precision == "single", progress=bar, monitor=monitor,
            )  # fmt: skip
            draws = runs[0][0].shape[0]
        else:
            kw = {"progressbar": bar.shows_bar, **nuts_kwargs}
            runs = _run_pymc(counts, dens, priors, starts, seeds, draws, tune, cores, kw)
            for c, (_, _, st) in enumerate(runs):
                bar.update(c, tune + draws, int(st["diverging"].values.sum()))
        sampling_time = time.perf_counter() - t_sample
        bar.phase("aligning the draws")

        # align chain by chain (bounded memory), total log-likelihood per draw
        Wa = np.empty((chains, draws, F, K))
        Ha = np.empty((chains, draws, K, N))
        perm = np.empty((chains, draws, K), dtype=np.int64)
        scale = np.empty((chains, draws, K))
        loglik = np.empty((chains, draws))
        stats = []
        g = np.empty(dens.n_dim)
        for c in range(chains):
            W, H, st = runs[c]
            runs[c] = None  # type: ignore[call-overload]
            lp_name = "logp" if "logp" in st else ("lp" if "lp" in st else None)
            if lp_name is not None:
                # log-likelihood = log density - log prior (with Jacobian), both exact
                loglik[c] = np.asarray(st[lp_name].values, dtype=np.float64) - dens.log_prior(W, H)
            else:
                for d in range(draws):
                    loglik[c, d] = dens(dens.pack(W[d], H[d]), g, with_prior=False)
            al = align_factors(W, H, W_ref, H_ref, normalize=normalize)
            Wa[c], Ha[c], perm[c], scale[c] = al.W, al.H, al.permutation, al.scale
            del W, H, al
            stats.append(st)
        ref = align_factors(W_ref, H_ref, W_ref, H_ref, normalize=normalize)

        coords = {"row": counts.row, "column": counts.column, "component": np.arange(K)}
        sc = {"chain": np.arange(chains), "draw": np.arange(draws)}
        posterior = xr.Dataset(
            {
                "W": (("chain", "draw", "row", "component"), Wa),
                "H": (("chain", "draw", "component", "column"), Ha),
            },
            coords={**sc, **coords},
        )
        ss = xr.concat(stats, dim="chain").assign_coords(sc)
        ss = ss.drop_vars([v for v in ss.data_vars if ss[v].dtype == object])
        if "logp" in ss and "lp" not in ss:
            ss["lp"] = ss["logp"]
        if "depth" in ss and "tree_depth" not in ss:
            ss["tree_depth"] = ss["depth"]
        ss["log_likelihood"] = (("chain", "draw"), loglik)
        ss["permutation"] = (("chain", "draw", "component"), perm)
        ss["scale"] = (("chain", "draw", "component"), scale)
        ss = ss.assign_coords(component=np.arange(K))
        groups: dict[str, xr.Dataset] = {"posterior": posterior, "sample_stats": ss}
        groups["reference"] = xr.Dataset(
            {"W": (("row", "component"), ref.W), "H": (("component", "column"), ref.H)},
            coords=coords,
        )
        groups["observed_data"] = xr.Dataset(
            {"V": counts.to_dataarray()}, coords={"row": counts.row, "column": counts.column}
        )
        if counts.has_mask:
            groups["observed_data"]["mask"] = (("row", "column"), ~counts.observed())

        n_pw = mem.pointwise_draws
        if n_pw > 0:
            bar.phase("pointwise log-likelihood and predictive draws")
            per_chain = max(1, n_pw // chains)
            draw_idx = np.unique(np.linspace(0, draws - 1, per_chain).round().astype(int))
            ent = None if pw_entries is None else pw_entries[:2]
            ll_pw, pp = _pointwise(counts, Wa, Ha, draw_idx, rng_pp, cores, mem.chunk_draws, ent)
            pc: dict[str, Any] = {"chain": np.arange(chains), "draw": draw_idx}
            dims: tuple[str, ...]
            if pw_entries is not None:
                r, cc, wt = pw_entries
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

        tree = xr.DataTree.from_dict(groups)
        bar.phase("checking the chains' modes")
        modes = detect_modes(tree)
        if modes.n_modes > 1:
            warnings.warn(
                f"{modes}. Each mode is a local posterior mode of NMF; keep='main' (or "
                "select_chains) keeps one, and init='restarts' explores them",
                MultipleModesWarning,
                stacklevel=2,
            )
        settings = {
            "n_components": K,
            "priors": {k: np.asarray(v).tolist() for k, v in asdict(priors).items()},
            "draws": int(draws),
            "tune": int(tune),
            "chains": int(chains),
            "cores": cores,
            "sampler": sampler,
            "precision": precision,
            "normalize": normalize,
            "init": init if isinstance(init, str) else "explicit",
            "jitter": jitter,
            "keep": keep if isinstance(keep, str) else [int(c) for c in keep],
            "pointwise_draws": pointwise_draws,
            "max_memory": repr(max_memory),
            "memory": mem.to_dict(),
            "random_seed": _seed_repr(random_seed),
            "replay_seed": replay_seed,
            "chain_seeds": seeds,
            "map_kwargs": {k: repr(v) for k, v in map_kwargs.items()},
            "nuts_kwargs": {k: repr(v) for k, v in nuts_kwargs.items()},
        }
        from . import __version__

        tree.attrs = {
            "settings": json.dumps(settings),
            "modes": modes.to_json(),
            "normalize": normalize,
            "map_objective": obj,
            "sampling_time_s": sampling_time,
            "sampler": json.dumps(sampler_info),
            "stopping": _stopping_record(monitor, draws, resumed_from),
            "inference_library": sampler,
            "poisson_nmf_version": __version__,
        }
        if keep == "main":
            tree = select_chains(tree, modes.main_chains)
        elif not isinstance(keep, str):
            tree = select_chains(tree, keep)
        tree.attrs["total_time_s"] = time.perf_counter() - t_start
        if resume is not None:
            from .stopping import check_replay

            check_replay(resume, tree)
        return tree


def posterior_summary(
    idata: xr.DataTree,
    *,
    var_names: Sequence[str] | None = None,
    ci_prob: float = 0.94,
    diagnostics: bool = True,
) -> pd.DataFrame:
    """Posterior mean, sd and equal-tailed credible interval of each W and H entry.

    Parameters
    ----------
    idata : xarray.DataTree
        From :func:`sample_posterior`.
    var_names : sequence of str, optional
        Variables of the posterior to summarise; default: those of W and H it has (H
        alone for the loadings of :func:`poisson_nmf.fit_loadings`).
    ci_prob : float
        Probability mass of the central interval.
    diagnostics : bool
        Add rank-normalised ``r_hat``, ``ess_bulk`` and ``ess_tail`` (arviz_stats).

    Returns
    -------
    pandas.DataFrame
        One row per entry, with columns ``variable``, the coordinates (``row``,
        ``column``, ``component``; absent ones NA), ``mean``, ``sd``,
        ``lower``, ``upper`` (and the diagnostics).
    """
    if not 0 < ci_prob < 1:
        raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
    post = idata["posterior"].to_dataset()
    if var_names is None:
        var_names = [v for v in ("W", "H") if v in post]
    # one draw (a point estimate, fit_loadings(method="map")): no sd, interval or diagnostics
    point = post.sizes["chain"] * post.sizes["draw"] == 1
    diagnostics = diagnostics and not point
    q = [(1 - ci_prob) / 2, (1 + ci_prob) / 2]
    frames = []
    for name in var_names:
        if name not in post:
            raise ValueError(f"{name!r} is not in the posterior (has {list(post.data_vars)})")
        da = post[name]
        cols = {
            "mean": da.mean(_SAMPLE_DIMS),
            "sd": (
                da.std(_SAMPLE_DIMS, ddof=1)
                if not point
                else xr.full_like(da.isel(chain=0, draw=0, drop=True), np.nan, dtype=float)
            ),
            "lower": da.quantile(q[0], _SAMPLE_DIMS).drop_vars("quantile"),
            "upper": da.quantile(q[1], _SAMPLE_DIMS).drop_vars("quantile"),
        }
        if diagnostics:
            import arviz_stats as azs

            one = xr.Dataset({name: da})
            cols["r_hat"] = azs.rhat(one)[name]
            cols["ess_bulk"] = azs.ess(one, method="bulk")[name]
            cols["ess_tail"] = azs.ess(one, method="tail")[name]
        df = xr.Dataset(cols).to_dataframe().reset_index()
        df.insert(0, "variable", name)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    lead = ["variable", *[c for c in ("row", "component", "column") if c in out]]
    rest = [c for c in out.columns if c not in lead]
    return out[lead + rest]
