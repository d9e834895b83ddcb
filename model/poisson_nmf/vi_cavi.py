"""Coordinate ascent of the variational engine (:mod:`poisson_nmf.vi`): runs and restarts.

The updates and the ELBO are derived in :mod:`poisson_nmf.vi`; the Numba passes are in
:mod:`poisson_nmf.vi_kernels`. One iteration is three threaded passes over fixed blocks
of rows: the update of q(W) with its ELBO terms, the same for q(H), and the pass over
the non-zeros (q(S) and the likelihood term). Buffers are allocated once per run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import gammaln

from .data import Counts, csr_index
from .priors import GammaPriors
from .vi_kernels import extrapolate, masked_sums, nz_pass, step

__all__ = [
    "BLOCKS", "GAMMA_MAX", "OVERRELAX", "ROUNDING", "Problem", "VIFit", "cavi",
    "WINDOW", "fit_restarts", "initial_q", "nz_blocks", "run_threads",
]  # fmt: skip

#: a decrease of the ELBO beyond this many times the sum of its terms' magnitudes is a
#: bug, not rounding (the pass sums nnz terms in float64: its rounding error is ~nnz *
#: 1e-16 relative at worst)
ROUNDING = 1e-9
#: blocks of rows each pass runs in (in threads); fixed, so results do not depend on
#: the number of threads
BLOCKS = 8
#: growth factor of the over-relaxed step in :func:`cavi`, and its largest step
OVERRELAX = 1.5
GAMMA_MAX = 20.0
#: iterations of the convergence rule's window (see :func:`cavi`)
WINDOW = 10


@dataclass(frozen=True)
class VIFit:
    """One coordinate-ascent run: the Gamma factors of q and how it went.

    Attributes
    ----------
    alpha_w, beta_w : numpy.ndarray, shape (F, K)
        Shapes and rates of q(W).
    alpha_h, beta_h : numpy.ndarray, shape (K, N)
        Shapes and rates of q(H).
    elbo : float
        The ELBO at the returned q.
    elbo_trace : numpy.ndarray, shape (n_iter + 1,)
        The ELBO of every state, the start first.
    n_iter : int
    converged : bool
        Whether the relative ELBO change fell below ``tol``.
    max_decrease : float
        Largest relative decrease of the ELBO between iterations (0 if none).
    gamma : float
        The over-relaxed step to try next (for a run continued).
    n_passes : int
        Passes over the non-zeros (iterations plus the failed over-relaxed tries).
    """

    alpha_w: np.ndarray
    beta_w: np.ndarray
    alpha_h: np.ndarray
    beta_h: np.ndarray
    elbo: float
    elbo_trace: np.ndarray
    n_iter: int
    converged: bool
    max_decrease: float
    gamma: float = 1.0
    n_passes: int = 0

    @property
    def mean_w(self) -> np.ndarray:
        """E_q[W], shape (F, K)."""
        return self.alpha_w / self.beta_w

    @property
    def mean_h(self) -> np.ndarray:
        """E_q[H], shape (K, N)."""
        return self.alpha_h / self.beta_h

    @property
    def q(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(alpha_w, beta_w, alpha_h, beta_h): a start for :func:`cavi`."""
        return self.alpha_w, self.beta_w, self.alpha_h, self.beta_h


@dataclass(frozen=True)
class Problem:
    """Data and priors in the form the kernels take (build with :meth:`Problem.build`)."""

    F: int
    N: int
    K: int
    indptr: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    m_rows: np.ndarray
    m_cols: np.ndarray
    aw: np.ndarray  # (F, K)
    bw: np.ndarray
    ah: np.ndarray  # (N, K): H's priors transposed
    bh: np.ndarray
    const: float  # -sum log v! + the priors' sum a log b - log Gamma(a)

    @classmethod
    def build(cls, counts: Counts, K: int, priors: GammaPriors) -> Problem:
        """From checked counts, K and priors (no checks here)."""
        F, N = counts.shape
        indptr, cols, order = csr_index(counts.nz_rows, counts.nz_cols, F)
        vals = np.ascontiguousarray(counts.nz_values[order], dtype=np.float64)
        aw, bw, ah, bh = priors.arrays(F, N, K)
        # dense (F, K) and, for H, (N, K) = transposed: every kernel runs row-major
        aw, bw = np.ascontiguousarray(aw), np.ascontiguousarray(bw)
        ah, bh = np.ascontiguousarray(ah.T), np.ascontiguousarray(bh.T)
        return cls(
            F, N, K, indptr, cols, vals,
            np.ascontiguousarray(counts.missing_rows), np.ascontiguousarray(counts.missing_cols),
            aw, bw, ah, bh,
            const=-float(np.sum(gammaln(vals + 1.0))) + priors.log_normaliser(F, N, K),
        )  # fmt: skip

    @property
    def masked(self) -> bool:
        """Whether any entry is missing."""
        return self.m_rows.size > 0


