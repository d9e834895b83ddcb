"""Argument checks shared by the public functions, and the default priors.

Each check raises early with a message that names the argument, says what was wrong
and what to pass instead.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from .priors import GammaPriors

__all__ = [
    "DEFAULT_PRIORS",
    "at_default",
    "check_choice",
    "check_int",
    "check_positive_int",
    "check_real",
    "check_priors",
    "proper_priors",
]

DEFAULT_PRIORS = GammaPriors()
"""Gamma(1, 1) on every entry of W and H: the default of the model, the sampler, the
variational fit and calibration. Frozen, so one shared instance is safe as a default."""


def at_default(value: Any, default: Any) -> bool:
    """Return whether an argument is at its default (counts as not set).

    At its default means the default object itself, or a str, int, float or None of the
    default's type and value (so ``np.int64(1000)`` is not at the default ``1000``).
    Python cannot tell an argument left out from one given its default value; the
    functions that refuse arguments that do not apply (``method="vi"``, ``resume``)
    treat an argument at its default as not set.
    """
    return value is default or (
        isinstance(value, str | int | float | type(None))
        and type(value) is type(default)
        and value == default
    )


def check_int(value: Any, name: str, minimum: int) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` unless it is an integer >= minimum.

    Booleans are refused (``True`` is an int in Python but never a count here).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_real(
    value: Any, name: str, low: float, high: float = math.inf, *, closed_low: bool = False
) -> float:
    """Return ``value`` as a float inside (``low``, ``high``) (``[low, high)`` if ``closed_low``).

    Raises ``TypeError`` for what is not a real number (booleans included) and
    ``ValueError`` for NaN, infinity or a value out of range, naming ``name`` and the range.
    """
    span = f"{'[' if closed_low else '('}{low:g}, {high:g})".replace("inf", "infinity")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in {span}, got {value!r}")
    v = float(value)
    inside = (v >= low if closed_low else v > low) and v < high
    if not (math.isfinite(v) and inside):
        raise ValueError(f"{name} must be a finite number in {span}, got {value!r}")
    return v


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """Return ``value``, or raise ``ValueError`` unless it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_priors(
    priors: Any, *, allow_flat: bool = True, need_mode: bool = False
) -> GammaPriors | None:
    """Validate ``priors``: a :class:`GammaPriors`, or ``None`` (flat) where allowed.

    Parameters
    ----------
    priors : GammaPriors or None
    allow_flat : bool
        Whether ``None`` (flat priors, maximum likelihood) is accepted. Sampling needs
        proper priors: flat ones leave the scale of each component unbounded.
    need_mode : bool
        Whether every shape must be >= 1 (a MAP, or a point estimate, needs a mode).

    Returns
    -------
    GammaPriors or None

    Raises
    ------
    TypeError
        When ``priors`` is neither a :class:`GammaPriors` nor ``None``.
    ValueError
        For ``None`` where flat priors are not allowed, or a shape < 1 with
        ``need_mode``.
    """
    if priors is None:
        if allow_flat:
            return None
        raise ValueError(
            "priors=None (flat priors) gives an improper posterior: the scale of each "
            "component is unbounded; pass priors=GammaPriors(...) to sample"
        )
    if not isinstance(priors, GammaPriors):
        allowed = "a GammaPriors or None" if allow_flat else "a GammaPriors"
        raise TypeError(f"priors must be {allowed}, got {type(priors).__name__}")
    if need_mode:
        priors.check_map()
    return priors


def proper_priors(priors: Any) -> GammaPriors:
    """:func:`check_priors` with ``allow_flat=False``, typed as a :class:`GammaPriors`."""
    checked = check_priors(priors, allow_flat=False)
    assert checked is not None  # None was refused above
    return checked
