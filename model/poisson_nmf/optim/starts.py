r"""Starts of the point-estimate solvers, and zeros that trap them.

:func:`initial_factors` draws the seeded random start of :func:`poisson_nmf.kl_nmf` and
:func:`poisson_nmf.fit_map`; :func:`check_init` validates a start handed in.

Zeros that trap a method. A *dead component* (a zero column of W and the matching row
of H) is a saddle point where every gradient on it is 0: no method leaves it.
:func:`revive` restarts one with W[:, k] = 0 and H[:, k] zero except, at the column of
the most under-fitted count (largest KL term with v > λ), the mean entry of H: WH is
unchanged and the next sweep's gradient on W[f, k] is negative at that count's row.
Multiplicative updates also keep any single zero at zero (zero-lock), so
:func:`untrap_start` fills the zeros of their start with ``FILL`` times the factor's
mean positive entry.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import rel_entr

from .._typing import CountsLike, SeedLike
from ..data import Counts, as_counts, check_n_components
from ..divergence import rate_terms

__all__ = [
    "FILL",
    "check_init",
    "dead_components",
    "initial_factors",
    "random_start",
    "revive",
    "untrap_start",
    "worst_column",
]

# a zero of a start that multiplicative updates could never leave starts at this
# fraction of its factor's mean positive entry (small enough to leave the start's
# shape, large enough to converge; benchmarks/README.md, experiments log)
FILL = 1e-2


def random_start(counts: Counts, K: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw the start of :func:`initial_factors` from ``rng`` (``counts`` already checked)."""
    F, N = counts.shape
    scale = math.sqrt(counts.total / counts.n_observed / K)
    # uniform on [0.25, 1.75] x scale: strictly positive (no zero-lock), E[WH] = mean(V)
    W = scale * rng.uniform(0.25, 1.75, size=(F, K))
    H = scale * rng.uniform(0.25, 1.75, size=(K, N))
    return W, H


