"""Warnings and errors of poisson-nmf, in one place (importing this module imports nothing)."""

from __future__ import annotations

import os
import warnings

__all__ = [
    "ConvergenceWarning",
    "FitFormatError",
    "LabelColumnWarning",
    "MemoryBudgetWarning",
    "MultipleModesWarning",
    "TrappedZerosWarning",
    "ZeroRowsColumnsWarning",
    "warn_user",
]


class ConvergenceWarning(UserWarning):
    """The iteration budget ran out before the objective stopped decreasing."""


class TrappedZerosWarning(UserWarning):
    """Zeros that a method cannot leave: replaced in a start, or a component left dead.

    Multiplicative updates never move an entry at exactly 0, and no method moves a
    dead component (a zero column of W or row of H: its gradient is 0, a saddle point).
    """


class ZeroRowsColumnsWarning(UserWarning):
    """V has all-zero rows or columns; they are kept (filter this to silence it)."""


class MultipleModesWarning(UserWarning):
    """Chains of one run sit in different posterior modes."""


class FitFormatError(ValueError):
    """A file is not a poisson-nmf fit, or one of another model or version."""


class LabelColumnWarning(UserWarning):
    """The label column of a table holds only integers and may be data (see ``index``)."""


class MemoryBudgetWarning(UserWarning):
    """Pointwise groups thinned or left out to keep a run within ``max_memory``."""


# every file of the package: warnings skip its frames, however deep the call
_PACKAGE_DIR = (os.path.dirname(os.path.abspath(__file__)),)


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn at the user's line: the first frame outside poisson_nmf, however deep the call.

    A fixed ``stacklevel`` points into the package as soon as a stage moves into a
    helper; ``skip_file_prefixes`` (Python 3.12) does not.
    """
    warnings.warn(message, category, skip_file_prefixes=_PACKAGE_DIR)
