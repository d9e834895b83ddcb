"""Gamma priors on the entries of W and H, and the penalty they add to the KL objective.

With w ~ Gamma(a_w, b_w) and h ~ Gamma(a_h, b_h) (shape a, rate b), the negative
log-prior is, up to a constant,

    Σ [ b_w w - (a_w - 1) log w ] + Σ [ b_h h - (a_h - 1) log h ],

the penalty that the MAP adds to D(V || WH). ``priors=None`` everywhere means flat
priors: MAP = maximum likelihood = KL-NMF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import gammaln, xlogy

__all__ = ["GammaPriors"]


def _broadcast(value: Any, shape: tuple[int, int], name: str, hint: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    try:
        out = np.broadcast_to(a, shape)
    except ValueError:
        raise ValueError(
            f"{name} has shape {a.shape}, which does not broadcast to {shape}; {hint}"
        ) from None
    return out


@dataclass(frozen=True)
class GammaPriors:
    """Independent Gamma(shape, rate) priors on every entry of W and H.

    Each value is a scalar or an array that broadcasts (NumPy rules) against W's
    shape (F, K) or H's shape (K, N): for W, a length-K vector is per component and an
    (F, 1) column per row; for H, a (K, 1) column is per component and a length-N
    vector per column.

    Parameters
    ----------
    w_shape, w_rate : float or array_like
        Shape a_w > 0 and rate b_w > 0 of the prior on W (mean a/b).
    h_shape, h_rate : float or array_like
        Shape a_h > 0 and rate b_h > 0 of the prior on H.

    Notes
    -----
    The MAP (and :func:`poisson_nmf.kl_nmf` with priors) needs shapes >= 1: below 1
    the density is unbounded at 0 and there is no mode. Sampling accepts any shape > 0.
    The default Gamma(1, 1) is an exponential prior with mean 1.
    """

    w_shape: Any = 1.0
    w_rate: Any = 1.0
    h_shape: Any = 1.0
    h_rate: Any = 1.0

    def __post_init__(self) -> None:
        for name in ("w_shape", "w_rate", "h_shape", "h_rate"):
            a = np.asarray(getattr(self, name))
            if not np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_:
                raise TypeError(f"GammaPriors.{name} must be numeric, got {a.dtype}")
            if not np.all(np.isfinite(a)) or np.any(a <= 0):
                raise ValueError(
                    f"GammaPriors.{name} must be finite and > 0, got {getattr(self, name)!r}"
                )

    def arrays(self, F: int, N: int, K: int) -> tuple[np.ndarray, ...]:
        """Shapes and rates broadcast to W's (F, K) and H's (K, N) shapes.

        Returns
        -------
        tuple of numpy.ndarray
            ``(a_w, b_w, a_h, b_h)`` with shapes (F, K), (F, K), (K, N), (K, N)
            (read-only broadcast views).
        """
        hint_w = "for W use a scalar, a length-K vector (per component) or an (F, 1) column"
        hint_h = "for H use a scalar, a (K, 1) column (per component) or a length-N vector"
        return (
            _broadcast(self.w_shape, (F, K), "GammaPriors.w_shape", hint_w),
            _broadcast(self.w_rate, (F, K), "GammaPriors.w_rate", hint_w),
            _broadcast(self.h_shape, (K, N), "GammaPriors.h_shape", hint_h),
            _broadcast(self.h_rate, (K, N), "GammaPriors.h_rate", hint_h),
        )

    def check_map(self) -> None:
        """Raise ``ValueError`` unless every shape is >= 1 (needed for a MAP to exist)."""
        for name in ("w_shape", "h_shape"):
            if np.any(np.asarray(getattr(self, name)) < 1):
                raise ValueError(
                    f"GammaPriors.{name} < 1 has no mode (the density is unbounded at 0); "
                    "MAP and kl_nmf need shapes >= 1 (sampling accepts any shape > 0)"
                )

    def penalty(self, W: np.ndarray, H: np.ndarray) -> float:
        """Σ [b_w w - (a_w - 1) log w] + Σ [b_h h - (a_h - 1) log h].

        Parameters
        ----------
        W : numpy.ndarray, shape (F, K)
        H : numpy.ndarray, shape (K, N)

        Returns
        -------
        float
            The penalty; the negative log-prior up to :meth:`log_normaliser`.
        """
        F, K = W.shape
        aw, bw, ah, bh = self.arrays(F, H.shape[1], K)
        return float(np.sum(bw * W - xlogy(aw - 1.0, W)) + np.sum(bh * H - xlogy(ah - 1.0, H)))

    def log_normaliser(self, F: int, N: int, K: int) -> float:
        """Σ [a log b - log Γ(a)] over all entries: log-prior = this - penalty."""
        aw, bw, ah, bh = self.arrays(F, N, K)
        return float(np.sum(aw * np.log(bw) - gammaln(aw)) + np.sum(ah * np.log(bh) - gammaln(ah)))
