r"""MAP through the PyMC model's own log-density.

The MAP maximises ``model.logp(jacobian=False)`` on the original scale of W and H
(no Jacobian term, so it is the mode of the density of W and H themselves, not of
their logarithms). The optimiser only ever sees PyMC's compiled log-density and
derivatives obtained from it by automatic differentiation.

Algorithm: alternating projected Newton (Bertsekas 1982) on the blocks W and H.
For fixed H the log-density is concave in W and separable by rows, so its Hessian is
block diagonal with one K x K block per row; all F blocks come from K
Hessian-vector products of PyTensor's gradient (the product with a matrix of ones in
column k returns column k of every block). Each row takes a damped Newton step on
its free variables, entries held at 0 with an outward gradient stay there, and a
backtracking line search on PyMC's log-density keeps every step an ascent. H is
treated the same way by columns.

References
----------
D. P. Bertsekas, "Projected Newton methods for optimization problems with simple
constraints", SIAM J. Control Optim. 20 (1982).
C.-J. Hsieh and I. S. Dhillon, "Fast coordinate descent methods with variable
selection for non-negative matrix factorization", KDD 2011 (block Newton view).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt
from pymc.model.transform.conditioning import remove_value_transforms

from .data import Counts, as_counts, check_n_components
from .divergence import kl_divergence, loglik_constant
from .kl import ConvergenceWarning, _check_init, initial_factors
from .model import build_model
from .priors import GammaPriors

__all__ = ["MAPResult", "fit_map"]

# Entries are kept >= _FLOOR times the typical factor size. Where V has an all-zero
# row or column the flat-prior optimum puts whole rows of W or columns of H at 0,
# where 0/0 makes PyTensor's Poisson gradient NaN; the floor moves the objective by
# about _FLOOR relative, far below every tolerance used here.
_FLOOR = 1e-12


@dataclass(frozen=True)
class MAPResult:
    """A MAP fit of the PyMC model.

    Attributes
    ----------
    W : numpy.ndarray, shape (F, K)
    H : numpy.ndarray, shape (K, N)
    objective : float
        D(V || WH), plus the Gamma penalty when priors are given: the same scale as
        :attr:`poisson_nmf.KLResult.objective`. Equals ``constant - model logp``.
    logp : float
        PyMC's ``model.logp(jacobian=False)`` at (W, H).
    n_iter : int
        Outer iterations (one W step and one H step each).
    converged : bool
    history : numpy.ndarray, shape (n_iter,)
        The objective after each outer iteration.
    seconds : float
        Wall time of the optimisation (compilation included).
    """

    W: np.ndarray
    H: np.ndarray
    objective: float
    logp: float
    n_iter: int
    converged: bool
    history: np.ndarray = field(repr=False)
    seconds: float = 0.0


class _PyMCBlocks:
    """PyMC's log-density of (W, H), its gradient and the row/column Hessian blocks."""

    def __init__(self, model: Any, K: int) -> None:
        m = remove_value_transforms(model)
        vv = {v.name: v for v in m.value_vars}
        W, H = vv["W"], vv["H"]
        lp = m.logp(jacobian=False)
        gW, gH = pt.grad(lp, [W, H])
        # column k of every row block of d2 logp / dW2 (rows of W are independent given H)
        hW = pt.stack([pt.grad(gW[:, k].sum(), W) for k in range(K)], axis=1)
        hH = pt.stack([pt.grad(gH[k, :].sum(), H) for k in range(K)], axis=0)
        self.logp = pytensor.function([W, H], lp)
        self.w_step = pytensor.function([W, H], [gW, hW])
        self.h_step = pytensor.function([W, H], [gH, hH])


def _newton_direction(x: np.ndarray, g: np.ndarray, blocks: np.ndarray, lo: float) -> np.ndarray:
    """Projected Newton ascent direction for rows x (B, K) with Hessian blocks (B, K, K)."""
    B, K = x.shape
    diag0 = -np.einsum("bkk->bk", blocks)
    # a direction with no curvature (e.g. H over an all-zero column of V) is linear:
    # its maximum is on the bound, reached by the line search, not by a Newton step
    flat = diag0 <= 1e-12 * max(float(np.median(diag0)), 1e-300)
    active = ((x <= lo * (1 + 1e-9)) & (g <= 0)) | flat
    free = ~active
    A = -blocks * (free[:, :, None] & free[:, None, :])
    diag = np.einsum("bkk->bk", A)
    idx = np.arange(K)
    # tiny damping keeps nearly singular blocks solvable
    A[:, idx, idx] = np.where(free, diag + 1e-9 * diag.mean(axis=1, keepdims=True), 1.0)
    rhs = np.where(free, g, 0.0)
    d = np.linalg.solve(A, rhs[..., None])[..., 0]
    bad = ~np.isfinite(d).all(axis=1)
    if bad.any():
        d[bad] = np.where(free[bad], rhs[bad] / np.maximum(diag[bad], 1e-300), 0.0)
    d = np.where(flat, np.where(g < 0, lo - x, 0.0), d)
    # a trust region: nearly singular blocks (a row of V with one count) give huge
    # Newton steps along directions without curvature; at most x10 growth per step
    return np.minimum(d, 10.0 * (x + float(np.mean(x))))
    return d


