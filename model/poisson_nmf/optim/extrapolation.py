r"""Extrapolation between the iterations of an alternating NMF solver.

A variant of the heuristic extrapolation with restarts of Ang & Gillis (2019, their
Algorithm "HER"), used by both :func:`poisson_nmf.kl_nmf` (coordinate descent) and
:func:`poisson_nmf.fit_map` (projected Newton). After an accepted iteration
:math:`X_t` (each of W and H), the next iteration starts from

.. math::

    \hat X = \max(X_t + β (X_t - X_{t-1}), \max(X_t / 2, \mathrm{floor})).

If it ends with a worse objective than :math:`X_t`, it is discarded (the caller goes
back to :math:`X_t`) and β is damped: :math:`\bar β ← β`, :math:`β ← β / η`.
Before each new extrapolation β grows: :math:`β ← \min(\bar β, γ β)`,
:math:`\bar β ← \min(1, \bar γ \bar β)`.

Where this differs from the paper (and its reference code ``NMFextrapol.m``):

- the constants: β0 = 0.5 as there, but η = 2, γ = 1.1 and :math:`\bar γ` = 1.02
  (theirs: η = 1.5, γ = 1.01 / 1.1 and :math:`\bar γ` = 1.005 / 1.05 for HALS /
  ANLS); on a rejection :math:`\bar β` takes the current β, not the one before it;
- both factors are extrapolated after the full sweep (the paper extrapolates H
  before the update of W);
- the projection keeps at least half of each entry (and the floor) instead of
  projecting on the non-negative orthant, so that zeros stay zeros and WH stays > 0
  wherever it was (a zero rate over a positive count makes the KL objective infinite).

Reference
---------
A. M. S. Ang and N. Gillis, "Accelerating nonnegative matrix factorization
algorithms using extrapolation", Neural Computation 31(2), 417-439 (2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BETA0", "ETA", "GAMMA", "GAMMA_MAX", "Extrapolation"]

BETA0 = 0.5  # initial β
GAMMA = 1.1  # growth of β after an accepted iteration
GAMMA_MAX = 1.02  # growth of its cap β̄
ETA = 2.0  # decay of β after a rejected extrapolation


@dataclass(slots=True)
class Extrapolation:
    r"""The state of the extrapolation: β, its cap and whether a proposal is on trial.

    Use: after an accepted iteration, ``(W_hat, H_hat) = ex.propose((W, H),
    (W_prev, H_prev))`` and run the next iteration from there; when it ends, call
    ``ex.reject()`` if its objective is worse than that of (W, H) (and go back to
    (W, H)), else ``ex.accept()``. :attr:`pending` says whether the iteration just
    run started from a proposal.

    Attributes
    ----------
    beta : float
        The current β, in (0, 1].
    beta_max : float
        Its cap :math:`\bar β`, at most 1.
    pending : bool
        Whether the last :meth:`propose` is neither accepted nor rejected yet.
    """

    beta: float = BETA0
    beta_max: float = 1.0
    pending: bool = False

    def propose(
        self,
        current: tuple[np.ndarray, ...],
        previous: tuple[np.ndarray, ...],
        floor: float | None = None,
    ) -> tuple[np.ndarray, ...]:
        r"""Grow β and return the extrapolated arrays, one per pair (current, previous).

        Parameters
        ----------
        current, previous : tuple of numpy.ndarray
            The last two accepted iterates of each factor, matching shapes.
        floor : float or None
            Lower bound of every entry (``None``: 0, without clipping).

        Returns
        -------
        tuple of numpy.ndarray
            :math:`\max(X + β (X - X_{prev}), \max(X / 2, floor))` for each X; new arrays.
        """
        beta, beta_max = self.beta, self.beta_max
        self.beta, self.beta_max = min(beta_max, GAMMA * beta), min(1.0, GAMMA_MAX * beta_max)
        self.pending = True
        b = self.beta
        if floor is None:
            # at most halve an entry: zeros stay zeros, WH stays > 0 where it was
            pairs = zip(current, previous, strict=True)
            return tuple(np.maximum(x + b * (x - p), 0.5 * x) for x, p in pairs)
        return tuple(
            np.maximum(x + b * (x - p), np.maximum(0.5 * x, floor))
            for x, p in zip(current, previous, strict=True)
        )

    def accept(self) -> None:
        """Close the trial: the iteration from the proposal did not worsen the objective."""
        self.pending = False

    def reject(self) -> None:
        """Close the trial as failed (a worse objective): damp β (β̄ ← β, β ← β / η)."""
        self.beta_max, self.beta = self.beta, self.beta / ETA
        self.pending = False
