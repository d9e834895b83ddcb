r"""MAP through the PyMC model's own log-density.

The MAP maximises ``model.logp(jacobian=False)`` on the original scale of W and H
(no Jacobian term, so it is the mode of the density of W and H themselves, not of
their logarithms). Every function value and derivative the optimiser uses comes from
PyTensor functions compiled from that log-density: its value and gradient, and
Hessian-vector products (automatic differentiation of the gradient, with the
direction a symbolic input). NumPy only does linear algebra on top.

Algorithm: alternating projected Newton on the blocks W and H (Bertsekas 1982), with
step lengths certified row by row and the extrapolation of Ang & Gillis (2019).

- **Hessian blocks.** For fixed H the negative log-density φ is convex in W and
  separable by rows, so its Hessian is block diagonal with one K x K block per row;
  one Hessian-vector product with direction :math:`e_k` in every row returns column
  k of all F blocks, so K products give them all. H is treated the same way by
  columns. The blocks are recomputed every ``_REFRESH`` iterations (and in the first
  ``_FRESH`` ones) and reused in between: a block from a nearby point still gives a
  descent direction, and the step lengths below use the exact curvature along it
  (one more product).
- **Direction.** For each row x (length K) with gradient g and block A of φ:
  entries within ε of the bound with the gradient pushing them there (Bertsekas'
  ε-active set, ε the length of a scaled projected gradient step, at most 1 % of the
  row's mean) go to the bound, the others take the Newton step :math:`A^{-1}(-g)`
  restricted to them, and the target is projected on ``x >= floor``; the row moves
  on the segment :math:`x + t s`, :math:`s = P(x - A^{-1} g) - x`, which stays
  feasible (a diagonally scaled projected gradient replaces s where s is not a
  descent direction).
- **Certified step lengths, row by row.** The rows are independent given the other
  block, and each row's φ restricted to the segment, :math:`f(t)`, is convex. With
  :math:`m_0 = f'(0) < 0` and :math:`c_0 = f''(0)`:

  1. *Self-concordance.* :math:`-v \log λ` with integer :math:`v \geq 1` and the
     Gamma term :math:`-(a - 1)\log w` are self-concordant (constant
     :math:`2 κ`, :math:`κ = \max(1, 1/\sqrt{a - 1})` over shapes a > 1); the
     linear terms do not count (Nesterov & Nemirovski 1994). Hence
     :math:`κ^2 (f(t) - f(0)) \leq κ^2 t m_0 + ω_*(t κ \sqrt{c_0})`,
     :math:`ω_*(u) = -u - \log(1 - u)`: the full step t = 1 is accepted when this
     bound is negative (near a solution, nearly every row), and otherwise the
     bound's minimiser :math:`t_d = ρ / ((1 + ρ) κ \sqrt{c_0})`,
     :math:`ρ = -κ m_0 / \sqrt{c_0}`, is a certified fall-back (the damped Newton
     step when s is the Newton step).
  2. *Derivative test.* Otherwise the gradient at t = 1 is evaluated (for all
     pending rows in one call): :math:`f'(1) \leq 0` certifies f(1) < f(0) by
     convexity. If not, the root of the model :math:`f'(t) = r - p / (1 + q t)`
     (the form of f' along a ray, fitted to :math:`m_0, c_0, f'(1)`) is tried the
     same way, and :math:`t_d` taken where that fails too.

  Each row's objective decreases, so the log-density increases at every block step
  without a global line search that one badly scaled row would hold back.
- **Extrapolation** between iterations, as in :func:`poisson_nmf.kl_nmf` (the shared
  :class:`~poisson_nmf.optim.extrapolation.Extrapolation`):
  :math:`\hat W = \max(W_t + β (W_t - W_{t-1}), W_t / 2)` (likewise H), the next
  iteration starts from :math:`(\hat W, \hat H)`, and is discarded (β shrinks) if it
  ends below the log-density of :math:`(W_t, H_t)`.

Entries are kept >= a floor of ``_FLOOR`` times the typical factor size. Where V has
an all-zero row or column, the flat-prior optimum puts whole rows of W or columns of
H at 0, where 0/0 makes PyTensor's Poisson gradient NaN; the floor moves the objective
by about ``_FLOOR`` relative, far below every tolerance used here.

References
----------
D. P. Bertsekas, "Projected Newton methods for optimization problems with simple
constraints", SIAM J. Control Optim. 20 (1982).
Y. Nesterov and A. Nemirovski, "Interior-point polynomial algorithms in convex
programming", SIAM (1994), ch. 2 (self-concordant functions, damped Newton).
A. M. S. Ang and N. Gillis, "Accelerating nonnegative matrix factorization
algorithms using extrapolation", Neural Comput. 31 (2019).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt
from pymc.model.transform.conditioning import remove_value_transforms

from .._typing import CountsLike, SeedLike
from .._validation import check_priors
from ..data import Counts, as_counts, check_n_components
from ..divergence import kl_divergence, loglik_constant
from ..exceptions import ConvergenceWarning, TrappedZerosWarning, warn_user
from ..model import build_model
from ..priors import GammaPriors
from .extrapolation import Extrapolation
from .starts import check_init, initial_factors, untrap_start

__all__ = ["MAPProblem", "MAPResult", "fit_map", "pymc_logp_grad"]

_FLOOR = 1e-12
# Hessian blocks: recomputed in the first _FRESH iterations and every _REFRESH after
_FRESH, _REFRESH = 3, 6
# ε of the ε-active set at most this fraction of the row's mean entry (the fewest PyMC
# calls of the caps tried; benchmarks/README.md, "Figures behind decisions")
_EPS_CAP = 0.01

# (log-density, gradient w.r.t. W, gradient w.r.t. H) at one point
State = tuple[float, np.ndarray, np.ndarray]


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
    n_calls : int
        Calls of the compiled PyMC functions (log-density with gradient, or one
        Hessian-vector product), compilation excluded.
    """

    W: np.ndarray
    H: np.ndarray
    objective: float
    logp: float
    n_iter: int
    converged: bool
    history: np.ndarray = field(repr=False)
    seconds: float = 0.0
    n_calls: int = 0


