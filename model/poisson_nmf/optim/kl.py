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

How the sweeps are compiled, costed and threaded: :mod:`poisson_nmf.optim.kl_kernels`.

Zeros that trap a method. A *dead component* (a zero column of W and the matching row
of H) is a saddle point where every gradient on it is 0: no method leaves it. A start
that has one is repaired (with a :class:`TrappedZerosWarning`): coordinate descent
restarts it with W[:, k] = 0 and H[:, k] zero except, at the column of the most
under-fitted count (largest KL term with v > λ), the mean entry of H; WH is unchanged
and the next sweep's gradient on W[f, k] is negative at that count's row. A component
that dies during a fit (its column of W or row of H reaches 0) is restarted the same
way when the fit converges, once per component; the next sweep is kept only if it
lowers J (like an extrapolation). Without priors a refused restart means the fit is
stuck; the dead components are then reported with a :class:`TrappedZerosWarning`
(with priors, fewer live components can be the optimum). Components that are merely
redundant (K above what the data need) may die again after their restart; that is
not reported.

Between sweeps the iterates are extrapolated (Ang & Gillis 2019; the shared
:class:`~poisson_nmf.optim.extrapolation.Extrapolation`):
W^ = max(W_t + β (W_t - W_{t-1}), W_t / 2) (likewise H), and the next sweep starts
from (W^, H^). If it ends above J(W_t, H_t), it is discarded (it still counts as an
iteration, with J unchanged), the next sweep starts from (W_t, H_t) and β shrinks
(β ← β/2, its cap ← β); otherwise β grows (β ← min(cap, 1.1 β), cap ← min(1, 1.02 cap)).
The recorded objective never increases. The floor W_t / 2 keeps zeros at zero and
WH > 0 wherever it was. Plain CD drifts slowly along a flat valley, as multiplicative
updates do; the extrapolation follows it.

``method="mu"``: the multiplicative updates of Lee & Seung (2001), with the Gamma
prior terms of the majorisation-minimisation form (Cemgil 2009; Févotte & Cemgil
2009), Λ = WH and R = V / Λ at the observed non-zeros,

.. math::

    W \leftarrow \frac{W \odot (R H^T) + (a^w - 1)}{M H^T + b^w}, \qquad
    H \leftarrow \frac{H \odot (W^T R) + (a^h - 1)}{W^T M + b^h},

with M the indicator of the observed entries (all ones without a mask). Each update
minimises an auxiliary function, so J never increases either; it is the textbook
baseline, slow to converge, and an entry at exactly 0 stays 0 (zero-lock), which is
why starts are drawn strictly positive; zeros in a given start become ``FILL`` (1e-2)
times their factor's mean positive entry, with a :class:`TrappedZerosWarning` (a dead
component also gets the entry of H described above).

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

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numba
import numpy as np
import scipy.sparse as sp
from scipy.special import rel_entr

from .._typing import CountsLike, SeedLike
from .._validation import check_choice, check_positive_int, check_priors
from ..data import Counts, as_counts, check_n_components
from ..divergence import kl_divergence, rate_terms
from ..exceptions import ConvergenceWarning, TrappedZerosWarning, warn_user
from ..priors import GammaPriors
from .extrapolation import Extrapolation
from .kl_kernels import N_NEWTON, Layout, cd_half_serial, cd_sweep, layout, n_threads, prior_arrays
from .starts import check_init, dead_components, random_start, revive, untrap_start

__all__ = ["KLResult", "fit_h", "kl_nmf"]

_METHODS = ("cd", "mu")
# a denominator that is exactly 0 only multiplies a numerator that is exactly 0
_TINY = 1e-300


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


