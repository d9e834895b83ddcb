r"""Reference KL-NMF solvers: plain and Gamma-penalised (MAP), dense, sparse or masked.

Minimise, over W (F x K) >= 0 and H (K x N) >= 0, with Λ = WH and the sums over the
observed (unmasked) entries,

.. math::

    J(W, H) = D(V \| WH)
            + \sum_{fk} [b^w_{fk} w_{fk} - (a^w_{fk} - 1) \log w_{fk}]
            + \sum_{kn} [b^h_{kn} h_{kn} - (a^h_{kn} - 1) \log h_{kn}],

the negative log-posterior of V ~ Poisson(WH) with Gamma(a, b) priors, up to a
constant; with ``priors=None`` the penalty is absent and J is the generalised KL
divergence (maximum likelihood).

Two methods, the same objective:

``method="cd"`` (default): cyclic coordinate descent with scalar Newton steps
(Hsieh & Dhillon 2011; one of the KL-NMF methods compared by Hien & Gillis 2021),
compiled with numba. W is updated row by row (rows are independent given H), each
row one coordinate at a time, then H column by column. For one coordinate w = w_fk,
with λ_n the current rate at the observed non-zeros v_n of row f, h_n = h_kn and
s_k = Σ_{n observed} h_kn,

.. math::

    g'(w)  = s_k + b - (a - 1)/w - \sum_n v_n h_n / λ_n,
    \qquad
    g''(w) = (a - 1)/w^2 + \sum_n v_n h_n^2 / λ_n^2,

    w \leftarrow \max(0, w - g'(w) / g''(w)),

and λ_n ← λ_n + Δw h_n. The sums run over the non-zeros only (zeros of V enter
through s_k alone), so one iteration costs O(nnz K) and sparse V is never densified.
g' is concave (g''' <= 0), so a Newton step to the right never overshoots the
minimiser; a step to the left is accepted only if the chord bound
Δg <= Δw (g'(w) + g'(w_new)) / 2 <= 0 certifies a decrease, and is halved otherwise.
Every coordinate step therefore decreases J, and an exact stationary point (g' = 0,
or w = 0 with g' >= 0) does not move. Unlike multiplicative updates, a coordinate at 0
leaves 0 when its gradient is negative (no zero-lock). With shape a > 1 the log term
keeps w > 0 (a step past 0 is replaced by halving w).

Between sweeps the iterates are extrapolated (Ang & Gillis 2019):
W^ = max(W_t + β (W_t - W_{t-1}), W_t / 2) (likewise H), and the next sweep starts
from (W^, H^). If it ends above J(W_t, H_t), it is discarded (it still counts as an
iteration, with J unchanged), the next sweep starts from (W_t, H_t) and β shrinks
(β ← β/2, its cap ← β); otherwise β grows (β ← min(cap, 1.1 β), cap ← min(1, 1.02 cap)).
The recorded objective never increases. The floor W_t / 2 keeps zeros at zero and
WH > 0 wherever it was. On the digits this cuts the sweeps needed by an order of
magnitude: plain CD drifts slowly along a flat valley, as multiplicative updates do.

``method="mu"``: the multiplicative updates of Lee & Seung (2001), with the Gamma
prior terms of the majorisation-minimisation form (Cemgil 2009; Févotte & Cemgil
2009), Λ = WH and R = V / Λ at the observed non-zeros,

.. math::

    W \leftarrow \frac{W \odot (R H^T) + (a^w - 1)}{M H^T + b^w}, \qquad
    H \leftarrow \frac{H \odot (W^T R) + (a^h - 1)}{W^T M + b^h},

with M the indicator of the observed entries (all ones without a mask). Each update
minimises an auxiliary function, so J never increases either; it is the textbook
baseline, slow to converge, and an entry at exactly 0 stays 0 (zero-lock), which is
why starts are drawn strictly positive.

Convergence: both methods stop when the decrease of J over one iteration is at most
``tol * max(|J|, 1)`` (a relative decrease; J is a sum of per-count terms, so 1 is the
scale of one count), and warn with :class:`ConvergenceWarning` when ``max_iter`` runs
out first.

References
----------
- D. D. Lee and H. S. Seung, "Learning the parts of objects by non-negative matrix
  factorization", Nature 401 (1999); "Algorithms for non-negative matrix
  factorization", NIPS 13 (2001).
- C.-J. Hsieh and I. S. Dhillon, "Fast coordinate descent methods with variable
  selection for non-negative matrix factorization", KDD (2011).
- A. M. S. Ang and N. Gillis, "Accelerating nonnegative matrix factorization
  algorithms using extrapolation", Neural Comput. 31 (2019).
- L. T. K. Hien and N. Gillis, "Algorithms for nonnegative matrix factorization with
  the Kullback-Leibler divergence", J. Sci. Comput. 87 (2021).
- A. T. Cemgil, "Bayesian inference for nonnegative matrix factorisation models",
  Comput. Intell. Neurosci. (2009).
- C. Févotte and A. T. Cemgil, "Nonnegative matrix factorisations as probabilistic
  inference in composite models", EUSIPCO (2009).
"""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numba
import numpy as np
import scipy.sparse as sp
from scipy.special import rel_entr