class PyMCDerivatives:
    """PyMC's log-density of (W, H), its gradient and Hessian-vector products."""

    def __init__(self, model: Any, hvp: bool = True) -> None:
        m = remove_value_transforms(model)
        vv = {v.name: v for v in m.value_vars}
        W, H = vv["W"], vv["H"]
        lp = m.logp(jacobian=False)
        gW, gH = pt.grad(lp, [W, H])
        DW, DH = pt.matrix("DW", dtype="float64"), pt.matrix("DH", dtype="float64")
        self._value_grad = pytensor.function([W, H], [lp, gW, gH])
        if hvp:
            # d2 logp / dW2 @ DW with H fixed (and likewise for H): one product each
            self._hvp_w = pytensor.function([W, H, DW], pt.grad(pt.sum(gW * DW), W))
            self._hvp_h = pytensor.function([W, H, DH], pt.grad(pt.sum(gH * DH), H))
        self.n_calls = 0

    def value_grad(self, W: np.ndarray, H: np.ndarray) -> State:
        """Return (logp, d logp / dW, d logp / dH) at (W, H)."""
        self.n_calls += 1
        lp, gW, gH = self._value_grad(W, H)
        return float(lp), gW, gH

    def hvp_w(self, W: np.ndarray, H: np.ndarray, D: np.ndarray) -> np.ndarray:
        """Return the Hessian of logp in W (H fixed) times D, shape (F, K)."""
        self.n_calls += 1
        return np.asarray(self._hvp_w(W, H, D))

    def hvp_h(self, W: np.ndarray, H: np.ndarray, D: np.ndarray) -> np.ndarray:
        """Return the Hessian of logp in H (W fixed) times D, shape (K, N)."""
        self.n_calls += 1
        return np.asarray(self._hvp_h(W, H, D))