class Solver:
    """One fit from one start; ``step`` runs one iteration and returns J."""

    def __init__(
        self, counts: Counts, layout: Layout, priors: GammaPriors | None, K: int, method: str
    ) -> None:
        F, N = counts.shape
        self.counts, self.layout, self.priors, self.method = counts, layout, priors, method
        self.am1_w, self.b_w, self.am1_h, self.b_h = prior_arrays(priors, F, N, K)
        self._bounds: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if method == "mu":
            indptr, indices, values = layout.by_row
            self.R = sp.csr_array((values.copy(), indices, indptr), shape=(F, N))
            mr, mc = counts.missing_rows, counts.missing_cols
            self.M = sp.csr_array((np.ones(mr.size), (mr, mc)), shape=(F, N))

    def step(self, W: np.ndarray, Ht: np.ndarray, threads: int = 1) -> float:
        if self.method == "cd":
            return self._step_cd(W, Ht, threads)
        return self._step_mu(W, Ht)

    def _step_cd(self, W: np.ndarray, Ht: np.ndarray, threads: int) -> float:
        prior_w, prior_h = (self.am1_w, self.b_w), (self.am1_h, self.b_h)
        return cd_sweep(W, Ht, self.layout, prior_w, prior_h, threads, self._bounds)

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
    solver: Solver,
    W0: np.ndarray,
    H0: np.ndarray,
    max_iter: int,
    tol: float,
    progress: bool,
    threads: int = 1,
) -> tuple[KLResult, bool]:
    """Fit from (W0, H0); also return whether a dead component's restart was refused."""
    counts, priors = solver.counts, solver.priors
    J = _objective(counts, W0, H0, priors)
    W = np.ascontiguousarray(W0, dtype=np.float64).copy()
    # H is held transposed, (N, K), so that both updates read contiguous rows
    Ht = np.ascontiguousarray(H0.T, dtype=np.float64)
    W_hat, H_hat = W.copy(), Ht.copy()
    cd = solver.method == "cd"
    ex = Extrapolation()
    # restarts of dead components (cd): at most one per component per fit
    revivals, reviving, refused = W.shape[1], False, False
    history = np.empty(max_iter)
    converged = False
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc=f"kl_nmf[{solver.method}]", leave=False)
    it = 0
    previous = numba.get_num_threads() if threads > 1 else 0
    if threads > 1:
        numba.set_num_threads(threads)  # thread-local: this fit's team of threads
    try:
        while it < max_iter:
            J_new = solver.step(W_hat, H_hat, threads)
            it += 1
            if (ex.pending or reviving) and not J_new <= J:
                # the extrapolated (or revived) start did worse: back to the last
                # iterate; damp beta, or give up reviving
                if reviving:
                    revivals, converged, refused = 0, True, True
                else:
                    ex.reject()
                W_hat[:], H_hat[:] = W, Ht
                reviving = False
            else:
                ex.accept()
                decrease = J - J_new
                W_prev, H_prev, W, Ht, J = W, Ht, W_hat, H_hat, J_new
                reviving = False
                if decrease <= tol * max(abs(J), 1.0):
                    converged = True
                    dead = np.flatnonzero(dead_components(W, Ht.T) & (cd and revivals > 0))
                    if dead.size:
                        W_hat, H_hat = W.copy(), Ht.copy()
                        am1_w, am1_h = solver.am1_w, solver.am1_h
                        if revive(counts, W_hat, H_hat, int(dead[0]), am1_w, am1_h):
                            revivals -= 1
                            converged, reviving = False, True
                        else:
                            revivals = 0
                if converged or reviving:
                    pass
                elif cd:
                    W_hat, H_hat = ex.propose((W, Ht), (W_prev, H_prev))
                else:
                    W_hat, H_hat = W.copy(), Ht.copy()
            history[it - 1] = J
            if bar is not None:
                bar.update(1)
                bar.set_postfix(objective=f"{J:.10g}")
            if converged:
                break
    finally:
        if threads > 1:
            numba.set_num_threads(previous)
        if bar is not None:
            bar.close()
    H = np.ascontiguousarray(Ht.T)
    res = KLResult(
        W=W,
        H=H,
        objective=_objective(counts, W, H, priors),
        n_iter=it,
        converged=converged,
        history=history[:it].copy(),
        method=solver.method,
    )
    return res, refused