from .data import Counts, as_counts, check_n_components
from .divergence import kl_divergence, rate_terms
from .priors import GammaPriors

__all__ = ["ConvergenceWarning", "KLResult", "fit_h", "initial_factors", "kl_nmf"]

_METHODS = ("cd", "mu")
# a denominator that is exactly 0 only multiplies a numerator that is exactly 0
_TINY = 1e-300
# re-association only (vectorised sums); inf and NaN keep their IEEE meaning
_FASTMATH = {"reassoc", "contract"}
# extrapolation of the CD iterates (Ang & Gillis 2019): initial, growth, cap growth, decay
_BETA0, _GAMMA, _GAMMA_MAX, _ETA = 0.5, 1.1, 1.02, 2.0
# Newton steps per coordinate and sweep (each costs one pass over the row's non-zeros)
_N_NEWTON = 3


class ConvergenceWarning(UserWarning):
    """The iteration budget ran out before the objective stopped decreasing."""


@dataclass(frozen=True, slots=True)
class KLResult:
    """A KL-NMF (or MAP) fit.

    Attributes
    ----------
    W : numpy.ndarray, shape (F, K)
        Non-negative factor, dims ``("row", "component")``.
    H : numpy.ndarray, shape (K, N)
        Non-negative factor, dims ``("component", "column")``.
    objective : float
        D(V || WH) over the observed entries, plus ``priors.penalty(W, H)`` when priors
        are given; computed with :func:`poisson_nmf.kl_divergence`.
    n_iter : int
        Iterations run (of the best restart).
    converged : bool
        Whether the relative decrease fell below ``tol`` before ``max_iter``.
    history : numpy.ndarray, shape (n_iter,)
        The objective after each iteration.
    method : str
        ``"cd"`` or ``"mu"``.
    """

    W: np.ndarray
    H: np.ndarray
    objective: float
    n_iter: int
    converged: bool
    history: np.ndarray = field(repr=False)
    method: str = "cd"


