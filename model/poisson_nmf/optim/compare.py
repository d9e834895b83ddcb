"""MAP versus KL: the check that the PyMC MAP is the KL-NMF solution.

Two optimisers from the same start can end in different local optima of NMF, so the
claim is checked where it must hold exactly: each solution, handed to the other
method as its starting point, must not move (``objective_gap``), and each must be a
Karush-Kuhn-Tucker point of the other's objective. The identity
``model logp + objective = constant`` is checked on the PyMC model itself, and the
factors of the two independent fits are compared after removing the scale (columns of
W summing to one) and the order of components (optimal matching).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from .._typing import CountsLike, SeedLike
from ..data import as_counts, check_n_components
from ..divergence import kl_divergence
from ..exceptions import ConvergenceWarning
from ..priors import GammaPriors
from .kl import KLResult, kl_nmf
from .map import MAPProblem, MAPResult

__all__ = ["MAPvsKL", "compare_map_kl", "kkt_residual", "matched_agreement"]

# stopping tolerance of the two independent fits (relative decrease per iteration)
_TOL = 1e-12


@dataclass(frozen=True)
class MAPvsKL:
    """Result of :func:`compare_map_kl`.

    Attributes
    ----------
    kl : KLResult
        The KL-NMF (or penalised KL) fit from the shared start.
    map : MAPResult
        The PyMC MAP fit from the same start.
    objective_gap : float
        The larger relative objective change when the KL solution is polished by the
        PyMC MAP and the MAP solution by the KL solver.
    kkt_kl_under_map, kkt_map_under_kl : float
        Relative KKT residual (:func:`kkt_residual`) of each solution under the
        other's gradient: the KL solution under the gradient of PyMC's log-density
        (:func:`poisson_nmf.pymc_logp_grad`), the MAP under the gradient of the
        (penalised) KL objective.
    identity_error : float
        max |model logp + objective - constant| / max(|logp|, |constant|) at the MAP
        fit, the KL solution and the KL solution polished by the MAP, with the logp
        computed by the PyMC model.
    same_optimum : bool
        Whether the two independent fits ended at the same objective (relative 1e-6).
    w_agreement, h_agreement : float
        Largest absolute difference of matched, normalised W (columns sum to one) and
        the relative difference of the matching H.
    """

    kl: KLResult
    map: MAPResult
    objective_gap: float
    kkt_kl_under_map: float
    kkt_map_under_kl: float
    identity_error: float
    same_optimum: bool
    w_agreement: float
    h_agreement: float

    def summary(self) -> str:
        """Return a few lines for a person to read."""
        return "\n".join(
            [
                f"KL fit objective   {self.kl.objective:.6f}",
                f"MAP fit objective  {self.map.objective:.6f}",
                f"same optimum: {self.same_optimum}",
                f"objective gap after cross-polishing: {self.objective_gap:.2e}",
                f"KKT residuals: KL under MAP {self.kkt_kl_under_map:.2e}, "
                f"MAP under KL {self.kkt_map_under_kl:.2e}",
                f"identity logp + objective = constant: error {self.identity_error:.2e}",
                f"matched factors: max |ΔW| {self.w_agreement:.3g}, rel ΔH {self.h_agreement:.3g}",
            ]
        )


def kkt_residual(
    V: CountsLike,
    W: np.ndarray,
    H: np.ndarray,
    priors: GammaPriors | None = None,
    *,
    gradient: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    r"""Relative KKT residual of min objective(W, H) subject to W, H >= 0.

    With ∇ the gradient of D(V || WH) (+ the Gamma penalty) and x̄ the mean entry of
    the factor, the residual is

    .. math::

        \max_{x \in W, H} |\min(x / \bar x, ∇_x)| \,/\, s,

    zero exactly at a stationary point of the constrained problem (∇ = 0 where x > 0,
    ∇ >= 0 where x = 0). ``s`` is the largest entry of the gradient of the linear part
    Σ λ (the column sums of H and row sums of W over observed entries), the scale of
    the gradient's terms that cancel at a solution.

    The gradient is formed from the non-zeros of V and the missing entries only
    (sparse matrices), never an F x N array: :math:`∇_W = O H^T - R H^T`,
    :math:`∇_H = W^T O - W^T R`, with :math:`R = V / Λ` at the non-zeros (zero
    elsewhere), O the indicator of the observed entries and
    :math:`O H^T = 1 (H 1)^T - M H^T`, M the (sparse) indicator of the missing ones.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts (a :class:`Counts` carries its mask of missing entries).
    W : numpy.ndarray, shape (F, K)
    H : numpy.ndarray, shape (K, N)
    priors : GammaPriors or None
        Add the gradient of the Gamma penalty (ignored when ``gradient`` is given).
    gradient : tuple (grad_W, grad_H), optional
        The gradient of the objective (penalty included) to use instead, shapes
        (F, K) and (K, N): e.g. minus the gradient of PyMC's log-density
        (:func:`poisson_nmf.pymc_logp_grad`), which differs from the objective's by
        nothing but rounding.

    Returns
    -------
    float
    """
    c = as_counts(V)
    F, N = c.shape
    mr, mc = c.missing_rows, c.missing_cols
    M = sp.csr_array((np.ones(mr.size), (mr, mc)), shape=(F, N))
    # gradient of the linear term Σ λ over observed entries
    lin_W = H.sum(axis=1)[None, :] - M @ H.T
    lin_H = W.sum(axis=0)[:, None] - (M.T @ W).T
    if gradient is not None:
        gW, gH = (np.asarray(g, dtype=np.float64) for g in gradient)
    else:
        # and of -Σ v log λ, from the non-zeros
        r, col, v = c.nz_rows, c.nz_cols, c.nz_values
        lam = np.einsum("ik,ki->i", W[r], H[:, col])
        R = sp.csr_array((v / lam, (r, col)), shape=(F, N))
        gW = lin_W - R @ H.T
        gH = lin_H - (R.T @ W).T
        if priors is not None:
            aw, bw, ah, bh = priors.arrays(F, N, W.shape[1])
            # (a - 1) / x only where a > 1: a = 1 has no log term (and x may be 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                gW = gW + bw - np.where(aw > 1.0, (aw - 1.0) / W, 0.0)
                gH = gH + bh - np.where(ah > 1.0, (ah - 1.0) / H, 0.0)
    scale = max(float(np.abs(lin_W).max()), float(np.abs(lin_H).max()))
    res = max(
        float(np.abs(np.minimum(W / W.mean(), gW)).max()),
        float(np.abs(np.minimum(H / H.mean(), gH)).max()),
    )
    return res / scale


def matched_agreement(
    W1: np.ndarray, H1: np.ndarray, W2: np.ndarray, H2: np.ndarray
) -> tuple[float, float, np.ndarray]:
    """Compare two factorisations after removing scale and order.

    Columns of W are scaled to sum to one (the scale moved into H), components matched
    by the Hungarian algorithm on the L1 distance of normalised W columns.

    Returns
    -------
    w_diff : float
        max |W1n - W2n[:, perm]|.
    h_diff : float
        max |H1n - H2n[perm]| / max |H1n|.
    perm : numpy.ndarray, shape (K,)
        Component of fit 2 matched to each component of fit 1.
    """
    s1, s2 = W1.sum(0), W2.sum(0)
    s1 = np.where(s1 > 0, s1, 1.0)
    s2 = np.where(s2 > 0, s2, 1.0)
    W1n, W2n = W1 / s1, W2 / s2
    H1n, H2n = H1 * s1[:, None], H2 * s2[:, None]
    cost = np.abs(W1n[:, :, None] - W2n[:, None, :]).sum(0)
    _, perm = linear_sum_assignment(cost)
    w_diff = float(np.abs(W1n - W2n[:, perm]).max())
    h_diff = float(np.abs(H1n - H2n[perm]).max() / max(np.abs(H1n).max(), 1e-300))
    return w_diff, h_diff, perm


def compare_map_kl(
    V: CountsLike,
    n_components: int,
    *,
    priors: GammaPriors | None = None,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    max_iter_kl: int = 5000,
    max_iter_map: int = 500,
    random_seed: SeedLike = None,
) -> MAPvsKL:
    """Fit KL-NMF and the PyMC MAP from one start and check that they agree.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts.
    n_components : int
        K.
    priors : GammaPriors or None
        ``None`` compares plain KL-NMF with the flat-prior MAP; Gamma priors compare
        the penalised KL solver with the Gamma MAP.
    init : tuple (W0, H0), optional
        Shared start; default :func:`initial_factors` with ``random_seed``. Entries
        below the floor that :func:`fit_map` keeps (1e-12 times the typical factor
        size) are raised to it for both fits.
    max_iter_kl, max_iter_map : int
        Iteration budgets of the two independent fits, which run to a relative
        objective decrease of 1e-12 per iteration; the cross-polishing runs (each
        solution handed to the other method) to 1e-13.
    random_seed : int, Generator or None
        Seed of the shared start.

    Returns
    -------
    MAPvsKL
    """
    counts = as_counts(V)
    K = check_n_components(n_components)
    # one PyMC model, compiled once, for both MAP fits and the gradient at the KL fit
    problem = MAPProblem(counts, K, priors)
    W0, H0 = problem.start(init, random_seed)
    t0 = time.perf_counter()
    problem.fn  # noqa: B018 (compile now; the MAP fit's time includes it)
    compile_s = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # both to a relative decrease of 1e-12 per iteration: KKT residuals ~1e-6
        kl = kl_nmf(counts, K, priors=priors, init=(W0, H0), max_iter=max_iter_kl, tol=_TOL)
        mp = problem.fit(W0, H0, max_iter_map, _TOL, False, None, time.perf_counter() - compile_s)
        # cross-polishing with tight tolerances: a stationary point must not move
        W_kl, H_kl = problem.floored(kl.W, kl.H)
        t1 = time.perf_counter()
        mp_from_kl = problem.fit(W_kl, H_kl, 50, 1e-13, False, None, t1)
        kl_from_mp = kl_nmf(counts, K, priors=priors, init=(mp.W, mp.H), max_iter=2000, tol=1e-13)
    # relative to the objective, floored at a millionth of the counts: a table the model
    # fits exactly has objective ~0, and a relative gap there would be rounding over zero
    scale = max(abs(kl.objective), abs(mp.objective), 1e-6 * max(counts.total, 1.0))
    gap = max(
        abs(mp_from_kl.objective - kl.objective) / scale,
        abs(kl_from_mp.objective - mp.objective) / scale,
    )
    # each solution under the other's gradient: the KL solution under PyMC's
    # log-density (at the floor fit_map keeps), the MAP under the KL objective's
    lp_kl, gW, gH = problem.fn.value_grad(W_kl, H_kl)
    obj_kl = kl_divergence(counts, (W_kl, H_kl))
    if priors is not None:
        obj_kl += priors.penalty(W_kl, H_kl)
    const = problem.const
    # relative to the size of the terms that cancel, not to the (smaller) constant
    identity = max(
        abs(lp + obj - const) / max(abs(lp), abs(const))
        for lp, obj in (
            (mp.logp, mp.objective),
            (mp_from_kl.logp, mp_from_kl.objective),
            (lp_kl, obj_kl),
        )
    )
    w_diff, h_diff, _ = matched_agreement(kl.W, kl.H, mp.W, mp.H)
    return MAPvsKL(
        kl=kl,
        map=mp,
        objective_gap=float(gap),
        kkt_kl_under_map=kkt_residual(counts, kl.W, kl.H, gradient=(-gW, -gH)),
        kkt_map_under_kl=kkt_residual(counts, mp.W, mp.H, priors),
        identity_error=float(identity),
        same_optimum=bool(abs(kl.objective - mp.objective) <= 1e-6 * scale),
        w_agreement=w_diff,
        h_agreement=h_diff,
    )