def kl_nmf(
    V: CountsLike,
    n_components: int,
    *,
    priors: GammaPriors | None = None,
    init: tuple[Any, Any] | None = None,
    n_restarts: int = 1,
    max_iter: int = 1000,
    tol: float = 1e-7,
    method: Literal["cd", "mu"] = "cd",
    mask: Any = None,
    random_seed: SeedLike = None,
    progress: bool = False,
    n_jobs: int | None = None,
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
        :func:`initial_factors`. Cannot be combined with ``n_restarts > 1``. Zeros that
        ``method`` could never leave are replaced, with a :class:`TrappedZerosWarning`:
        every zero for ``"mu"`` (1e-2 times the factor's mean positive entry); for
        ``"cd"`` a dead component (zero column of W0 and row of H0) and a zero row of
        W0 or column of H0 over positive counts; a start with no live component at
        all is replaced by the random start of ``random_seed`` (see
        :func:`poisson_nmf.optim.starts.untrap_start`).
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
        Seed for the random starts (and for the start that replaces an ``init`` with no
        live component).
    progress : bool
        Show a progress bar (tqdm) with the objective.
    n_jobs : int or None
        Threads for ``method="cd"``: the rows of W (and the columns of H) are updated
        in parallel, and restarts share the threads (one restart per thread while
        there are more restarts than threads). ``None``: as many as Numba's thread
        count for the calling thread (:func:`numba.get_num_threads`, which
        :func:`poisson_nmf.parallel.map_pieces` lowers per piece) and
        :func:`threadpoolctl.threadpool_limits` allow; ``-1``: every core; ``1``:
        serial. The result does not depend on it: each row's terms are summed in a
        fixed order, so every step, accept/reject and stopping decision is the same
        on any number of threads.

    Returns
    -------
    KLResult
        W (F, K), H (K, N), objective, n_iter, converged, history, method.

    Raises
    ------
    ValueError
        For bad counts, K, priors with a shape < 1, ``init``, ``max_iter``, ``tol``,
        ``n_restarts``, ``method`` or ``n_jobs``.
    TypeError
        For ``priors`` that are not :class:`GammaPriors`, or a non-integer ``n_jobs``.

    Warns
    -----
    ConvergenceWarning
        When the best start used up ``max_iter`` without converging.
    TrappedZerosWarning
        When ``init`` has zeros that ``method`` could never leave (they are replaced),
        or when, without priors, the best fit ends with a dead component that a restart
        could not revive.
    """
    counts = as_counts(V, mask=mask)
    K = check_n_components(n_components, counts)
    check_choice(method, "method", _METHODS)
    max_iter = check_positive_int(max_iter, "max_iter")
    if not (isinstance(tol, int | float | np.floating) and np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    n_restarts = check_positive_int(n_restarts, "n_restarts")
    if init is not None and n_restarts > 1:
        raise ValueError(
            "init and n_restarts > 1 exclude each other: restarts draw random starts; "
            "pass init=None or n_restarts=1"
        )
    priors = check_priors(priors, need_mode=True)
    solver = Solver(counts, layout(counts), priors, K, method)
    if init is not None:
        W0, H0 = check_init(init, counts, K, solver.am1_w, solver.am1_h.T)
        am1_w, am1_h = solver.am1_w, solver.am1_h.T
        W0, H0, msg = untrap_start(counts, W0, H0, method, am1_w, am1_h, random_seed)
        if msg is not None:
            warn_user(msg, TrappedZerosWarning)
        if not np.isfinite(_objective(counts, W0, H0, priors)):
            raise ValueError(
                "the starting factors give an infinite objective (a zero rate WH where "
                "V > 0: rows of W0 and columns of H0 that share no positive component); "
                "start from strictly positive factors"
            )
        starts = [(W0, H0)]
    else:
        rng = np.random.default_rng(random_seed)
        rngs = [rng, *rng.spawn(n_restarts - 1)] if n_restarts > 1 else [rng]
        starts = [random_start(counts, K, r) for r in rngs]

    # coordinate descent leaves the solver untouched and its sweeps release the GIL:
    # restarts run in threads; the multiplicative updates reuse the solver's buffers,
    # so one at a time
    threads = n_threads(n_jobs) if method == "cd" else 1
    workers = min(len(starts), threads) if not progress else 1
    per_fit = max(1, threads // workers)

    def fit(start: tuple[np.ndarray, np.ndarray]) -> tuple[KLResult, bool]:
        W0, H0 = start
        return _fit_one(solver, W0, H0, int(max_iter), float(tol), progress, per_fit)

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            results = list(ex.map(fit, starts))
    else:
        results = [fit(st) for st in starts]
    best, refused = min(results, key=lambda r: r[0].objective)
    dead = np.flatnonzero(dead_components(best.W, best.H))
    if refused and priors is None and dead.size:
        # without priors a restart leaves J unchanged and every sweep step lowers it,
        # so a refused restart means the fit is stuck (with priors, fewer live
        # components can be the optimum: the penalty may outweigh the data)
        warn_user(
            f"kl_nmf ({method}) ended with dead component(s) {dead.tolist()} (zero columns "
            "of W or rows of H) that a restart did not revive: try other starts "
            "(n_restarts) or a smaller K",
            TrappedZerosWarning,
        )
    if not best.converged:
        warn_user(
            f"kl_nmf ({method}) stopped at max_iter={max_iter} before the relative decrease "
            f"fell below tol={tol}; raise max_iter or tol",
            ConvergenceWarning,
        )
    return best


def fit_h(
    V: CountsLike,
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
    priors = check_priors(priors, need_mode=True)
    _, _, am1_h, b_h = prior_arrays(priors, F, N, K)
    indptr, indices, values = layout(counts).by_col
    m_indptr, m_indices = layout(counts).miss_by_col
    Ht = np.zeros((N, K))
    n_iter = np.zeros(N, dtype=np.int64)
    converged = np.zeros(N, dtype=bool)
    sweep: Any = cd_half_serial  # a numba dispatcher, untyped for mypy
    col_sums = W.sum(axis=0)
    WT = np.ascontiguousarray(W.T)
    one = np.array([0, 1], dtype=indptr.dtype)
    out = np.empty(1)
    for n in range(N):
        lo, hi = indptr[n], indptr[n + 1]
        mlo, mhi = m_indptr[n], m_indptr[n + 1]
        s = col_sums - W[m_indices[mlo:mhi]].sum(axis=0)
        denom = s + b_h[n]
        start = values[lo:hi].sum() / K + am1_h[n]
        Ht[n] = np.divide(start, denom, out=np.zeros(K), where=denom > 0)
        args = (
            W, col_sums, np.array([0, hi - lo], dtype=indptr.dtype), indices[lo:hi],
            values[lo:hi], np.array([0, mhi - mlo], dtype=m_indptr.dtype), m_indices[mlo:mhi],
            am1_h[n : n + 1], b_h[n : n + 1], N_NEWTON, True, one, out, WT,
        )  # fmt: skip
        J = np.inf
        for it in range(1, max_iter + 1):
            sweep(Ht[n : n + 1], *args)
            J_new = float(out[0])
            n_iter[n] = it
            if J - J_new <= tol * max(abs(J_new), 1.0):
                converged[n] = True
                break
            J = J_new
    return np.ascontiguousarray(Ht.T), n_iter, converged