def _ascend(
    f_logp: Any, lp0: float, x: np.ndarray, d: np.ndarray, put: Any, lo: float
) -> tuple[np.ndarray, float, bool]:
    """Backtracking line search along the projected arc x(t) = max(lo, x + t d)."""
    t = 1.0
    for _ in range(40):
        xt = np.maximum(x + t * d, lo)
        lp = float(f_logp(*put(xt)))
        if lp >= lp0:
            return xt, lp, True
        t *= 0.5
    return x, lp0, False


def fit_map(
    V: Any,
    n_components: int,
    *,
    priors: GammaPriors | None = None,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    mask: Any = None,
    max_iter: int = 500,
    tol: float = 1e-9,
    likelihood: str = "auto",
    random_seed: int | np.random.Generator | None = None,
    warn: bool = True,
) -> MAPResult:
    """MAP of the PyMC model by maximising its own log-density.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`.
    n_components : int
        K.
    priors : GammaPriors or None
        ``None`` (default): flat priors, the MAP is the maximum-likelihood = KL-NMF
        solution. Gamma priors need shapes >= 1 for a mode to exist.
    init : tuple (W0, H0), optional
        Starting point; default a seeded random start
        (:func:`poisson_nmf.kl.initial_factors`, the same as :func:`kl_nmf` uses).
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries.
    max_iter : int
        Most outer iterations (each one Newton step on W and one on H).
    tol : float
        Stop when the relative change of the objective in one outer iteration is
        below ``tol``.
    likelihood : {"auto", "dense", "sparse"}
        Form of the PyMC likelihood (see :func:`build_model`); both are exact.
    random_seed : int, Generator or None
        Seed of the random start (unused when ``init`` is given).
    warn : bool
        Emit a :class:`ConvergenceWarning` when ``max_iter`` is reached.

    Returns
    -------
    MAPResult
    """
    t0 = time.perf_counter()
    counts: Counts = as_counts(V, mask=mask)
    K = check_n_components(n_components)
    if priors is not None:
        priors.check_map()
    if init is None:
        W, H = initial_factors(counts, K, random_seed=random_seed)
    else:
        F, N = counts.shape
        if priors is None:
            am1_w, am1_h = np.zeros((F, K)), np.zeros((K, N))
        else:
            aw, _, ah, _ = priors.arrays(F, N, K)
            am1_w, am1_h = aw - 1.0, ah - 1.0
        W, H = _check_init(init, counts, K, am1_w, am1_h)
    lo = _FLOOR * float(np.sqrt(counts.total / counts.n_observed / K))
    W = np.maximum(np.array(W, dtype=np.float64), lo)
    H = np.maximum(np.array(H, dtype=np.float64), lo)
    model = build_model(counts, K, priors=priors, likelihood=likelihood)  # type: ignore[arg-type]
    fn = _PyMCBlocks(model, K)
    const = loglik_constant(counts)
    if priors is not None:
        const += priors.log_normaliser(*counts.shape, K)
    lp = float(fn.logp(W, H))
    history: list[float] = []
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (it is reported)
        lp_prev = lp
        g, blocks = fn.w_step(W, H)
        d = _newton_direction(W, g, blocks, lo)
        W, lp, ok_w = _ascend(fn.logp, lp, W, d, lambda x, H=H: (x, H), lo)
        g, blocks = fn.h_step(W, H)
        d = _newton_direction(H.T, g.T, blocks.transpose(2, 0, 1), lo).T
        H, lp, ok_h = _ascend(fn.logp, lp, H, d, lambda x, W=W: (W, x), lo)
        history.append(const - lp)
        if not (ok_w or ok_h):
            break  # no ascent left at machine precision: a stationary point
        if abs(lp - lp_prev) <= tol * max(abs(const - lp), 1e-300):
            converged = True
            break
    if not converged and warn:
        warnings.warn(
            f"fit_map stopped after max_iter={max_iter} iterations without reaching "
            f"tol={tol}; raise max_iter or loosen tol",
            ConvergenceWarning,
            stacklevel=2,
        )
    objective = kl_divergence(counts, (W, H))
    if priors is not None:
        objective += priors.penalty(W, H)
    return MAPResult(
        W=W,
        H=H,
        objective=float(objective),
        logp=lp,
        n_iter=it,
        converged=converged,
        history=np.asarray(history),
        seconds=time.perf_counter() - t0,
    )