def _initial(counts: Counts, K: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    F, N = counts.shape
    scale = math.sqrt(counts.total / counts.n_observed / K)
    # uniform on [0.25, 1.75] x scale: strictly positive (no zero-lock), E[WH] = mean(V)
    W = scale * rng.uniform(0.25, 1.75, size=(F, K))
    H = scale * rng.uniform(0.25, 1.75, size=(K, N))
    return W, H


def initial_factors(
    V: Any, n_components: int, *, mask: Any = None, random_seed: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the seeded random start that :func:`kl_nmf` uses.

    Entries are ``sqrt(mean(V) / K) * Uniform(0.25, 1.75)``, strictly positive, so
    that E[WH] equals the mean of the observed counts.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`.
    n_components : int
        K.
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries, left out of the mean.
    random_seed : int, numpy.random.Generator or None
        Seed; ``kl_nmf(V, K, random_seed=s)`` starts from
        ``initial_factors(V, K, random_seed=s)``.

    Returns
    -------
    W0 : numpy.ndarray, shape (F, K)
    H0 : numpy.ndarray, shape (K, N)
    """
    counts = as_counts(V, mask=mask)
    K = check_n_components(n_components, counts)
    return _initial(counts, K, np.random.default_rng(random_seed))


def _check_init(
    init: Any, counts: Counts, K: int, am1_w: np.ndarray, am1_h: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    F, N = counts.shape
    if not isinstance(init, tuple | list) or len(init) != 2:
        raise TypeError(
            f"init must be None or a pair (W0, H0), got {type(init).__name__}; "
            "pass init=(W0, H0) with W0 of shape (F, K) and H0 of shape (K, N)"
        )
    out = []
    for name, x, shape in (("W0", init[0], (F, K)), ("H0", init[1], (K, N))):
        a = np.array(x.values if hasattr(x, "dims") else x, dtype=np.float64)
        if a.shape != shape:
            raise ValueError(
                f"init {name} has shape {a.shape} but must have shape {shape} "
                f"(F, N = {F}, {N}; K = {K})"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"init {name} contains NaN or inf; starting factors must be finite")
        if (a < 0).any():
            raise ValueError(
                f"init {name} contains negative values; starting factors must be non-negative"
            )
        out.append(a)
    W, H = out
    for name, a, am1 in (("W0", W, am1_w), ("H0", H, am1_h)):
        if ((a == 0) & (am1 > 0)).any():
            raise ValueError(
                f"init {name} has zeros where the prior shape is > 1 (the penalty is "
                "infinite there); start from strictly positive factors"
            )
    return W, H


def _csr_parts(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int) -> tuple[Any, ...]:
    """(indptr, indices, values) of the entries grouped by ``rows``, a CSR layout."""
    order = np.lexsort((cols, rows))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, np.ascontiguousarray(cols[order]), np.ascontiguousarray(vals[order])


@dataclass(frozen=True, slots=True)
class _Layout:
    """V's non-zeros and missing entries grouped by row and by column."""

    by_row: tuple[Any, ...]
    by_col: tuple[Any, ...]
    miss_by_row: tuple[Any, ...]
    miss_by_col: tuple[Any, ...]


def _layout(counts: Counts) -> _Layout:
    F, N = counts.shape
    r, c, v = counts.nz_rows, counts.nz_cols, counts.nz_values
    mr, mc = counts.missing_rows, counts.missing_cols
    one = np.ones(mr.size)
    return _Layout(
        _csr_parts(r, c, v, F),
        _csr_parts(c, r, v, N),
        _csr_parts(mr, mc, one, F)[:2],
        _csr_parts(mc, mr, one, N)[:2],
    )


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FASTMATH)
def _newton_pass(
    lam: np.ndarray, v: np.ndarray, y: np.ndarray, d: float
) -> tuple[float, float, bool]:
    """λ += d y, then (Σ v y / λ, Σ v y² / λ², whether some λ <= 0)."""
    s1 = 0.0
    s2 = 0.0
    n_bad = 0.0
    for j in range(v.size):
        lj = lam[j] + d * y[j]
        lam[j] = lj
        n_bad += 1.0 if lj <= 0.0 else 0.0
        inv = 1.0 / lj
        q = v[j] * y[j] * inv
        s1 += q
        s2 += q * y[j] * inv
    return s1, s2, n_bad > 0.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cd_half(
    X: np.ndarray,
    Y: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    m_indptr: np.ndarray,
    m_indices: np.ndarray,
    am1: np.ndarray,
    b: np.ndarray,
    n_newton: int,
    with_data: bool,
) -> float:
    """One coordinate-descent sweep over X (E, K) given Y (M, K), in place.

    Entity e (a row of W, or a column of H with X = H^T) sees the observed non-zeros
    ``values[indptr[e]:indptr[e+1]]`` at ``indices`` into Y and misses ``m_indices``.
    Returns the penalty of X plus, when ``with_data``, the data part of D(V || XY^T).
    """
    E, K = X.shape
    ysum = np.zeros(K)
    for m in range(Y.shape[0]):
        for k in range(K):
            ysum[k] += Y[m, k]
    total = 0.0
    for e in range(E):
        start, stop = indptr[e], indptr[e + 1]
        n = stop - start
        v = values[start:stop]
        lin = ysum.copy()
        for i in range(m_indptr[e], m_indptr[e + 1]):
            for k in range(K):
                lin[k] -= Y[m_indices[i], k]
        Yl = np.empty((K, n))
        lam = np.zeros(n)
        for j in range(n):
            c = indices[start + j]
            for k in range(K):
                Yl[k, j] = Y[c, k]
                lam[j] += X[e, k] * Y[c, k]
        for k in range(K):
            x = X[e, k]
            a1 = am1[e, k]
            lk = lin[k] + b[e, k]
            y = Yl[k]
            s1, s2, bad = _newton_pass(lam, v, y, 0.0)
            g = lk - s1
            gg = s2
            if a1 > 0.0:
                g -= a1 / x
                gg += a1 / (x * x)
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
                for _half in range(60):
                    s1, s2, bad = _newton_pass(lam, v, y, d - applied)
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
                    s1, s2, bad = _newton_pass(lam, v, y, -applied)
                    break
                x = x + d
                g = g1
                gg = gg1
            X[e, k] = x
        pen = 0.0
        for k in range(K):
            pen += b[e, k] * X[e, k]
            if am1[e, k] > 0.0:
                pen -= am1[e, k] * math.log(X[e, k])
        if with_data:
            for k in range(K):
                pen += (lin[k]) * X[e, k]
            for j in range(n):
                pen += v[j] * math.log(v[j] / lam[j]) - v[j]
        total += pen
    return total


def _prior_arrays(
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


class _Solver:
    """One fit from one start; ``step`` runs one iteration and returns J."""

    def __init__(
        self, counts: Counts, layout: _Layout, priors: GammaPriors | None, K: int, method: str
    ) -> None:
        F, N = counts.shape
        self.counts, self.layout, self.priors, self.method = counts, layout, priors, method
        self.am1_w, self.b_w, self.am1_h, self.b_h = _prior_arrays(priors, F, N, K)
        if method == "mu":
            indptr, indices, values = layout.by_row
            self.R = sp.csr_array((values.copy(), indices, indptr), shape=(F, N))
            mr, mc = counts.missing_rows, counts.missing_cols
            self.M = sp.csr_array((np.ones(mr.size), (mr, mc)), shape=(F, N))

    def step(self, W: np.ndarray, Ht: np.ndarray) -> float:
        if self.method == "cd":
            return self._step_cd(W, Ht)
        return self._step_mu(W, Ht)

    def _step_cd(self, W: np.ndarray, Ht: np.ndarray) -> float:
        lay, nn = self.layout, _N_NEWTON
        sweep: Any = _cd_half  # a numba dispatcher, untyped for mypy
        pen_w = sweep(W, Ht, *lay.by_row, *lay.miss_by_row, self.am1_w, self.b_w, nn, False)
        rest = sweep(Ht, W, *lay.by_col, *lay.miss_by_col, self.am1_h, self.b_h, nn, True)
        return float(pen_w + rest)

    def _rates(self, W: np.ndarray, Ht: np.ndarray) -> tuple[np.ndarray, float]:
        lam, total = rate_terms(self.counts, (W, Ht.T))
        self.R.data = self.layout.by_row[2] / lam
        return lam, total

    def _step_mu(self, W: np.ndarray, Ht: np.ndarray) -> float:
        R, M = self.R, self.M
        self._rates(W, Ht)
        numer = R @ Ht
        denom = Ht.sum(axis=0)[None, :] - M @ Ht + self.b_w
        W *= numer
        W += self.am1_w
        W /= np.maximum(denom, _TINY)
        self._rates(W, Ht)
        numer = R.T @ W
        denom = W.sum(axis=0)[None, :] - M.T @ W + self.b_h
        Ht *= numer
        Ht += self.am1_h
        Ht /= np.maximum(denom, _TINY)
        lam, total = rate_terms(self.counts, (W, Ht.T))
        J = total + float(np.sum(rel_entr(self.counts.nz_values, lam) - self.counts.nz_values))
        return J + self._penalty(W, Ht)

    def _penalty(self, W: np.ndarray, Ht: np.ndarray) -> float:
        return 0.0 if self.priors is None else self.priors.penalty(W, Ht.T)


def _objective(counts: Counts, W: np.ndarray, H: np.ndarray, priors: GammaPriors | None) -> float:
    J = kl_divergence(counts, (W, H))
    return J if priors is None else J + priors.penalty(W, H)


def _fit_one(
    solver: _Solver,
    W0: np.ndarray,
    H0: np.ndarray,
    max_iter: int,
    tol: float,
    progress: bool,
) -> KLResult:
    counts, priors = solver.counts, solver.priors
    J = _objective(counts, W0, H0, priors)
    if not np.isfinite(J):
        raise ValueError(
            "the starting factors give an infinite objective (a zero rate WH where V > 0); "
            "start from strictly positive factors"
        )
    W = np.ascontiguousarray(W0, dtype=np.float64).copy()
    # H is held transposed, (N, K), so that both updates read contiguous rows
    Ht = np.ascontiguousarray(H0.T, dtype=np.float64)
    W_hat, H_hat = W.copy(), Ht.copy()
    extrapolate = solver.method == "cd"
    beta, beta_max, extrapolated = _BETA0, 1.0, False
    history = np.empty(max_iter)
    converged = False
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc=f"kl_nmf[{solver.method}]", leave=False)
    it = 0
    try:
        while it < max_iter:
            J_new = solver.step(W_hat, H_hat)
            it += 1
            if extrapolated and not J_new <= J:
                # the extrapolated start did worse: back to the last iterate, damp beta
                beta_max, beta = beta, beta / _ETA
                W_hat[:], H_hat[:] = W, Ht
                extrapolated = False
            else:
                decrease = J - J_new
                W_prev, H_prev, W, Ht, J = W, Ht, W_hat, H_hat, J_new
                if decrease <= tol * max(abs(J), 1.0):
                    converged = True
                elif extrapolate:
                    beta, beta_max = min(beta_max, _GAMMA * beta), min(1.0, _GAMMA_MAX * beta_max)
                    # at most halve an entry: zeros stay zeros, WH stays > 0 where it was
                    W_hat = np.maximum(W + beta * (W - W_prev), 0.5 * W)
                    H_hat = np.maximum(Ht + beta * (Ht - H_prev), 0.5 * Ht)
                    extrapolated = True
                else:
                    W_hat, H_hat = W.copy(), Ht.copy()
            history[it - 1] = J
            if bar is not None:
                bar.update(1)
                bar.set_postfix(objective=f"{J:.10g}")
            if converged:
                break
    finally:
        if bar is not None:
            bar.close()
    H = np.ascontiguousarray(Ht.T)
    return KLResult(
        W=W,
        H=H,
        objective=_objective(counts, W, H, priors),
        n_iter=it,
        converged=converged,
        history=history[:it].copy(),
        method=solver.method,
    )


def kl_nmf(
    V: Any,
    n_components: int,
    *,
    priors: GammaPriors | None = None,
    init: tuple[Any, Any] | None = None,
    n_restarts: int = 1,
    max_iter: int = 1000,
    tol: float = 1e-7,
    method: Literal["cd", "mu"] = "cd",
    mask: Any = None,
    random_seed: Any = None,
    progress: bool = False,
) -> KLResult:
    """KL-NMF: minimise D(V || WH), or its Gamma-penalised (MAP) form, over W, H >= 0.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`. Sparse input stays sparse: one
        iteration costs O(nnz K) time and O((F + N) K + nnz) memory.
    n_components : int
        K, the number of components.
    priors : GammaPriors, optional
        Gamma priors on W and H (every shape >= 1). The objective is then
        D(V || WH) + ``priors.penalty(W, H)``, the negative log-posterior up to a
        constant. ``None``: flat priors, plain KL-NMF.
    init : tuple (W0, H0), optional
        Starting factors, shapes (F, K) and (K, N), finite and non-negative (strictly
        positive where a prior shape is > 1). ``None``: the seeded random start of
        :func:`initial_factors`. Cannot be combined with ``n_restarts > 1``.
    n_restarts : int
        Number of random starts; the fit with the lowest objective is returned. Start
        0 is ``initial_factors(V, K, random_seed=random_seed)``; starts 1.. are drawn
        from ``numpy.random.default_rng(random_seed).spawn(n_restarts - 1)``. With
        ``method="cd"`` (and no progress bar) the starts run in parallel threads, one
        per core; the result does not depend on that.
    max_iter : int
        Iteration budget per start (one iteration updates all of W, then all of H).
    tol : float
        Stop when the objective decreased by at most ``tol * max(|J|, 1)`` over one
        iteration. ``tol=0`` runs until the objective stops decreasing in floating
        point (or ``max_iter``).
    method : {"cd", "mu"}
        ``"cd"``: cyclic coordinate descent with scalar Newton steps (fast, the
        default); ``"mu"``: Lee & Seung multiplicative updates (the textbook baseline).
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries, left out of the objective.
    random_seed : int, numpy.random.Generator or None
        Seed for the random starts.
    progress : bool
        Show a progress bar (tqdm) with the objective.

    Returns
    -------
    KLResult
        W (F, K), H (K, N), objective, n_iter, converged, history, method.

    Raises
    ------
    ValueError
        For bad counts, K, priors with a shape < 1, ``init``, ``max_iter``, ``tol``,
        ``n_restarts`` or ``method``.

    Warns
    -----
    ConvergenceWarning
        When the best start used up ``max_iter`` without converging.
    """
    counts = as_counts(V, mask=mask)
    K = check_n_components(n_components, counts)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not (isinstance(tol, int | float | np.floating) and np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if isinstance(n_restarts, bool) or not isinstance(n_restarts, int | np.integer):
        raise ValueError(f"n_restarts must be a positive integer, got {n_restarts!r}")
    if n_restarts < 1:
        raise ValueError(f"n_restarts must be a positive integer, got {n_restarts!r}")
    if init is not None and n_restarts > 1:
        raise ValueError(
            "init and n_restarts > 1 exclude each other: restarts draw random starts; "
            "pass init=None or n_restarts=1"
        )
    if priors is not None:
        if not isinstance(priors, GammaPriors):
            raise TypeError(f"priors must be a GammaPriors or None, got {type(priors).__name__}")
        priors.check_map()
    F, N = counts.shape
    solver = _Solver(counts, _layout(counts), priors, K, method)
    if init is not None:
        starts = [_check_init(init, counts, K, solver.am1_w, solver.am1_h.T)]
    else:
        rng = np.random.default_rng(random_seed)
        rngs = [rng, *rng.spawn(n_restarts - 1)] if n_restarts > 1 else [rng]
        starts = [_initial(counts, K, r) for r in rngs]

    def fit(start: tuple[np.ndarray, np.ndarray]) -> KLResult:
        return _fit_one(solver, start[0], start[1], int(max_iter), float(tol), progress)

    # coordinate descent leaves the solver untouched and its sweeps release the GIL:
    # restarts run in threads (on all digits, K = 10, four restarts 2.6 s -> 1.35 s on
    # 2 cores); the multiplicative updates reuse the solver's buffers, so one at a time
    workers = min(len(starts), os.cpu_count() or 1) if method == "cd" and not progress else 1
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            results = list(ex.map(fit, starts))
    else:
        results = [fit(st) for st in starts]
    best: KLResult | None = None
    for res in results:
        if best is None or res.objective < best.objective:
            best = res
    assert best is not None
    if not best.converged:
        warnings.warn(
            f"kl_nmf ({method}) stopped at max_iter={max_iter} before the relative decrease "
            f"fell below tol={tol}; raise max_iter or tol",
            ConvergenceWarning,
            stacklevel=2,
        )
    return best


def fit_h(
    V: Any,
    W: np.ndarray,
    *,
    priors: GammaPriors | None = None,
    mask: Any = None,
    max_iter: int = 1000,
    tol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise the (penalised) KL objective over H alone, W fixed: the loadings of V given W.

    The H half of :func:`kl_nmf`'s coordinate-descent sweep (the same kernel), run on each
    column of V on its own until that column's objective decreases by at most
    ``tol * max(|J_n|, 1)`` in one sweep. The problem is convex in each column, and a
    column's iterates and stopping decision depend on that column alone (its start is
    ``h_k = (c_n / K + a_k - 1) / (s_k + b_k)``, c_n its total, s_k the column sums of W
    over its observed rows), so the result for a column does not depend on the other
    columns given with it, nor on their order.

    Parameters
    ----------
    V : array_like, sparse matrix, DataFrame, DataArray or Counts, shape (F, N)
        Counts (see :func:`poisson_nmf.as_counts`), or a :class:`Counts` built from any
        non-negative values (the generalised KL divergence is defined for them).
    W : numpy.ndarray, shape (F, K)
        Fixed, non-negative.
    priors : GammaPriors, optional
        Only the H part is used (shapes >= 1); ``None``: flat, maximum likelihood.
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries, left out.
    max_iter : int
        Sweeps per column at most.
    tol : float
        Relative decrease per sweep at which a column stops.

    Returns
    -------
    H : numpy.ndarray, shape (K, N)
    n_iter : numpy.ndarray of int, shape (N,)
        Sweeps run per column.
    converged : numpy.ndarray of bool, shape (N,)
        Whether each column met ``tol`` before ``max_iter``.
    """
    counts = as_counts(V, mask=mask)
    F, N = counts.shape
    W = np.ascontiguousarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != F:
        raise ValueError(f"W must have shape (F, K) with F = {F}, got {W.shape}")
    K = W.shape[1]
    if priors is not None:
        priors.check_map()
    _, _, am1_h, b_h = _prior_arrays(priors, F, N, K)
    indptr, indices, values = _layout(counts).by_col
    m_indptr, m_indices = _layout(counts).miss_by_col
    Ht = np.zeros((N, K))
    n_iter = np.zeros(N, dtype=np.int64)
    converged = np.zeros(N, dtype=bool)
    sweep: Any = _cd_half  # a numba dispatcher, untyped for mypy
    col_sums = W.sum(axis=0)
    for n in range(N):
        lo, hi = indptr[n], indptr[n + 1]
        mlo, mhi = m_indptr[n], m_indptr[n + 1]
        s = col_sums - W[m_indices[mlo:mhi]].sum(axis=0)
        denom = s + b_h[n]
        start = values[lo:hi].sum() / K + am1_h[n]
        Ht[n] = np.divide(start, denom, out=np.zeros(K), where=denom > 0)
        args = (
            W, np.array([0, hi - lo]), indices[lo:hi], values[lo:hi],
            np.array([0, mhi - mlo]), m_indices[mlo:mhi], am1_h[n : n + 1], b_h[n : n + 1],
            _N_NEWTON, True,
        )  # fmt: skip
        J = np.inf
        for it in range(1, max_iter + 1):
            J_new = float(sweep(Ht[n : n + 1], *args))
            n_iter[n] = it
            if J - J_new <= tol * max(abs(J_new), 1.0):
                converged[n] = True
                break
            J = J_new
    return np.ascontiguousarray(Ht.T), n_iter, converged