class Rows:
    """One block seen as independent rows: the rows of W, or the columns of H.

    ``x`` is the block as a (B, K) array: W itself, or H transposed.
    """

    def __init__(self, fn: PyMCDerivatives, which: str) -> None:
        self.fn, self.is_w = fn, which == "W"

    def get(self, W: np.ndarray, H: np.ndarray) -> np.ndarray:
        """Return the block as rows: W, or H transposed."""
        return W if self.is_w else H.T

    def put(self, W: np.ndarray, H: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (W, H) with the block replaced by the rows ``x``."""
        return (np.ascontiguousarray(x), H) if self.is_w else (W, np.ascontiguousarray(x.T))

    def grad(self, state: State) -> np.ndarray:
        """Return the block's rows of the gradient of logp in ``state``."""
        return state[1] if self.is_w else state[2].T

    def hvp(self, W: np.ndarray, H: np.ndarray, P: np.ndarray) -> np.ndarray:
        """Rows of the Hessian of -logp times P, shape (B, K)."""
        if self.is_w:
            return -self.fn.hvp_w(W, H, np.ascontiguousarray(P))
        return -self.fn.hvp_h(W, H, np.ascontiguousarray(P.T)).T

    def blocks(self, W: np.ndarray, H: np.ndarray) -> np.ndarray:
        """Return the (B, K, K) Hessian blocks of -logp: K products, one per component."""
        x = self.get(W, H)
        B, K = x.shape
        out = np.empty((B, K, K))
        E = np.zeros((B, K))
        for k in range(K):
            E[:, k] = 1.0
            out[:, :, k] = self.hvp(W, H, E)
            E[:, k] = 0.0
        return out


def _direction(x: np.ndarray, grad: np.ndarray, A: np.ndarray, lo: float) -> np.ndarray:
    """Projected Newton step s (B, K) for rows x, ascent gradient ``grad``, blocks A of -logp."""
    B, K = x.shape
    diag = np.einsum("bkk->bk", A)
    scale = np.maximum(diag.max(axis=1, keepdims=True), 1e-300)
    # no curvature (e.g. H over an all-zero column of V): the objective is linear
    # there, its minimum on the bound
    flat = diag <= 1e-12 * scale
    # Bertsekas' ε-active set: entries within ε of the bound with the gradient pushing
    # them there go straight to it; ε, the length of a diagonally scaled projected
    # gradient step (capped), vanishes at a solution (without it, an entry bound for 0
    # only shrinks by the step length each iteration)
    step = x - np.maximum(x + grad / np.maximum(diag, 1e-300), lo)
    eps = np.abs(np.where(flat, 0.0, step)).max(axis=1, keepdims=True)
    eps = np.minimum(eps, _EPS_CAP * x.mean(axis=1, keepdims=True))
    free = ~(((x <= lo * (1 + 1e-9) + eps) & (grad <= 0)) | flat)
    Af = A * (free[:, :, None] & free[:, None, :])
    idx = np.arange(K)
    # a tiny ridge keeps rank-deficient blocks (columns of V with fewer than K
    # non-zeros) solvable; the step lengths take care of the long steps it allows
    Af[:, idx, idx] = np.where(free, diag + 1e-10 * scale + 1e-300, 1.0)
    d = np.linalg.solve(Af, np.where(free, grad, 0.0)[..., None])[..., 0]
    d = np.where(free, d, np.where(grad < 0, lo - x, 0.0))
    s = np.maximum(x + d, lo) - x
    slope = np.einsum("bk,bk->b", grad, s)
    bad = ~(slope > 0)
    if bad.any():
        # projected gradient scaled by the diagonal: always an ascent direction
        alt = np.maximum(x + grad / np.maximum(diag, 1e-300), lo) - x
        s[bad] = alt[bad]
    return s


def _omega_star(u: np.ndarray) -> np.ndarray:
    """ω*(u) = -u - log(1 - u) for 0 <= u < 1."""
    return -u - np.log1p(-u)


def block_step(
    rows: Rows,
    W: np.ndarray,
    H: np.ndarray,
    state: State,
    A: np.ndarray,
    exact_blocks: bool,
    lo: float,
    kappa: float,
) -> tuple[np.ndarray, np.ndarray, State]:
    """One certified projected Newton step on every row of a block; returns (W, H, state)."""
    x, g = rows.get(W, H), rows.grad(state)
    s = _direction(x, g, A, lo)
    m0 = -np.einsum("bk,bk->b", g, s)
    moving = m0 < 0
    s[~moving] = 0.0
    if exact_blocks:
        c0 = np.einsum("bk,bkl,bl->b", s, A, s)
    else:  # the exact curvature along s, one Hessian-vector product
        c0 = np.einsum("bk,bk->b", s, rows.hvp(W, H, s))
    c0 = np.maximum(c0, 0.0)
    u = kappa * np.sqrt(c0)
    uc = np.minimum(u, 1.0 - 1e-12)
    full = moving & (u < 1.0) & (kappa**2 * m0 + _omega_star(uc) <= 0.0)
    rho = -kappa * m0 / np.maximum(np.sqrt(c0), 1e-300)
    t_d = np.where(u > 0, np.minimum(rho / ((1.0 + rho) * np.maximum(u, 1e-300)), 1.0), 1.0)
    t = np.where(full, 1.0, 0.0)
    pending = moving & ~full

    last: tuple[State, np.ndarray] | None = None

    def slope_at(tt: np.ndarray) -> np.ndarray:
        nonlocal last
        Wt, Ht = rows.put(W, H, np.maximum(x + tt[:, None] * s, lo))
        st = rows.fn.value_grad(Wt, Ht)
        last = (st, tt.copy())
        return -np.einsum("bk,bk->b", rows.grad(st), s)

    if pending.any():
        m1 = slope_at(np.where(pending, 1.0, t))
        ok = pending & (m1 <= 0)
        t[ok] = 1.0
        pending &= ~ok
        if pending.any():
            # root of f'(t) = r - p / (1 + q t) through m0, c0 and m1
            with np.errstate(divide="ignore", invalid="ignore"):
                den = c0 * m1 / (m1 - m0) - m0
                t_r = np.clip(np.where(den > 0, -m0 / den, 0.0), 0.0, 0.999)
            t_r = np.nan_to_num(t_r)
            cheap = pending & (t_r <= t_d)
            t[cheap] = t_d[cheap]
            pending &= ~cheap
            if pending.any():
                m2 = slope_at(np.where(pending, t_r, t))
                ok = pending & (m2 <= 0)
                t[ok] = t_r[ok]
                pending &= ~ok
                t[pending] = t_d[pending]
    x_new = np.maximum(x + t[:, None] * s, lo)
    W, H = rows.put(W, H, x_new)
    if last is not None and np.array_equal(last[1], t):
        return W, H, last[0]
    return W, H, rows.fn.value_grad(W, H)


def concordance_kappa(priors: GammaPriors | None, F: int, N: int, K: int) -> float:
    """Half the self-concordance constant of the negative log-density of one row."""
    if priors is None:
        return 1.0
    aw, _, ah, _ = priors.arrays(F, N, K)
    a = np.concatenate([aw.ravel(), ah.ravel()])
    a = a[a > 1.0]
    return float(max(1.0, 1.0 / np.sqrt(a.min() - 1.0))) if a.size else 1.0


class MAPProblem:
    """One PyMC model with its compiled derivatives, for one or more MAP fits.

    :func:`fit_map` builds one per call; :func:`poisson_nmf.compare_map_kl` keeps one
    to fit twice and to take the gradient at the KL solution, compiling once.

    Parameters
    ----------
    counts : Counts
    K : int
    priors : GammaPriors or None
        Shapes >= 1 (checked).
    likelihood : {"auto", "dense", "sparse"}
        Form of the PyMC likelihood.
    hvp : bool
        Compile the Hessian-vector products too (needed by :meth:`fit`).
    """

    def __init__(
        self,
        counts: Counts,
        K: int,
        priors: GammaPriors | None,
        likelihood: str = "auto",
        hvp: bool = True,
    ) -> None:
        priors = check_priors(priors, need_mode=True)
        F, N = counts.shape
        self.counts, self.K, self.priors = counts, K, priors
        self.likelihood, self.hvp = likelihood, hvp
        self.lo = _FLOOR * float(np.sqrt(counts.total / counts.n_observed / K))
        self.kappa = concordance_kappa(priors, F, N, K)
        self.const = loglik_constant(counts)
        if priors is not None:
            self.const += priors.log_normaliser(F, N, K)
        self._fn: PyMCDerivatives | None = None

    @property
    def fn(self) -> PyMCDerivatives:
        """The compiled functions (built on first use, after the inputs are checked)."""
        if self._fn is None:
            form: Any = self.likelihood
            model = build_model(self.counts, self.K, priors=self.priors, likelihood=form)
            self._fn = PyMCDerivatives(model, hvp=self.hvp)
        return self._fn

    def start(self, init: Any, random_seed: SeedLike) -> tuple[np.ndarray, np.ndarray]:
        """Return the validated start (``init`` or the seeded random one), floored."""
        counts, K, (F, N) = self.counts, self.K, self.counts.shape
        if init is None:
            W, H = initial_factors(counts, K, random_seed=random_seed)
        else:
            if self.priors is None:
                am1_w, am1_h = np.zeros((F, K)), np.zeros((K, N))
            else:
                aw, _, ah, _ = self.priors.arrays(F, N, K)
                am1_w, am1_h = aw - 1.0, ah - 1.0
            W, H = check_init(init, counts, K, am1_w, am1_h)
            # entries at 0 are floored below, which the Newton steps leave; a dead
            # component (zero column of W or row of H) is a saddle point they do not
            W, H, msg = untrap_start(counts, W, H, "cd", am1_w, am1_h, random_seed)
            if msg is not None:
                warn_user(msg, TrappedZerosWarning)
        return self.floored(W, H)

    def floored(self, W: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (W, H) as contiguous float64 with every entry raised to the floor."""
        return (
            np.ascontiguousarray(np.maximum(W, self.lo), dtype=np.float64),
            np.ascontiguousarray(np.maximum(H, self.lo), dtype=np.float64),
        )

    def fit(
        self,
        W: np.ndarray,
        H: np.ndarray,
        max_iter: int,
        tol: float,
        warn: bool,
        callback: Callable[[int, np.ndarray, np.ndarray, float], None] | None,
        t0: float,
    ) -> MAPResult:
        """Maximise the log-density from the floored start (W, H)."""
        fn, lo, kappa, const = self.fn, self.lo, self.kappa, self.const
        calls0 = fn.n_calls
        rows_w, rows_h = Rows(fn, "W"), Rows(fn, "H")
        state = fn.value_grad(W, H)
        best_W, best_H, best_lp = W, H, state[0]
        prev_W, prev_H = W, H
        ex = Extrapolation()
        A_w = A_h = np.empty(0)
        history: list[float] = []
        converged = False
        it = 0
        for it in range(1, max_iter + 1):  # noqa: B007 (it is reported)
            fresh = it <= _FRESH or (it - 1) % _REFRESH == 0
            if fresh:
                A_w = rows_w.blocks(W, H)
            W, H, state = block_step(rows_w, W, H, state, A_w, fresh, lo, kappa)
            if fresh:
                A_h = rows_h.blocks(W, H)
            W, H, state = block_step(rows_h, W, H, state, A_h, fresh, lo, kappa)
            lp = state[0]
            if ex.pending and not lp >= best_lp:
                # the extrapolated start did worse: back to the last iterate, damp beta
                ex.reject()
                W, H = best_W, best_H
                state = fn.value_grad(W, H)
                history.append(const - best_lp)
                continue
            ex.accept()
            gain = lp - best_lp
            prev_W, prev_H, best_W, best_H, best_lp = best_W, best_H, W, H, lp
            history.append(const - lp)
            if callback is not None:
                callback(it, W, H, const - lp)
            if gain <= tol * max(abs(const - lp), 1.0):
                converged = True
                break
            # at most halve an entry, never below the floor
            W, H = ex.propose((W, H), (prev_W, prev_H), floor=lo)
            state = fn.value_grad(W, H)
        if not converged and warn:
            warn_user(
                f"fit_map stopped after max_iter={max_iter} iterations without reaching "
                f"tol={tol}; raise max_iter or loosen tol",
                ConvergenceWarning,
            )
        W, H = best_W, best_H
        objective = kl_divergence(self.counts, (W, H))
        if self.priors is not None:
            objective += self.priors.penalty(W, H)
        return MAPResult(
            W=W,
            H=H,
            objective=float(objective),
            logp=float(best_lp),
            n_iter=it,
            converged=converged,
            history=np.asarray(history),
            seconds=time.perf_counter() - t0,
            n_calls=fn.n_calls - calls0,
        )


def pymc_logp_grad(
    V: CountsLike,
    W: np.ndarray,
    H: np.ndarray,
    *,
    priors: GammaPriors | None = None,
    likelihood: str = "auto",
) -> tuple[float, np.ndarray, np.ndarray]:
    """PyMC's log-density ``model.logp(jacobian=False)`` and its gradient at (W, H).

    Compiled from :func:`poisson_nmf.build_model` (value transforms removed), as
    :func:`fit_map` sees it. Entries below the floor of :func:`fit_map` (1e-12 times
    the typical factor size) are raised to it first: at an exact zero rate over a zero
    count PyTensor's Poisson gradient is 0/0.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts (a :class:`Counts` carries its mask).
    W : numpy.ndarray, shape (F, K)
    H : numpy.ndarray, shape (K, N)
    priors : GammaPriors or None
    likelihood : {"auto", "dense", "sparse"}

    Returns
    -------
    logp : float
    grad_W : numpy.ndarray, shape (F, K)
    grad_H : numpy.ndarray, shape (K, N)
    """
    counts = as_counts(V)
    K = check_n_components(np.shape(W)[1])
    problem = MAPProblem(counts, K, priors, likelihood, hvp=False)
    return problem.fn.value_grad(*problem.floored(W, H))


def fit_map(
    V: CountsLike,
    n_components: int,
    *,
    priors: GammaPriors | None = None,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    mask: Any = None,
    max_iter: int = 500,
    tol: float = 1e-10,
    likelihood: str = "auto",
    random_seed: SeedLike = None,
    warn: bool = True,
    callback: Callable[[int, np.ndarray, np.ndarray, float], None] | None = None,
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
        (:func:`poisson_nmf.initial_factors`, the same as :func:`kl_nmf` uses).
        A dead component in it (a zero column of W0 or row of H0, a saddle point that
        no Newton step leaves) is restarted as in :func:`kl_nmf`, with a
        :class:`~poisson_nmf.TrappedZerosWarning`.
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries.
    max_iter : int
        Most outer iterations (each one Newton step on W and one on H).
    tol : float
        Stop when the objective decreased by at most ``tol * max(|objective|, 1)``
        over one iteration (the rule of :func:`poisson_nmf.kl_nmf`). The default is
        tight because a looser one can stop with single rows far from their optimum
        (the KKT residuals behind it: ``benchmarks/README.md``, experiments log).
    likelihood : {"auto", "dense", "sparse"}
        Form of the PyMC likelihood (see :func:`build_model`); both are exact.
    random_seed : int, Generator or None
        Seed of the random start (unused when ``init`` is given).
    warn : bool
        Emit a :class:`ConvergenceWarning` when ``max_iter`` is reached.
    callback : callable, optional
        Called as ``callback(iteration, W, H, objective)`` after every accepted
        iteration.

    Returns
    -------
    MAPResult

    Warns
    -----
    TrappedZerosWarning
        When ``init`` has a dead component (restarted). Components that reach the
        floor during the fit are not restarted (with K above what the data need they
        are redundant).
    ConvergenceWarning
        When ``max_iter`` is reached (and ``warn``).
    """
    t0 = time.perf_counter()
    counts: Counts = as_counts(V, mask=mask)
    K = check_n_components(n_components)
    problem = MAPProblem(counts, K, priors, likelihood)
    W, H = problem.start(init, random_seed)
    return problem.fit(W, H, max_iter, tol, warn, callback, t0)
