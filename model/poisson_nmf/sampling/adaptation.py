"""Divergence-triggered re-adaptation of the final warm-up stage.

:func:`poisson_nmf.sample_posterior` warms its chains up in two stages (see
:func:`poisson_nmf.sampling.engine.run_nutpie`); the second, final stage tunes
nutpie's step size and mass matrix and then keeps the draws. On small, poorly
determined tables a step size adapted to nutpie's default ``target_accept`` of 0.8 is
sometimes too long for the narrow parts of the posterior, and the kept draws diverge:
the chains did not explore part of it.

The rule here: when the kept draws of any chain diverge, the final stage is **redone
from its start** (the same start points, coordinates and chain seeds, after the same
first stage) with the next, higher ``target_accept`` of :data:`TARGET_ACCEPT_LADDER`,
until an attempt has no divergence or the ladder ends. Every draw of a discarded
attempt is discarded; the kept draws are all from one complete run of an unchanged
MCMC kernel (step size and mass matrix fixed after its warm-up), so each chain targets
exactly the model's posterior. The rule only chooses *which* run is kept, a
data-dependent choice of the same kind as a user who raises ``target_accept`` after
seeing divergences (Stan's advice), made automatically and recorded.

Where nothing diverges the first attempt is kept as it is: no extra cost, and the same
draws as before this rule existed. A ``target_accept`` given in ``nuts_kwargs`` is
respected: that one attempt, no escalation.

With the stopping rule (``draws=None``) an attempt that is not the last is stopped at
its first diverging kept draw (``run_until``'s ``abort_on_divergence``); it
would be discarded anyway, so the decision is the same and the rest of it is saved.

Every attempt is recorded in ``attrs["sampler"]``: ``"target_accept_schedule"`` (the
values tried, in order), ``"target_accept"`` (the one whose draws were kept),
``"adaptation_attempts"`` (per attempt: target_accept, kept-draw divergences, draws per
chain; an attempt stopped at its first divergence has ``"stopped_at_first_divergence"``
and counts 1) and ``"target_accept_rule"`` (why: ``"escalate_on_divergence"`` or
``"user"``).

Resuming (``resume=``) continues the stored chains with the step size and mass matrix
their final stage kept (:mod:`poisson_nmf.sampling.continuation`): there is no warm-up
to redo, so a divergence in the new draws is counted and reported by ``diagnose``, not
escalated. A fit without a stored sampler state is replayed with this rule again; a
longer replay can see a divergence the stored run did not reach and escalate
differently, in which case the stored draws do not come out again and
``check_replay`` warns.

Reference: Betancourt (2017), *A Conceptual Introduction to Hamiltonian Monte Carlo*,
section 6.2 (divergences and their remedy by a smaller step size).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_TARGET_ACCEPT",
    "DivergedAttempt",
    "TARGET_ACCEPT_LADDER",
    "TargetAcceptSchedule",
    "count_divergences",
    "settle_final_stage",
]

#: nutpie's own default ``target_accept`` (the first attempt passes none)
DEFAULT_TARGET_ACCEPT = 0.8
#: the values tried in turn while the kept draws diverge
TARGET_ACCEPT_LADDER: tuple[float, ...] = (0.8, 0.9, 0.95, 0.99)

# one chain's result from the final stage: draws of x (d, n) and its sample stats
Run = tuple[np.ndarray, Any]


class DivergedAttempt(Exception):
    """Raised by a final stage stopped early because a draw it would keep diverged.

    Parameters
    ----------
    draws : int
        Draws per chain when it was stopped (the first diverging one included).
    """

    def __init__(self, draws: int) -> None:
        super().__init__(f"a kept draw diverged within the first {draws} draws")
        self.draws = int(draws)


def count_divergences(runs: Sequence[Run]) -> int:
    """Total divergent transitions over the chains' kept draws.

    Parameters
    ----------
    runs : sequence of (x, stats)
        Per chain, the draws (d, n) and an xarray Dataset of sample stats with a
        boolean ``diverging`` variable (as nutpie returns it).

    Returns
    -------
    int
    """
    return int(sum(int(np.asarray(st["diverging"].values).sum()) for _, st in runs))


@dataclass
class TargetAcceptSchedule:
    """The ``target_accept`` values to try and the record of the attempts.

    Parameters
    ----------
    ladder : tuple of float
        Values tried in order, each in (0, 1) and increasing.
    user : bool
        Whether the single value came from the user's ``nuts_kwargs`` (no escalation).
    attempts : list of dict
        Filled by :meth:`add`.
    """

    ladder: tuple[float, ...]
    user: bool = False
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        lad = tuple(float(v) for v in self.ladder)
        if not lad:
            raise ValueError("ladder must hold at least one target_accept value")
        if any(not 0.0 < v < 1.0 for v in lad):
            raise ValueError(f"target_accept values must lie in (0, 1), got {lad}")
        if any(b <= a for a, b in zip(lad, lad[1:], strict=False)):
            raise ValueError(f"the target_accept ladder must increase, got {lad}")
        self.ladder = lad

    @classmethod
    def from_nuts_kwargs(
        cls, nuts_kwargs: dict[str, Any], ladder: Sequence[float] | None = None
    ) -> TargetAcceptSchedule:
        """Return the user's ``target_accept`` alone if ``nuts_kwargs`` sets one, else ``ladder``.

        ``ladder`` defaults to :data:`TARGET_ACCEPT_LADDER`, read at the call.

        Raises
        ------
        TypeError
            If ``nuts_kwargs["target_accept"]`` is not a real number.
        """
        if "target_accept" in nuts_kwargs:
            v = nuts_kwargs["target_accept"]
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise TypeError(
                    f"nuts_kwargs['target_accept'] must be a number in (0, 1), got {v!r}"
                )
            return cls((float(v),), user=True)
        return cls(tuple(TARGET_ACCEPT_LADDER if ladder is None else ladder))

    def kwargs(self, i: int, base: dict[str, Any]) -> dict[str, Any]:
        """Nutpie keywords for attempt ``i``: ``base``, with the ladder's value.

        The first attempt passes ``base`` unchanged where its value is nutpie's default
        or the user's (already in ``base``), so that runs without divergences are
        exactly as without this rule; a ladder that starts elsewhere passes its value.
        """
        if i == 0 and (self.user or self.ladder[0] == DEFAULT_TARGET_ACCEPT):
            return base
        return {**base, "target_accept": self.ladder[i]}

    def add(
        self, target_accept: float, divergences: int, draws: int, stopped_early: bool = False
    ) -> None:
        """Record one attempt (``stopped_early``: at its first kept divergence)."""
        a = {
            "target_accept": float(target_accept),
            "divergences": int(divergences),
            "draws_per_chain": int(draws),
        }
        if stopped_early:
            a["stopped_at_first_divergence"] = True
        self.attempts.append(a)

    def to_info(self) -> dict[str, Any]:
        """Return the keys this rule adds to ``attrs["sampler"]``."""
        tried = [a["target_accept"] for a in self.attempts]
        return {
            "target_accept_rule": "user" if self.user else "escalate_on_divergence",
            "target_accept_schedule": tried,
            "target_accept": tried[-1] if tried else self.ladder[0],
            "adaptation_attempts": list(self.attempts),
        }


def settle_final_stage(
    run: Callable[[dict[str, Any], bool], list[Run]],
    kw: dict[str, Any],
    schedule: TargetAcceptSchedule,
    monitor: Any = None,
    status: Callable[[str], None] | None = None,
) -> list[Run]:
    """Run the final warm-up stage and its kept draws, redone while they diverge.

    Parameters
    ----------
    run : callable
        ``run(kw, abort)`` runs the final stage of every chain from its fixed start,
        seed and coordinates with nutpie keywords ``kw`` and returns, per chain, the
        kept draws of x (d, n) and the sample stats. It must be deterministic given
        ``kw``. When ``abort`` (every attempt but the last) it may raise
        :class:`DivergedAttempt` as soon as a draw it would keep diverges, which saves
        the rest of a run that would be discarded anyway (the decision is the same).
    kw : dict
        Nutpie keywords of the first attempt.
    schedule : TargetAcceptSchedule
        The values to try; receives the record of every attempt.
    monitor : poisson_nmf.sampling.stopping.ConvergenceMonitor, optional
        The stopping rule's monitor, emptied before each new attempt so that its record
        describes the kept run only (the discarded runs' stops are in ``schedule``).
    status : callable, optional
        Told, in one line, when an attempt is discarded (the progress bar).

    Returns
    -------
    list of (x, stats)
        The kept attempt's chains: the first without divergences, or the last.
    """
    runs: list[Run] = []
    for i, ta in enumerate(schedule.ladder):
        if i > 0 and monitor is not None:
            monitor.reset()
        last = i + 1 == len(schedule.ladder)
        try:
            runs = run(schedule.kwargs(i, kw), not last)
            div = count_divergences(runs)
            draws = int(runs[0][0].shape[0]) if runs else 0
        except DivergedAttempt as e:
            runs, div, draws = [], 1, e.draws
        schedule.add(ta, div, draws, stopped_early=not runs)
        if div == 0 or last:
            break
        if status is not None:
            status(
                f"{div} divergences at target_accept {schedule.attempts[-1]['target_accept']:g}:"
                f" redoing the final warm-up at {schedule.ladder[i + 1]:g}"
            )
        runs = []  # free the discarded draws before the next attempt
    return runs
