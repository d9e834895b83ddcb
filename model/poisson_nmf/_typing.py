"""Type aliases shared by the public signatures.

They document what an argument accepts; the checks live where the argument is read
(:func:`poisson_nmf.as_counts` for counts, :func:`numpy.random.default_rng` for seeds).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

__all__ = ["CountsLike", "Normalize", "SeedLike"]

type CountsLike = Any
"""Counts as :func:`poisson_nmf.as_counts` takes them: a NumPy array, a pandas
DataFrame, a SciPy sparse matrix, an xarray DataArray or a :class:`Counts`, shape (F, N)."""

type SeedLike = int | np.random.Generator | None
"""A seed for :func:`numpy.random.default_rng`: an integer, a Generator or ``None``."""

type Normalize = Literal["W", "H"]
"""Which factor carries the unit scale of each component (:func:`poisson_nmf.normalize_factors`)."""