def initial_q(prob: Problem, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Draw a random start: E[w], E[h] ~ c U(0.5, 1.5), c^2 K the mean observed count.

    Returns (alpha_w, beta_w, alpha_h, beta_h), shapes (F, K), (F, K), (K, N), (K, N).
    """
    n_obs = prob.F * prob.N - prob.m_rows.size
    c = np.sqrt(max(float(prob.vals.sum()) / max(n_obs, 1), 1e-12) / prob.K)
    a0 = 10.0  # a moderately concentrated start; the first update resets every shape
    Ew = c * rng.uniform(0.5, 1.5, (prob.F, prob.K))
    Eh = c * rng.uniform(0.5, 1.5, (prob.K, prob.N))
    return np.full_like(Ew, a0), a0 / Ew, np.full_like(Eh, a0), a0 / Eh


def _even_blocks(n: int) -> np.ndarray:
    """Bounds of up to ``BLOCKS`` blocks of about equal size over n rows."""
    return np.unique(np.linspace(0, n, min(BLOCKS, n) + 1).round().astype(np.int64))


def nz_blocks(prob: Problem) -> np.ndarray:
    """Bounds of up to ``BLOCKS`` blocks of rows with about equal non-zeros each.

    Fewer blocks where their buffers for H's sums (N x K each) would pass 64 MB.
    """
    nb = int(min(BLOCKS, max(1, 64 * 2**20 // (8 * prob.N * prob.K)), prob.F))
    targets = np.linspace(0, prob.indptr[-1], nb + 1)
    b = np.searchsorted(prob.indptr, targets, side="left").astype(np.int64)
    b[0], b[-1] = 0, prob.F
    return np.unique(np.clip(b, 0, prob.F))


class _Blocks:
    """Run a kernel over blocks of rows in a thread pool; add the results in block order."""

    def __init__(self, threads: int) -> None:
        self.ex = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None

    def __call__(self, fn: Callable[[int, int, int], float], bounds: np.ndarray) -> float:
        idx = range(bounds.size - 1)

        def one(b: int) -> float:
            return float(fn(b, int(bounds[b]), int(bounds[b + 1])))

        parts = list(self.ex.map(one, idx)) if self.ex is not None else [one(b) for b in idx]
        total = 0.0
        for p in parts:  # in block order: the same sum for any number of threads
            total += p
        return total

    def close(self) -> None:
        if self.ex is not None:
            self.ex.shutdown()


class _Passes:
    """The three passes of one CAVI iteration over a problem, with their buffers.

    ``factors`` fills L, E[w], M, E[h] from q (the q(W) and q(H) passes), ``bound`` runs
    the pass over the non-zeros and gives the ELBO; the buffers are allocated once.
    ``run`` is the thread pool (close it when done).
    """

    def __init__(self, prob: Problem, threads: int | None) -> None:
        F, N, K = prob.F, prob.N, prob.K
        self.prob = prob
        self.L, self.Ew, self.Sw = np.empty((F, K)), np.empty((F, K)), np.empty((F, K))
        self.M, self.Eh, self.Sh = np.empty((N, K)), np.empty((N, K)), np.empty((N, K))
        self.nz_b, self.w_b, self.h_b = nz_blocks(prob), _even_blocks(F), _even_blocks(N)
        # one buffer per block: summed in block order
        self.Sh_b = np.empty((self.nz_b.size - 1, N, K))
        # sums over row f's masked entries of E[h_kn], and over column n's of E[w_fk]
        self.corr_w = np.zeros((F if prob.masked else 0, K))
        self.corr_h = np.zeros((N if prob.masked else 0, K))
        self.sW, self.sH = np.zeros(K), np.zeros(K)
        n_threads = (os.cpu_count() or 1) if threads is None else threads
        self.run = _Blocks(max(1, min(n_threads, BLOCKS)))

    def factors(self, q: list[np.ndarray], update: bool) -> float:
        """Fill L, Ew, M, Eh from q (after updating q from the buffers if ``update``)."""
        prob, run = self.prob, self.run
        L, Sw, sH, corr_w, Ew = self.L, self.Sw, self.sH, self.corr_w, self.Ew
        M, Sh, sW, corr_h, Eh = self.M, self.Sh, self.sW, self.corr_h, self.Eh
        aW, bW, aH, bH = q
        terms = run(lambda _, lo, hi: step(update, aW, bW, prob.aw, prob.bw, L, Sw, sH,
                                           corr_w, Ew, lo, hi), self.w_b)  # fmt: skip
        np.sum(Ew, axis=0, out=sW)
        if prob.masked:
            masked_sums(Ew, prob.m_cols, prob.m_rows, corr_h)
        return terms + run(lambda _, lo, hi: step(update, aH, bH, prob.ah, prob.bh, M, Sh,
                                                  sW, corr_h, Eh, lo, hi), self.h_b)  # fmt: skip

    def bound(self, terms: float) -> tuple[float, float]:
        """Run the pass over the non-zeros (fills Sw, Sh); the ELBO, its terms' magnitude."""
        prob, L, M, Sw, Sh_b = self.prob, self.L, self.M, self.Sw, self.Sh_b
        lik = self.run(lambda b, lo, hi: nz_pass(L, M, prob.indptr, prob.cols, prob.vals, Sw,
                                                 Sh_b[b], lo, hi), self.nz_b)  # fmt: skip
        np.sum(Sh_b, axis=0, out=self.Sh)
        np.sum(self.Eh, axis=0, out=self.sH)
        rate = float(self.sW @ self.sH)
        if prob.masked:
            masked_sums(self.Eh, prob.m_rows, prob.m_cols, self.corr_w)
            rate -= float(np.vdot(self.Ew, self.corr_w))
        elbo = lik + prob.const - rate + terms
        # rounding is relative to the terms summed, not to their sum: with very tight
        # priors (the pinned conjugate case) the ELBO is a small difference of 1e8 terms
        return elbo, abs(lik) + abs(prob.const) + abs(rate) + abs(terms) + abs(elbo)

    def try_step(
        self, q_t: list[np.ndarray], q_c: list[np.ndarray], q_x: list[np.ndarray], g: float
    ) -> float:
        """ELBO of q_t (q_c / q_t)^g, left in q_x and the buffers."""

        def side(first: int) -> Callable[[int, int, int], float]:
            def ext(_: int, lo: int, hi: int) -> float:
                for i in (first, first + 1):  # shapes and rates
                    extrapolate(q_t[i], q_c[i], g, q_x[i], lo, hi)
                return 0.0

            return ext

        self.run(side(0), self.w_b)
        self.run(side(2), self.h_b)
        return self.bound(self.factors(q_x, False))[0]


def cavi(
    prob: Problem,
    start: Sequence[np.ndarray],
    max_iter: int,
    tol: float,
    threads: int | None = None,
    overrelax: float = OVERRELAX,
    gamma: float = 1.0,
    history: Sequence[float] = (),
) -> VIFit:
    """Coordinate ascent from ``start`` = (alpha_w, beta_w, alpha_h, beta_h), over-relaxed.

    Each iteration computes the coordinate-ascent update q_c of the current q_t (q(S),
    then q(W), then q(H)). With ``overrelax`` > 1 it first tries the step ``gamma``
    times as long on the log scale of every shape and rate, q_t (q_c / q_t)^gamma
    (adaptive over-relaxed bound optimisation, Salakhutdinov & Roweis 2003): if its
    ELBO is at least q_t's it is taken and gamma grows by ``overrelax`` (at most
    ``GAMMA_MAX``), else q_c is taken and gamma starts again at ``overrelax``. Either
    way the ELBO never decreases (q_c's cannot: coordinate ascent); a failed try costs
    one more pass. ``overrelax=1`` is plain coordinate ascent.

    Parameters
    ----------
    prob : Problem
    start : sequence of 4 arrays, shapes (F, K), (F, K), (K, N), (K, N)
        Shapes and rates of q(W), q(H) to start from (not modified).
    max_iter : int
        Iterations at most (0: just the ELBO of ``start``).
    tol : float
        Stop when the relative ELBO increase over the last ``WINDOW`` iterations is
        below ``WINDOW x tol`` (its mean per iteration below ``tol``: one slow plain
        step after a failed over-relaxed try does not stop a run still climbing).
    threads : int, optional
        Threads for the passes; default ``os.cpu_count()`` (at most ``BLOCKS``). The
        result is the same for any number.
    overrelax : float
        Growth factor of the step (>= 1; 1: plain coordinate ascent).
    gamma : float
        The step to try first (a run continued: the ``gamma`` it stopped with).
    history : sequence of float
        ELBO trace of the run this one continues (its last value is ``start``'s): the
        window of the convergence rule reaches back into it.

    Returns
    -------
    VIFit

    Raises
    ------
    RuntimeError
        If a coordinate-ascent step decreases the ELBO by more than ``ROUNDING`` times
        the magnitude of its terms (a bug).
    """
    # the accepted state q_t, the coordinate-ascent update q_c, the over-relaxed try
    q_t = [np.array(x, dtype=np.float64, order="C") for x in start[:2]] + [
        np.ascontiguousarray(np.asarray(x, dtype=np.float64).T) for x in start[2:]
    ]
    q_c = [np.empty_like(x) for x in q_t]
    q_x = [np.empty_like(x) for x in q_t] if overrelax > 1 else []
    passes = _Passes(prob, threads)
    factors, bound, run = passes.factors, passes.bound, passes.run
    trace: list[float] = []
    past = [float(x) for x in history[-1 - WINDOW : -1]]
    converged = False
    max_dec = 0.0
    it = n_passes = 0
    try:
        elbo, _ = bound(factors(q_t, False))
        n_passes += 1
        trace.append(elbo)
        while not converged and it < max_iter:
            # q_c: q(W) given q(S) (the last pass's proportions) and q(H); then q(H)
            # given the same q(S) and the new q(W)
            terms = factors(q_c, True)
            new = -np.inf
            if gamma > 1 and q_x:
                new = passes.try_step(q_t, q_c, q_x, gamma)
                n_passes += 1
            if np.isfinite(new) and new >= trace[-1]:
                q_t, q_x = q_x, q_t
                gamma = min(gamma * overrelax, GAMMA_MAX)
            else:
                if gamma > 1 and q_x:  # the buffers hold the failed try: q_c's again
                    terms = factors(q_c, False)
                new, scale = bound(terms)
                n_passes += 1
                if trace[-1] - new > ROUNDING * scale:
                    raise RuntimeError(
                        f"the ELBO decreased by {(trace[-1] - new) / abs(new):.2e} relative "
                        f"at iteration {it + 1} ({trace[-1]!r} -> {new!r}); coordinate "
                        "ascent cannot do that: a bug"
                    )
                max_dec = max(max_dec, (trace[-1] - new) / abs(new))
                q_t, q_c = q_c, q_t
                gamma = overrelax
            it += 1
            trace.append(new)
            full = past + trace
            if len(full) > WINDOW:
                converged = (new - full[-1 - WINDOW]) / abs(new) < WINDOW * tol
    finally:
        run.close()
    aW, bW = q_t[0], q_t[1]
    aH, bH = np.ascontiguousarray(q_t[2].T), np.ascontiguousarray(q_t[3].T)
    return VIFit(aW, bW, aH, bH, trace[-1], np.array(trace), it, converged, max_dec, gamma,
                 n_passes)  # fmt: skip


def _join(a: VIFit, b: VIFit) -> VIFit:
    """Run ``a`` continued by ``b`` (which started where ``a`` stopped) as one run."""
    return VIFit(
        b.alpha_w, b.beta_w, b.alpha_h, b.beta_h, b.elbo,
        np.concatenate([a.elbo_trace, b.elbo_trace[1:]]), a.n_iter + b.n_iter, b.converged,
        max(a.max_decrease, b.max_decrease), b.gamma, a.n_passes + b.n_passes - 1,
    )  # fmt: skip


def fit_restarts(
    prob: Problem,
    rngs: Sequence[np.random.Generator],
    screen_iter: int | None,
    max_iter: int,
    tol: float,
    threads: int | None = None,
) -> tuple[VIFit, list[VIFit], int]:
    """Random restarts, screened: each runs ``screen_iter`` iterations, the best goes on.

    Parameters
    ----------
    prob : Problem
    rngs : sequence of numpy.random.Generator
        One per restart (its start, :func:`initial_q`).
    screen_iter : int or None
        Iterations every restart runs (or fewer, if it converges); the restart with the
        best ELBO then runs on to convergence or ``max_iter`` in all. ``None``: every
        restart runs to convergence and the best final ELBO is kept.
    max_iter, tol, threads
        As in :func:`cavi`.

    Returns
    -------
    fit : VIFit
        The kept restart, run to the end (its trace from its start).
    screened : list of VIFit
        Every restart where the choice was made (after ``screen_iter`` iterations, or
        at its end): their ELBOs and places compare like with like.
    best : int
        Index of the kept restart.
    """
    n = max_iter if screen_iter is None else min(screen_iter, max_iter)
    screened = [cavi(prob, initial_q(prob, r), n, tol, threads) for r in rngs]
    best = int(np.argmax([f.elbo for f in screened]))
    fit = screened[best]
    if not fit.converged and fit.n_iter < max_iter:
        rest = cavi(prob, fit.q, max_iter - fit.n_iter, tol, threads, gamma=fit.gamma,
                    history=fit.elbo_trace.tolist())  # fmt: skip
        fit = _join(fit, rest)
    return fit, screened, best


def run_threads(prob: Problem) -> dict[str, Any]:
    """How the passes run: blocks of rows and threads (for the record in ``attrs``)."""
    return {
        "blocks": int(nz_blocks(prob).size - 1),
        "threads": int(min(os.cpu_count() or 1, BLOCKS)),
    }
