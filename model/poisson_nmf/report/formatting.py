"""One number formatter and one JSON cleaner, for the report and the diagnostics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["fmt_int", "fmt_num", "json_ready"]


def fmt_num(x: Any, digits: int = 4) -> str:
    """Write a number for a person.

    ``"n/a"`` for None or non-finite, integers whole, else ``digits`` significant
    digits; booleans as ``"yes"`` / ``"no"``.
    """
    if x is None:
        return "n/a"
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, int | np.integer):
        return f"{int(x)}"
    x = float(x)
    if not math.isfinite(x):
        return "n/a"
    if x.is_integer() and abs(x) < 1e9:
        return f"{int(x)}"
    return f"{x:.{digits}g}"


def fmt_int(x: Any) -> str:
    """Write a count rounded to a whole number (ESS), ``"n/a"`` when undefined."""
    return f"{float(x):.0f}" if x is not None and math.isfinite(float(x)) else "n/a"


def json_ready(x: Any) -> Any:
    """Return ``x`` with NumPy scalars made Python ones, tuples lists and non-finite floats None."""
    if isinstance(x, dict):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_ready(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
