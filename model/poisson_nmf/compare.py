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

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from .data import as_counts, check_n_components
from .divergence import loglik_constant
from .fit import MAPResult, fit_map
from .kl import ConvergenceWarning, KLResult, initial_factors, kl_nmf
from .priors import GammaPriors

__all__ = ["MAPvsKL", "compare_map_kl", "kkt_residual", "matched_agreement"]


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
        Relative KKT residual of each solution under the other's gradient.
    identity_error : float
        max |model logp + objective - constant| / |constant| over the points checked.
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


def kkt_residual(V: Any, W: np.ndarray, H: np.ndarray, priors: GammaPriors | None = None) -> float:
    """Relative KKT residual of min objective(W, H) subject to W, H >= 0.

    The residual is max |min(x, ∇x)| over W and H, relative to the largest |∇|
    scale, where ∇ is the gradient of D(V || WH) (+ penalty): zero exactly at a
    stationary point of the constrained problem.
    """
    c = as_counts(V)
    r, col, v = c.nz_rows, c.nz_cols, c.nz_values
    lam = np.einsum("ik,ki->i", W[r], H[:, col])
    ratio = np.zeros(c.shape)
    ratio[r, col] = v / lam
    obs = c.observed().astype(np.float64)
    # gradient of the linear term Σ λ over observed entries, then of -Σ v log λ
    lin_W, lin_H = obs @ H.T, W.T @ obs
    gW = lin_W - ratio @ H.T
    gH = lin_H - W.T @ ratio
    if priors is not None:
        aw, bw, ah, bh = priors.arrays(*c.shape, W.shape[1])
        gW = gW + bw - (aw - 1.0) / W
        gH = gH + bh - (ah - 1.0) / H
    scale = max(float(np.abs(lin_W).max()), float(np.abs(lin_H).max()))
    res = max(
        float(np.abs(np.minimum(W, gW * W.mean())).max() / W.mean()),
        float(np.abs(np.minimum(H, gH * H.mean())).max() / H.mean()),
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
    V: Any,
    n_components: int,
    *,
    priors: GammaPriors | None = None,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    max_iter_kl: int = 5000,
    max_iter_map: int = 500,
    random_seed: int | np.random.Generator | None = None,
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
        Shared start; default :func:`initial_factors` with ``random_seed``.
    max_iter_kl, max_iter_map : int
        Iteration budgets of the two independent fits.
    random_seed : int, Generator or None
        Seed of the shared start.

    Returns
    -------
    MAPvsKL
    """
    counts = as_counts(V)
    K = check_n_components(n_components)
    if init is None:
        init = initial_factors(counts, K, random_seed=random_seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        kl = kl_nmf(counts, K, priors=priors, init=init, max_iter=max_iter_kl, tol=1e-10)
        mp = fit_map(counts, K, priors=priors, init=init, max_iter=max_iter_map, tol=1e-10)
        # cross-polishing with tight tolerances: a stationary point must not move
        mp_from_kl = fit_map(counts, K, priors=priors, init=(kl.W, kl.H), max_iter=50, tol=1e-13)
        kl_from_mp = kl_nmf(counts, K, priors=priors, init=(mp.W, mp.H), max_iter=2000, tol=1e-13)
    gap = max(
        abs(mp_from_kl.objective - kl.objective) / abs(kl.objective),
        abs(kl_from_mp.objective - mp.objective) / abs(mp.objective),
    )
    const = loglik_constant(counts)
    if priors is not None:
        const += priors.log_normaliser(*counts.shape, K)
    # relative to the size of the terms that cancel, not to the (smaller) constant
    identity = max(
        abs(mp.logp + mp.objective - const) / max(abs(mp.logp), abs(const)),
        abs(mp_from_kl.logp + mp_from_kl.objective - const) / max(abs(mp_from_kl.logp), abs(const)),
    )
    w_diff, h_diff, _ = matched_agreement(kl.W, kl.H, mp.W, mp.H)
    return MAPvsKL(
        kl=kl,
        map=mp,
        objective_gap=float(gap),
        kkt_kl_under_map=kkt_residual(counts, kl.W, kl.H, priors),
        kkt_map_under_kl=kkt_residual(counts, mp.W, mp.H, priors),
        identity_error=float(identity),
        same_optimum=bool(abs(kl.objective - mp.objective) <= 1e-6 * abs(kl.objective)),
        w_agreement=w_diff,
        h_agreement=h_diff,
    )