def initial_factors(
    V: CountsLike, n_components: int, *, mask: Any = None, random_seed: SeedLike = None
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
    return random_start(counts, K, np.random.default_rng(random_seed))


def check_init(
    init: Any, counts: Counts, K: int, am1_w: np.ndarray, am1_h: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a start ``init = (W0, H0)``; return it as float64 arrays.

    ``am1_w`` (F, K) and ``am1_h`` (K, N) are the prior shapes minus 1 (zeros without
    priors): a zero where a shape is > 1 has an infinite penalty and is refused.

    Raises
    ------
    TypeError
        When ``init`` is not a pair.
    ValueError
        For a wrong shape, NaN or inf, negative entries, or zeros under a shape > 1.
    """
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


def dead_components(
    W: np.ndarray, H: np.ndarray, floor: float = 0.0, both: bool = False
) -> np.ndarray:
    """Components (K,) with a column of W or (``both``: and) a row of H all <= ``floor``."""
    w, h = ~(W > floor).any(axis=0), ~(H > floor).any(axis=1)
    return w & h if both else w | h


def worst_column(counts: Counts, W: np.ndarray, H: np.ndarray) -> int | None:
    """Column of the observed count most under-fitted by WH (largest KL term with v > λ).

    ``None`` when no count exceeds its rate (by more than a relative 1e-9): a component
    added there cannot lower D(V || WH).
    """
    lam, _ = rate_terms(counts, (W, H))
    v = counts.nz_values
    gap = np.where(v > lam * (1.0 + 1e-9), rel_entr(v, lam) - v + lam, 0.0)
    if gap.size == 0 or not gap.max() > 0.0:
        return None
    return int(counts.nz_cols[int(np.argmax(gap))])


def revive(
    counts: Counts, W: np.ndarray, Ht: np.ndarray, k: int, am1_w: np.ndarray, am1_h: np.ndarray
) -> bool:
    """Restart dead component k of (W, H = Ht^T) in place; return whether it was restarted.

    Its column of W goes to 0 and its row of H to 0 except, at the column n of the most
    under-fitted count, the mean entry of H (entries held positive by a prior shape > 1
    keep their values). WH does not change (W[:, k] = 0), and the next sweep's gradient
    for W[f, k] is h (1 - v_fn / λ_fn) < 0 at that count's row f: coordinate descent
    leaves the saddle point that a dead component is (its gradient is exactly 0 there).
    """
    n = worst_column(counts, W, Ht.T)
    if n is None:
        return False
    pos = Ht[Ht > 0]
    h = float(pos.mean()) if pos.size else 1.0
    W[:, k] = np.where(am1_w[:, k] > 0, W[:, k], 0.0)
    Ht[:, k] = np.where(am1_h[:, k] > 0, Ht[:, k], 0.0)
    Ht[n, k] = max(Ht[n, k], h)
    return True


def untrap_start(
    counts: Counts,
    W: np.ndarray,
    H: np.ndarray,
    method: str,
    am1_w: np.ndarray,
    am1_h: np.ndarray,
    random_seed: SeedLike = None,
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Replace the zeros of a start that ``method`` could never leave; say what was done.

    - No live component at all (every column of W or every row of H zero): nothing of
      the start can be kept; it is replaced by ``random_start`` drawn from
      ``random_seed`` (the start of :func:`initial_factors`).
    - ``"mu"``: every zero (multiplicative updates keep a zero at zero) becomes
      ``FILL`` times the mean positive entry of its factor, and a dead component gets
      the entry of H that :func:`revive` gives.
    - ``"cd"``: a zero row of W (or column of H) over a positive count is a zero rate,
      an infinite objective: its entries become ``FILL`` times the factor's mean
      positive entry. A dead component (a zero column of W and the matching zero row of
      H: every gradient on it is 0) is restarted by :func:`revive`; a zero column of W
      alone moves when its gradient is negative (and is revived at convergence if it
      stays).

    Returns
    -------
    W, H : numpy.ndarray
        The start to use (the inputs themselves when nothing changed).
    message : str or None
        What was replaced, for a :class:`~poisson_nmf.TrappedZerosWarning`.
    """
    if W.size and dead_components(W, H).all():
        W, H = random_start(counts, W.shape[1], np.random.default_rng(random_seed))
        msg = (
            "init has no live component (every column of W0 or row of H0 is zero), which "
            "no method can leave; starting from initial_factors(V, K, random_seed) instead"
        )
        return W, H, msg
    if method == "mu":
        return _untrap_mu(counts, W, H)
    W, H, filled = _fill_zero_rates(counts, W, H)
    W, H, revived = _revive_dead(counts, W, H, am1_w, am1_h)
    msgs = [m for m in (filled, revived) if m is not None]
    return W, H, "; ".join(msgs) if msgs else None


def _untrap_mu(
    counts: Counts, W: np.ndarray, H: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str | None]:
    zw, zh = W == 0, H == 0
    if not (zw.any() or zh.any()):
        return W, H, None
    dead = dead_components(W, H)
    n = worst_column(counts, W, H) if dead.any() else None
    W, H = W.copy(), H.copy()
    for A, z in ((W, zw), (H, zh)):
        pos = A[A > 0]
        A[z] = FILL * (float(pos.mean()) if pos.size else 1.0)
    if n is not None:
        # a dead component restarts as in coordinate descent (see revive), on top
        # of the fill: uniform small entries alone leave it in a flat region
        H[dead, n] = np.maximum(H[dead, n], H[~dead].mean() if (~dead).any() else 1.0)
    msg = (
        f"init has {int(zw.sum())} zero(s) in W0 and {int(zh.sum())} in H0, which "
        f"multiplicative updates never move; they start at {FILL:g} times their "
        "factor's mean positive entry instead"
    )
    return W, H, msg


def _fill_zero_rates(
    counts: Counts, W: np.ndarray, H: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Fill the zero rows of W and zero columns of H that meet a positive count."""
    F, N = counts.shape
    rows = ~(W > 0).any(axis=1) & (np.bincount(counts.nz_rows, minlength=F) > 0)
    cols = ~(H > 0).any(axis=0) & (np.bincount(counts.nz_cols, minlength=N) > 0)
    if not (rows.any() or cols.any()):
        return W, H, None
    W, H = W.copy(), H.copy()
    W[rows] = FILL * float(W[W > 0].mean())  # some entry is positive: not all dead
    H[:, cols] = FILL * float(H[H > 0].mean())
    msg = (
        f"init has {int(rows.sum())} zero row(s) of W0 and {int(cols.sum())} zero "
        f"column(s) of H0 over positive counts (a zero rate, an infinite objective); "
        f"they start at {FILL:g} times their factor's mean positive entry instead"
    )
    return W, H, msg


def _revive_dead(
    counts: Counts, W: np.ndarray, H: np.ndarray, am1_w: np.ndarray, am1_h: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str | None]:
    dead = np.flatnonzero(dead_components(W, H, both=True))
    if dead.size == 0:
        return W, H, None
    W, Ht = W.copy(), np.ascontiguousarray(H.T)
    revived = [int(k) for k in dead if revive(counts, W, Ht, int(k), am1_w, am1_h.T)]
    if not revived:
        return W, np.ascontiguousarray(Ht.T), None
    msg = (
        f"init has dead component(s) {revived} (a zero column of W0 and row of H0: a "
        "saddle point where every gradient on it is 0, which no step leaves); each "
        "restarts with a positive entry of H at the column of the most under-fitted count"
    )
    return W, np.ascontiguousarray(Ht.T), msg
