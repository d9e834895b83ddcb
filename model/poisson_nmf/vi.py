r"""Mean-field variational inference for Poisson NMF: coordinate ascent on the latent counts.

The model is exactly that of :func:`poisson_nmf.sample_posterior`:
:math:`v_{fn} \sim \mathrm{Poisson}(\sum_k w_{fk} h_{kn})` over the observed entries,
:math:`w_{fk} \sim \mathrm{Gamma}(a^w_{fk}, b^w_{fk})`,
:math:`h_{kn} \sim \mathrm{Gamma}(a^h_{kn}, b^h_{kn})` (shape, rate, as
:class:`poisson_nmf.GammaPriors` gives them). With the latent counts
:math:`s_{fkn} \sim \mathrm{Poisson}(w_{fk} h_{kn})`, :math:`v_{fn} = \sum_k s_{fkn}`
(Cemgil 2009, "Bayesian inference for nonnegative matrix factorisation models";
Gopalan, Hofman & Blei 2015, hierarchical Poisson factorisation) every complete
conditional is conjugate, and the mean-field family
:math:`q(W)\,q(H)\,q(S)` with :math:`q(w_{fk}) = \mathrm{Gamma}(α^w_{fk}, β^w_{fk})`,
:math:`q(h_{kn}) = \mathrm{Gamma}(α^h_{kn}, β^h_{kn})` and multinomial
:math:`q(s_{f\cdot n})` has closed-form coordinate updates.

Updates (one iteration)
-----------------------
With :math:`L_{fk} = \exp E[\log w_{fk}] = e^{ψ(α^w_{fk})} / β^w_{fk}`, likewise
:math:`M_{kn}`, the optimal :math:`q(S)` splits each count in proportions
:math:`φ_{fnk} = L_{fk} M_{kn} / (LM)_{fn}`, and

.. math::

    α^w_{fk} = a^w_{fk} + L_{fk} \sum_{n: v_{fn} > 0} \frac{v_{fn}}{(LM)_{fn}} M_{kn},
    \qquad β^w_{fk} = b^w_{fk} + \sum_{n \text{ observed}} E[h_{kn}],

then the same for H with the new :math:`E[w]`. One pass over the non-zeros gives both
sums (O(nnz K)); the zeros enter only through :math:`\sum_n E[h_{kn}]` and
:math:`\sum_f E[w_{fk}]`, so V is never densified. Masked (missing) entries are in
neither: the non-zeros exclude them, and their :math:`E[h_{kn}]` is taken back out of
the row's sum by a loop over the masked entries (O(n_masked K)). Each step maximises
the ELBO over one block (q(S), then q(W), then q(H)) with the others fixed, so the
ELBO never decreases.

The ELBO
--------
With q(S) at its optimum the bound is, exactly,

.. math::

    \mathcal{L} = \sum_{nz} [v_{fn} \log (LM)_{fn} - \log v_{fn}!]
    - \sum_{\text{obs}} \sum_k E[w_{fk}] E[h_{kn}]
    + \sum E_q[\log p(w) - \log q(w)] + \sum E_q[\log p(h) - \log q(h)],

with the Gamma prior terms and entropies in closed form; the rate sum is
:math:`\sum_k (\sum_f E[w_{fk}])(\sum_n E[h_{kn}])` less the masked entries. It is
computed in every iteration's pass (the pass of iteration t gives the bound of the state
it starts from), stored as ``attrs["vi"]["elbo_trace"]``, and a decrease larger than
rounding (:data:`_ROUNDING` relative) raises ``RuntimeError``.

This bound of the augmented model (q(S) included) is below the ELBO of q(W) q(H) for
the model itself, :math:`E_q[\log p(V, W, H) - \log q(W, H)]`, by Jensen's inequality
on :math:`\log \sum_k w_{fk} h_{kn}`; that one has no closed form, and a Monte Carlo
estimate of it from the PSIS draws is ``attrs["vi"]["psis"]["elbo_mc"]`` (the estimator
``benchmarks/vi_vs_advi.py`` uses for both methods).

The pass over the non-zeros runs in ``_BLOCKS`` = 8 fixed blocks of rows with about
equal non-zeros, in threads (the kernel releases the GIL), each block summing into its
own buffer for H, added in block order: the result is the same for any number of
threads.

Convergence rule: stop when the relative increase
:math:`(\mathcal{L}_t - \mathcal{L}_{t-1}) / |\mathcal{L}_t|` is below ``tol`` (default
1e-6) or after ``max_iter`` iterations (a :class:`poisson_nmf.ConvergenceWarning`).

Restarts, draws and the check against the exact posterior
---------------------------------------------------------
``restarts`` random starts (default 3) each run to convergence; the best ELBO is kept.
Their spread is reported (ELBO gap to the best, and the largest total-variation distance
between a restart's aligned, normalised W columns and the best's): a large spread means
the posterior has several modes and mean-field found one of them.

Draws are independent from q, stored as one chain (``chain`` of size 1) in float32:
(F + N) K x 4 bytes per draw. They are normalised and aligned exactly as NUTS draws
(:func:`poisson_nmf.align.align_factors`), with the mean of the best q as the
reference (a MAP would cost a second optimisation for nothing: q's mean is a good
representative of the mode q sits in).

How wrong q is: Pareto-smoothed importance sampling (Yao, Vehtari, Simpson & Gelman
2018, "Yes, but did it work?") with :math:`\log p` the exact joint density
(:func:`poisson_nmf.log_density`, on (log W, log H) with its Jacobian) and
:math:`\log q` the Gamma factors on the same scale, from ``psis_draws`` draws (default
100). Its k-hat above 0.7 means the importance weights have no useful variance: q's
intervals are not posterior intervals. In the dimensions of matrix factorisation
((F + N) K parameters, thousands at least) mean-field q is always far narrower than the
posterior in some directions, and k-hat is expected to be well above 0.7.

What mean-field cannot represent
--------------------------------
q(W) q(H) has no correlation between W and H: the scale ridge
(:math:`w_{\cdot k} c, h_{k \cdot} / c`) and the shears that exchange mass between
components, which carry most of the posterior variance of the slowest entries, are
absent, so q's sds understate the posterior's (``benchmarks/vi_vs_nuts.py`` measures by
how much).

Next steps that plug in here: stochastic (minibatch) VI replaces the full pass over the
non-zeros by a pass over a random subset of rows, scaled by F / batch, with the natural
gradient step :math:`α \leftarrow (1 - ρ_t) α + ρ_t \hat α` (Hoffman et al. 2013); the
global q(H) update is unchanged in form. Hierarchical priors (HPF: Gamma rates on the
rates, per row and per column) add one conjugate Gamma factor per row and column whose
expectations replace the fixed ``b^w``, ``b^h`` in the β updates.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numba
import numpy as np
import xarray as xr
from scipy.special import gammaln

from .align import Normalize, align_factors
from .align import check_normalize as _check_normalize
from .data import Counts, as_counts, check_n_components
from .exceptions import ConvergenceWarning
from .priors import GammaPriors
from .vecmath import FAST as _FAST
from .vecmath import flog

__all__ = ["VIFit", "sample_vi"]

_DEFAULT_PRIORS = GammaPriors()
# a decrease of the ELBO beyond this many times |ELBO| is a bug, not rounding (the
# pass sums nnz terms in float64: its rounding error is ~nnz * 1e-16 relative at worst)
_ROUNDING = 1e-9
# default number of stored draws: at most this many, and at most this many bytes of them
_DEFAULT_DRAWS = 1000
_DRAW_BYTES = 256 * 2**20
# pointwise groups: at most this many values (draws x observed entries) per group
_POINTWISE_VALUES = 25_000_000
_CHUNK = 64  # draws aligned at a time (align_factors works in float64)
_BLOCKS = 8  # blocks of rows of the pass over the non-zeros (run in threads)


# ---------------------------------------------------------------------------------------
# kernels


@numba.njit(nogil=True, fastmath=_FAST, error_model="numpy", cache=True)
def _nz_pass(
    L: np.ndarray,
    M: np.ndarray,
    indptr: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    Sw: np.ndarray,
    Sh: np.ndarray,
    lo: int,
    hi: int,
) -> float:
    """One pass over the non-zeros of rows lo..hi-1: sum v log (LM), and the ratio sums.

    L (F, K), M (N, K) (H's side transposed); Sw[f, k] = sum_n v / (LM)_fn M[n, k] for
    the rows f in lo..hi-1 (zeroed here first), Sh[n, k] = sum_f v / (LM)_fn L[f, k] over
    those rows (Sh zeroed here: one buffer per block of rows). O(nnz K).
    """
    K = L.shape[1]
    Sw[lo:hi] = 0.0
    Sh[:] = 0.0
    total = 0.0
    for f in range(lo, hi):
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
def _masked_sums(B: np.ndarray, rows: np.ndarray, cols: np.ndarray, out: np.ndarray) -> None:
    """out[rows[i], k] = sum over masked entries i of B[cols[i], k] (out zeroed here)."""
    out[:] = 0.0
    for i in range(rows.size):
        r, c = rows[i], cols[i]
        for k in range(out.shape[1]):
            out[r, k] += B[c, k]


@numba.njit(nogil=True, error_model="numpy", cache=True)
def _digamma(x: float) -> float:
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
def _factor(
    alpha: np.ndarray, beta: np.ndarray, a: np.ndarray, b: np.ndarray, L: np.ndarray,
    E: np.ndarray,
) -> float:  # fmt: skip
    """Fill L = exp E[log x] and E = E[x] of q = Gamma(alpha, beta); return its ELBO terms.

    The terms: the sum of E_q[log p(x)] + the entropy of q, p = Gamma(a, b), less the
    prior's normaliser sum a log b - log Gamma(a) (a constant, added once by the caller):
    (a - alpha) psi(alpha) - a log beta + alpha - b alpha / beta + log Gamma(alpha).
    """
    total = 0.0
    for i in range(alpha.shape[0]):
        for k in range(alpha.shape[1]):
            al = alpha[i, k]
            lb = np.log(beta[i, k])
            psi = _digamma(al)
            e = al / beta[i, k]
            L[i, k] = np.exp(psi - lb)
            E[i, k] = e
            total += (a[i, k] - al) * psi - a[i, k] * lb + al - b[i, k] * e + math.lgamma(al)
    return total


# ---------------------------------------------------------------------------------------
# one coordinate-ascent run


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

    @property
    def mean_w(self) -> np.ndarray:
        """E_q[W], shape (F, K)."""
        return self.alpha_w / self.beta_w

    @property
    def mean_h(self) -> np.ndarray:
        """E_q[H], shape (K, N)."""
        return self.alpha_h / self.beta_h


@dataclass(frozen=True)
class _Problem:
    """Data and priors in the form the kernels take."""

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
    def build(cls, counts: Counts, K: int, priors: GammaPriors) -> _Problem:
        from .data import csr_index as _csr

        F, N = counts.shape
        indptr, cols, order = _csr(counts.nz_rows, counts.nz_cols, F)
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


def _init(prob: _Problem, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Draw a random start: E[w], E[h] ~ c U(0.5, 1.5), c^2 K the mean observed count."""
    n_obs = prob.F * prob.N - prob.m_rows.size
    c = np.sqrt(max(float(prob.vals.sum()) / max(n_obs, 1), 1e-12) / prob.K)
    a0 = 10.0  # a moderately concentrated start; the first update resets every shape
    Ew = c * rng.uniform(0.5, 1.5, (prob.F, prob.K))
    Eh = c * rng.uniform(0.5, 1.5, (prob.K, prob.N))
    return np.full_like(Ew, a0), a0 / Ew, np.full_like(Eh, a0), a0 / Eh


def _cavi(
    prob: _Problem,
    start: tuple[np.ndarray, ...],
    max_iter: int,
    tol: float,
) -> VIFit:
    """Coordinate ascent from ``start`` = (alpha_w, beta_w, alpha_h, beta_h).

    H's side is kept transposed, (N, K), so that every kernel runs row-major.
    """
    F, N, K = prob.F, prob.N, prob.K
    aW, bW = (np.array(x, dtype=np.float64) for x in start[:2])
    aH, bH = (np.ascontiguousarray(np.asarray(x, dtype=np.float64).T) for x in start[2:])
    L, Ew, Sw = np.empty((F, K)), np.empty((F, K)), np.empty((F, K))
    M, Eh, Sh = np.empty((N, K)), np.empty((N, K)), np.empty((N, K))
    # the pass runs in blocks of rows, each with its own Sh, summed in block order: the
    # result does not depend on how many threads run them
    bounds = _row_blocks(prob)
    nb = bounds.size - 1
    Sh_b = np.empty((nb, N, K))
    workers = min(nb, os.cpu_count() or 1)
    ex = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None

    def one(b: int) -> float:
        return float(_nz_pass(L, M, prob.indptr, prob.cols, prob.vals, Sw, Sh_b[b],
                              bounds[b], bounds[b + 1]))  # fmt: skip

    def _pass() -> float:
        liks = list(ex.map(one, range(nb))) if ex is not None else [one(b) for b in range(nb)]
        np.sum(Sh_b, axis=0, out=Sh)
        return float(np.sum(liks))

    try:
        return _iterate(prob, aW, bW, aH, bH, L, Ew, Sw, M, Eh, Sh, _pass, max_iter, tol)
    finally:
        if ex is not None:
            ex.shutdown()


def _row_blocks(prob: _Problem) -> np.ndarray:
    """Bounds of up to ``_BLOCKS`` blocks of rows with about equal non-zeros each.

    Fewer blocks where their Sh buffers (N x K each) would pass 64 MB.
    """
    nb = int(min(_BLOCKS, max(1, 64 * 2**20 // (8 * prob.N * prob.K)), prob.F))
    targets = np.linspace(0, prob.indptr[-1], nb + 1)
    b = np.searchsorted(prob.indptr, targets, side="left").astype(np.int64)
    b[0], b[-1] = 0, prob.F
    return np.unique(np.clip(b, 0, prob.F))


def _iterate(prob: _Problem, aW: np.ndarray, bW: np.ndarray, aH: np.ndarray, bH: np.ndarray,
             L: np.ndarray, Ew: np.ndarray, Sw: np.ndarray, M: np.ndarray, Eh: np.ndarray,
             Sh: np.ndarray, _pass: Any, max_iter: int, tol: float) -> VIFit:  # fmt: skip
    """Run the iterations of :func:`_cavi` (``_pass`` fills Sw, Sh from L, M in place)."""
    masked = prob.m_rows.size > 0
    corr_w = np.zeros_like(Sw)  # sum over row f's masked entries of E[h_kn]
    corr_h = np.zeros_like(Sh)  # sum over column n's masked entries of E[w_fk]
    trace: list[float] = []
    converged = False
    max_dec = 0.0
    it = 0
    while True:
        terms = _factor(aW, bW, prob.aw, prob.bw, L, Ew) + _factor(aH, bH, prob.ah, prob.bh, M, Eh)
        lik = _pass()
        sH = Eh.sum(axis=0)
        rate = float(Ew.sum(axis=0) @ sH)
        if masked:
            _masked_sums(Eh, prob.m_rows, prob.m_cols, corr_w)
            rate -= float(np.sum(Ew * corr_w))
        elbo = lik + prob.const - rate + terms
        if trace:
            change = (elbo - trace[-1]) / abs(elbo)
            max_dec = max(max_dec, -change)
            if -change > _ROUNDING:
                raise RuntimeError(
                    f"the ELBO decreased by {-change:.2e} relative at iteration {it} "
                    f"({trace[-1]!r} -> {elbo!r}); coordinate ascent cannot do that: a bug"
                )
            if change < tol:
                converged = True
        trace.append(elbo)
        if converged or it >= max_iter:
            break
        # q(W) given q(S) (this pass's proportions) and q(H)
        aW = prob.aw + L * Sw
        bW = prob.bw + (sH - corr_w if masked else sH)
        # q(H) given the same q(S) and the new q(W)
        Ew = aW / bW
        if masked:
            _masked_sums(Ew, prob.m_cols, prob.m_rows, corr_h)
        sW = Ew.sum(axis=0)
        aH = prob.ah + M * Sh
        bH = prob.bh + (sW - corr_h if masked else sW)
        it += 1
    aH, bH = np.ascontiguousarray(aH.T), np.ascontiguousarray(bH.T)
    return VIFit(aW, bW, aH, bH, trace[-1], np.array(trace), it, converged, max_dec)


# ---------------------------------------------------------------------------------------
# draws and the check against the exact posterior


def _log_q(fit: VIFit, W: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Log density of q on (log W, log H) per draw.

    Sum of alpha log beta - log Gamma(alpha) + alpha u - beta e^u, u = log w.
    """
    out = np.zeros(W.shape[0])
    for A, a, b in ((W, fit.alpha_w, fit.beta_w), (H, fit.alpha_h, fit.beta_h)):
        c = float(np.sum(a * np.log(b) - gammaln(a)))
        flat = A.reshape(A.shape[0], -1)
        out += c + np.log(flat) @ a.ravel() - flat @ b.ravel()
    return out


def _draw(fit: VIFit, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """N independent draws of (W, H) from q, float64, shapes (n, F, K), (n, K, N)."""
    W = rng.gamma(fit.alpha_w, 1.0 / fit.beta_w, size=(n, *fit.alpha_w.shape))
    H = rng.gamma(fit.alpha_h, 1.0 / fit.beta_h, size=(n, *fit.alpha_h.shape))
    # a Gamma draw can underflow to 0 for tiny shapes; the log density needs > 0
    return np.maximum(W, 1e-300), np.maximum(H, 1e-300)


def _psis(
    counts: Counts, K: int, priors: GammaPriors, fit: VIFit, n: int, rng: np.random.Generator
) -> dict:
    """PSIS of q against the exact posterior (Yao et al. 2018): k-hat and the weights' ESS."""
    from arviz_stats.base import array_stats

    from .sampling.density import LogDensity as _Density

    dens = _Density.build(counts, K, priors)
    log_w = np.empty(n)
    g = np.empty(dens.n_dim)
    for lo in range(0, n, _CHUNK):
        W, H = _draw(fit, min(_CHUNK, n - lo), rng)
        lq = _log_q(fit, W, H)
        for d in range(W.shape[0]):
            log_w[lo + d] = dens(dens.pack(W[d], H[d]), g) - lq[d]
    # arviz_stats' psislw smooths the tail of -ary (its input is LOO's -log-likelihood)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        lw, khat = array_stats.psislw(-log_w)
    lw = np.asarray(lw, dtype=np.float64)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    return {
        "khat": float(khat),
        "n_draws": int(n),
        "ess": float(1.0 / np.sum(w**2)),
        "elbo_mc": float(np.mean(log_w)),
        "elbo_mc_se": float(np.std(log_w, ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
    }


# ---------------------------------------------------------------------------------------
# the public entry point


def _predictive_entries(
    counts: Counts,
    W: np.ndarray,
    H: np.ndarray,
    draw_idx: np.ndarray,
    n_entries: int,
    rng: np.random.Generator,
) -> xr.Dataset:
    """Predictive counts (int32) at a random subsample of observed entries, dim ``entry``.

    W (1, D, F, K), H (1, D, K, N); the layout of a masked fit's pointwise groups
    (``entry`` with ``row`` and ``column`` coordinates), so ``diagnose`` reads it the
    same way. WH is formed at the chosen entries only, never F x N.
    """
    F, N = counts.shape
    rng_e, rng_p = rng.spawn(2)
    flat = rng_e.choice(F * N, size=min(F * N, 2 * n_entries + 1000), replace=False)
    if counts.has_mask:
        flat = flat[~np.isin(flat, counts.missing_rows * N + counts.missing_cols)]
    flat = np.sort(flat[:n_entries])
    r, c = flat // N, flat % N
    pp = np.empty((1, draw_idx.size, flat.size), dtype=np.int32)
    for lo in range(0, draw_idx.size, 8):
        idx = draw_idx[lo : lo + 8]
        lam = np.zeros((idx.size, flat.size))
        for k in range(W.shape[-1]):
            lam += W[0, idx][:, r, k] * H[0, idx][:, k, c]
        pp[0, lo : lo + idx.size] = rng_p.poisson(lam)
    coords = {"chain": np.arange(1), "draw": draw_idx, "entry": np.arange(flat.size),
              "row": ("entry", counts.row[r]), "column": ("entry", counts.column[c])}  # fmt: skip
    return xr.Dataset({"V": (("chain", "draw", "entry"), pp)}, coords=coords)


def _observed(counts: Counts) -> xr.DataArray:
    """V as a dense DataArray (row, column), int32 where the counts allow (else int64).

    Filled from the non-zeros: no float64 F x N copy on the way (``Counts.to_dataarray``
    makes one), so 20,000 x 5,000 counts take 400 MB here rather than 1.6 GB at peak.
    """
    big = counts.nz_values.size and float(counts.nz_values.max()) >= 2**31
    V = np.zeros(counts.shape, dtype=np.int64 if big else np.int32)
    V[counts.nz_rows, counts.nz_cols] = counts.nz_values
    return xr.DataArray(V, dims=("row", "column"), name="V",
                        coords={"row": counts.row, "column": counts.column})  # fmt: skip


def _positive_int(name: str, val: Any) -> int:
    if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
        raise ValueError(f"{name} must be a positive integer, got {val!r}")
    return int(val)


def _default_draws(F: int, N: int, K: int) -> int:
    per_draw = (F + N) * K * 4  # float32
    return int(max(1, min(_DEFAULT_DRAWS, _DRAW_BYTES // per_draw)))


def sample_vi(
    V: Any,
    n_components: int,
    *,
    priors: GammaPriors = _DEFAULT_PRIORS,
    draws: int | None = None,
    restarts: int = 3,
    max_iter: int = 1000,
    tol: float = 1e-6,
    random_seed: Any = None,
    normalize: Normalize = "W",
    mask: Any = None,
    pointwise_draws: int | None = 500,
    psis_draws: int = 100,
) -> xr.DataTree:
    """Mean-field variational posterior of W and H, as draws in ``sample_posterior``'s layout.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`. Sparse input stays sparse.
    n_components : int
        K.
    priors : GammaPriors
        Gamma(shape, rate) priors on W and H (scalars or arrays); flat priors refused.
    draws : int, optional
        Independent draws from q, stored as one chain in float32. Default: 1000, or
        fewer so that they take at most 256 MB ((F + N) K x 4 bytes each).
    restarts : int
        Random starts, each run to convergence; the best ELBO is kept.
    max_iter : int
        Iterations per restart at most (a ``ConvergenceWarning`` when reached).
    tol : float
        Stop when the relative ELBO increase of an iteration is below this.
    random_seed : int, numpy.random.Generator or None
        Seeds the starts, the draws, the PSIS draws and the predictive draws.
    normalize : {"W", "H"}
        As in :func:`poisson_nmf.sample_posterior`.
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries.
    pointwise_draws : int or None
        Draws for the ``log_likelihood`` and ``posterior_predictive`` groups (as in
        :func:`poisson_nmf.sample_posterior`). Where draws x observed entries would
        pass 25 million values, only ``posterior_predictive``, at a random subsample of
        observed entries (dim ``entry``, as with a mask), for the predictive checks
        (``attrs["vi"]["pointwise"]`` says so).
    psis_draws : int
        Draws for PSIS k-hat against the exact posterior: 0 (not computed) or at least
        25. Each costs one exact log density, O(nnz K).

    Returns
    -------
    xarray.DataTree
        ``posterior`` W (chain, draw, row, component), H (chain, draw, component,
        column), float32, normalised and aligned to q's mean (``chain`` has size 1);
        ``sample_stats``: ``permutation``, ``scale``; ``reference``: q's normalised mean;
        ``variational``: q itself, unnormalised, in the components' original order
        (``W_shape``, ``W_rate`` (row, component), ``H_shape``, ``H_rate``);
        ``observed_data``; the pointwise groups. ``attrs``: ``method = "vi"``,
        ``approximate = True``, ``vi`` (JSON: ELBO trace of the best run, every
        restart's ELBO, iterations and distance to the best, the convergence rule,
        PSIS k-hat), ``settings``, ``normalize``, ``sampling_time_s``, ``total_time_s``.

    Raises
    ------
    ValueError, TypeError
        For bad counts, K, priors or settings.
    RuntimeError
        If the ELBO decreases beyond rounding (a bug).
    """
    from ._validation import proper_priors as _check_priors
    from .sampling.plan import seed_repr as _seed_repr
    from .sampling.pointwise import pointwise as _pointwise

    t_start = time.perf_counter()
    counts = as_counts(V, mask=mask)
    K = check_n_components(n_components, counts)
    priors = _check_priors(priors)
    _check_normalize(normalize)
    F, N = counts.shape
    draws = _default_draws(F, N, K) if draws is None else _positive_int("draws", draws)
    restarts = _positive_int("restarts", restarts)
    max_iter = _positive_int("max_iter", max_iter)
    if not (isinstance(tol, int | float) and 0 < tol < 1):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    if (
        isinstance(psis_draws, bool)
        or not isinstance(psis_draws, int | np.integer)
        or not (psis_draws == 0 or psis_draws >= 25)
    ):
        raise ValueError(
            f"psis_draws must be 0 (no PSIS check) or an integer >= 25 (ArviZ's PSIS fits "
            f"the largest fifth of the weights and needs 5 of them), got {psis_draws!r}"
        )
    if pointwise_draws is not None and (
        not isinstance(pointwise_draws, int | np.integer) or pointwise_draws < 0
    ):
        raise ValueError(
            f"pointwise_draws must be None or an integer >= 0, got {pointwise_draws!r}"
        )

    rng = np.random.default_rng(random_seed)
    rng_starts, rng_draws, rng_psis, rng_pp = rng.spawn(4)
    prob = _Problem.build(counts, K, priors)
    fits = []
    for r in rng_starts.spawn(restarts):
        fits.append(_cavi(prob, _init(prob, r), max_iter, tol))
    best = int(np.argmax([f.elbo for f in fits]))
    fit = fits[best]
    if not fit.converged:
        warnings.warn(
            f"the best restart did not converge in max_iter={max_iter} iterations "
            f"(last relative ELBO change above tol={tol}); raise max_iter",
            ConvergenceWarning,
            stacklevel=2,
        )
    W_ref, H_ref = fit.mean_w, fit.mean_h
    ref = align_factors(W_ref, H_ref, W_ref, H_ref, normalize=normalize)
    restart_info = []
    for i, f in enumerate(fits):
        al = align_factors(f.mean_w, f.mean_h, W_ref, H_ref, normalize=normalize)
        Wn = al.W if normalize == "W" else al.W / al.W.sum(axis=0)
        Wr = ref.W if normalize == "W" else ref.W / ref.W.sum(axis=0)
        tv = 0.5 * np.abs(Wn - Wr).sum(axis=0)
        restart_info.append(
            {
                "elbo": f.elbo,
                "elbo_gap": fit.elbo - f.elbo,
                "n_iter": f.n_iter,
                "converged": f.converged,
                "max_tv_distance_w": float(tv.max()),
                "best": i == best,
            }
        )
    fit_time = time.perf_counter() - t_start
    t_draws = time.perf_counter()

    # draws from q, normalised and aligned chunk by chunk (align_factors is float64)
    Wa = np.empty((1, draws, F, K), dtype=np.float32)
    Ha = np.empty((1, draws, K, N), dtype=np.float32)
    perm = np.empty((1, draws, K), dtype=np.int64)
    scale = np.empty((1, draws, K), dtype=np.float64)
    for lo in range(0, draws, _CHUNK):
        W, H = _draw(fit, min(_CHUNK, draws - lo), rng_draws)
        al = align_factors(W, H, W_ref, H_ref, normalize=normalize)
        hi = lo + W.shape[0]
        Wa[0, lo:hi], Ha[0, lo:hi], perm[0, lo:hi], scale[0, lo:hi] = (
            al.W, al.H, al.permutation, al.scale
        )  # fmt: skip
        del W, H, al
    t_psis = time.perf_counter()
    psis = _psis(counts, K, priors, fit, psis_draws, rng_psis) if psis_draws > 0 else None
    t_rest = time.perf_counter()

    coords = {"row": counts.row, "column": counts.column, "component": np.arange(K)}
    sc = {"chain": np.arange(1), "draw": np.arange(draws)}
    groups: dict[str, xr.Dataset] = {
        "posterior": xr.Dataset(
            {
                "W": (("chain", "draw", "row", "component"), Wa),
                "H": (("chain", "draw", "component", "column"), Ha),
            },
            coords={**sc, **coords},
        ),
        "sample_stats": xr.Dataset(
            {
                "permutation": (("chain", "draw", "component"), perm),
                "scale": (("chain", "draw", "component"), scale),
            },
            coords={**sc, "component": np.arange(K)},
        ),
        "reference": xr.Dataset(
            {"W": (("row", "component"), ref.W), "H": (("component", "column"), ref.H)},
            coords=coords,
        ),
        "variational": xr.Dataset(
            {
                "W_shape": (("row", "component"), fit.alpha_w),
                "W_rate": (("row", "component"), fit.beta_w),
                "H_shape": (("component", "column"), fit.alpha_h),
                "H_rate": (("component", "column"), fit.beta_h),
            },
            coords=coords,
        ),
        "observed_data": xr.Dataset({"V": _observed(counts)}),
    }
    if counts.has_mask:
        groups["observed_data"]["mask"] = (("row", "column"), ~counts.observed())

    n_obs = counts.n_observed
    n_pw = draws if pointwise_draws is None else min(pointwise_draws, draws)
    pointwise_note = None
    if n_pw * n_obs > _POINTWISE_VALUES:
        # too many entries for all of them: predictive draws at a random subsample of
        # observed entries, for the predictive checks; no log_likelihood group (LOO on
        # a subsample would be the elpd of the subsample, not of V)
        draw_idx = np.unique(np.linspace(0, draws - 1, n_pw).round().astype(int))
        n_e = _POINTWISE_VALUES // draw_idx.size
        groups["posterior_predictive"] = _predictive_entries(counts, Wa, Ha, draw_idx, n_e, rng_pp)
        pointwise_note = (
            f"posterior_predictive at a random subsample of {n_e} of the {n_obs} observed "
            f"entries ({draw_idx.size} draws, at most {_POINTWISE_VALUES} values); "
            "no log_likelihood group (no PSIS-LOO)"
        )
        n_pw = 0
    if n_pw > 0:
        draw_idx = np.unique(np.linspace(0, draws - 1, n_pw).round().astype(int))
        # the aligned draws give the same WH as the raw ones
        # _pointwise forms WH for a chunk of draws at a time: (chunk, F, N) float32
        chunk = max(1, min(32, 4_000_000 // (F * N)))
        ll_pw, pp = _pointwise(counts, Wa, Ha, draw_idx, rng_pp, 1, chunk)
        pc: dict[str, Any] = {"chain": np.arange(1), "draw": draw_idx}
        if counts.has_mask:
            r_, c_ = np.nonzero(counts.observed())
            dims: tuple[str, ...] = ("chain", "draw", "entry")
            pc = {**pc, "entry": np.arange(r_.size), "row": ("entry", counts.row[r_]),
                  "column": ("entry", counts.column[c_])}  # fmt: skip
        else:
            ll_pw = ll_pw.reshape(1, draw_idx.size, F, N)
            pp = pp.reshape(1, draw_idx.size, F, N)
            dims = ("chain", "draw", "row", "column")
            pc = {**pc, "row": counts.row, "column": counts.column}
        groups["log_likelihood"] = xr.Dataset({"V": (dims, ll_pw)}, coords=pc)
        groups["posterior_predictive"] = xr.Dataset({"V": (dims, pp)}, coords=pc)

    vi_info = {
        "algorithm": "coordinate-ascent mean-field VI on the latent counts (Cemgil 2009)",
        "elbo": fit.elbo,
        "elbo_trace": [float(x) for x in fit.elbo_trace],
        "n_iter": fit.n_iter,
        "converged": fit.converged,
        "convergence_rule": f"relative ELBO increase < tol = {tol} (max_iter = {max_iter})",
        "max_relative_decrease": fit.max_decrease,
        "restarts": restart_info,
        "restart_elbo_spread": float(max(r["elbo_gap"] for r in restart_info)),
        "restart_max_tv_distance_w": float(max(r["max_tv_distance_w"] for r in restart_info)),
        "psis": psis,
        "pointwise": pointwise_note,
        "draws_dtype": "float32",
        "time_s": {
            "fit": fit_time,
            "draws": t_psis - t_draws,
            "psis": t_rest - t_psis,
            "tree": time.perf_counter() - t_rest,
        },
    }
    settings = {
        "method": "vi",
        "n_components": K,
        "priors": {k: np.asarray(v).tolist() for k, v in asdict(priors).items()},
        "draws": int(draws),
        "restarts": restarts,
        "max_iter": max_iter,
        "tol": tol,
        "normalize": normalize,
        "pointwise_draws": pointwise_draws,
        "psis_draws": psis_draws,
        "random_seed": _seed_repr(random_seed),
    }
    from ._version import __version__

    tree = xr.DataTree.from_dict(groups)
    tree.attrs = {
        "method": "vi",
        "approximate": True,
        "vi": json.dumps(vi_info),
        "settings": json.dumps(settings),
        "normalize": normalize,
        "sampling_time_s": fit_time,
        "inference_library": "poisson_nmf.vi",
        "poisson_nmf_version": __version__,
        "total_time_s": time.perf_counter() - t_start,
    }
    return tree


# what sample_posterior(method="vi") passes on; every other argument of sample_posterior
# only means something for NUTS and is refused when set to other than its default
_SHARED = ("V", "n_components", "priors", "draws", "random_seed", "normalize", "mask",
           "pointwise_draws")  # fmt: skip
# accepted and not used: progress (nothing long to show), max_memory (VI's memory is
# O(nnz + (F + N) K) plus its draws, whose default size is bounded; see sample_vi)
_IGNORED = ("progress", "max_memory")


def _from_sample_posterior(args: dict) -> xr.DataTree:
    """Run :func:`sample_vi` for ``sample_posterior(method="vi", ...)``.

    ``args`` are sample_posterior's arguments (its ``locals()`` on entry). An argument
    equal to its default counts as not set (``draws`` at its NUTS default gets VI's).
    """
    import inspect

    from .sampling.api import sample_posterior

    method = args.pop("method")
    if method != "vi":
        raise ValueError(f"method must be 'nuts' or 'vi', got {method!r}")
    params = inspect.signature(sample_posterior).parameters
    set_nuts = []
    for name, val in args.items():
        if name in _SHARED or name in _IGNORED:
            continue
        default = params[name].default if name in params else inspect.Parameter.empty
        same = val is default or (
            isinstance(val, str | int | float | type(None))
            and type(val) is type(default)
            and val == default
        )
        if not same:
            set_nuts.append(name)
    if set_nuts:
        raise ValueError(
            f"{', '.join(sorted(set_nuts))}: only for NUTS, not used "
            "with method='vi'; leave them out (the VI settings restarts, max_iter, tol and "
            "psis_draws are arguments of poisson_nmf.sample_vi)"
        )
    kw = {name: args[name] for name in _SHARED if name in args}
    if "draws" in params and kw.get("draws") == params["draws"].default:
        kw["draws"] = None
    return sample_vi(**kw)
