"""Memory planned before sampling: what a run will hold, against a budget.

:func:`plan_memory` estimates, before any sampling, the bytes of everything a
:func:`poisson_nmf.sample_posterior` run stores and everything computed after it, and
fits the run into ``max_memory``:

- **base**: the counts (dense or sparse, the sampler's own copies, the dense
  ``observed_data``), and the draws of W and H (``chains x draws x (F + N) K`` float64)
  held up to :data:`POSTERIOR_COPIES` times at once (the sampler's trace, the
  normalised draws, the aligned draws, the tree);
- **pointwise**: per pointwise draw, every observed entry's log-likelihood (float32)
  and predictive count (int32) stored, plus what :func:`poisson_nmf.diagnose` and the
  report compute from them (the predictive intervals sort a float64 copy; the rootogram
  reads the counts; ArviZ's LOO works in float64): :data:`POINTWISE_BYTES` per entry
  and draw in all;
- **work**: the bounded chunks the post-processing runs in (:data:`CHUNK_BYTES` each;
  never a dense F x N array for every draw at once).

Past the budget, the pointwise groups are thinned (down to the 25 draws PSIS-LOO needs)
or left out, with a :class:`MemoryBudgetWarning` that gives the sizes; when even the
base does not fit, the run is refused before sampling with the setting to change. The
estimates are upper bounds of what the code allocates, not measurements; measured peaks
are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .exceptions import MemoryBudgetWarning

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_MAX_MEMORY",
    "MemoryBudgetWarning",
    "MemoryPlan",
    "POINTWISE_FLOOR",
    "format_bytes",
    "parse_bytes",
    "plan_memory",
    "thinning_message",
]

# the default budget: 4 GB fits a laptop with room to spare and holds the bundled digits
# (1797 x 64, K = 10) at the defaults with every pointwise draw; larger tables get their
# pointwise groups thinned, or a refusal that names the setting, instead of the kernel's
# out-of-memory kill
DEFAULT_MAX_MEMORY = "4GB"
POSTERIOR_COPIES = 4
# bytes per observed entry and pointwise draw: 4 (log-likelihood, float32) + 4
# (predictive count, int32) stored, 16 for diagnose's float64 interval copy and sort,
# 4 for the report's rootogram, 12 for ArviZ's LOO (float64 work on the whole group).
# Measured on the corpus (benchmarks/README.md): 35 bytes per entry and draw beyond the
# base at the peak, which 28 underestimated by 0.84 GB
POINTWISE_BYTES = 40
#: pointwise draws that a lowered draw budget of ``draws=None`` leaves room for (when
#: asked for): twice the 25 PSIS-LOO needs (the predictive checks need 20). Each draw of
#: it costs draws of W and H: on all digits (K = 10, 4 GB) 50 leave 1,560 draws per
#: chain, 100 would leave 1,468, short of the 1,500 that seed 0 needed to be clean
POINTWISE_FLOOR = 50
# one chunk of post-processing work (rates of a few draws, intervals of a few entries)
CHUNK_BYTES = 64 * 2**20
_PSIS_MIN_DRAWS = 25
_UNITS = {
    "": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
    "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
    "tib": 2**40,
}  # fmt: skip


def parse_bytes(value: Any, name: str = "max_memory") -> int | None:
    """Read a memory size: ``"4GB"``, ``"512MiB"``, ``2_000_000_000`` or ``None`` (no limit).

    Raises
    ------
    ValueError
        For anything else, naming ``name``.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "inf")):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and value > 0:
            return int(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if m and m.group(2).lower() in _UNITS and float(m.group(1)) > 0:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise ValueError(
        f"{name} must be a size such as '4GB', '500MB' or '8GiB' (or None for no limit), "
        f"got {value!r}"
    )


def format_bytes(n: float) -> str:
    """Write a size in decimal units, three significant digits: ``1.5e9`` -> ``'1.5 GB'``.

    Every message of this module gives sizes this way (never raw bytes): the unit is the
    largest one the rounded value reaches (999.96 MB reads ``'1 GB'``, not ``'1e+03 MB'``).
    """
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(float(f"{n:.3g}")) >= size:
            return f"{float(f'{n / size:.3g}'):g} {unit}"
    return f"{round(n)} B"


@dataclass(frozen=True)
class MemoryPlan:
    """What a run will hold, in bytes, and the pointwise draws that fit the budget.

    Attributes
    ----------
    budget : int or None
        ``max_memory`` in bytes (None: no limit).
    data, posterior, base : int
        The counts and their copies; the draws of W and H times their copies; the sum.
    pointwise_per_draw : int
        Bytes per pointwise draw (stored and computed from it).
    requested, pointwise_draws : int
        Pointwise draws asked for and granted.
    chunk_draws, chunk_entries : int
        Draws per chunk of rates (dense F x N each) and entries per chunk of intervals.
    """

    budget: int | None
    data: int
    posterior: int
    pointwise_per_draw: int
    requested: int
    pointwise_draws: int
    chunk_draws: int
    chunk_entries: int

    @property
    def base(self) -> int:
        """Bytes held whatever the pointwise draws: data, posterior, one work chunk."""
        return self.data + self.posterior + CHUNK_BYTES

    @property
    def total(self) -> int:
        """Bytes of the whole run with the granted pointwise draws."""
        return self.base + self.pointwise_draws * self.pointwise_per_draw

    def to_dict(self) -> dict:
        """JSON-ready summary (bytes)."""
        return {
            "max_memory": self.budget,
            "data": self.data,
            "posterior": self.posterior,
            "pointwise_per_draw": self.pointwise_per_draw,
            "pointwise_draws_requested": self.requested,
            "pointwise_draws": self.pointwise_draws,
            "estimated_total": self.total,
        }


def _data_bytes(F: int, N: int, nnz: int, dense: bool) -> int:
    """Bytes of the counts (dense float64 or CSR), the sampler's copies and observed_data.

    ``observed_data`` is the grid for dense input and the non-zeros with their labels for
    sparse input (:mod:`poisson_nmf.observed`).
    """
    cells = F * N
    return (
        (cells * 8 if dense else nnz * 24)
        + (cells * 8 if dense else nnz * 16)
        + (cells * 8 if dense else nnz * 24)
    )


def draws_within(
    F: int,
    N: int,
    K: int,
    *,
    chains: int,
    nnz: int,
    dense: bool,
    max_memory: Any,
    reserve: int = 0,
) -> int | None:
    """Most draws per chain whose W and H (with their working copies) fit in ``max_memory``.

    ``reserve`` bytes of the budget are kept for something else (the pointwise draws).

    Returns
    -------
    int or None
        ``None`` without a budget; 0 or less when not even the counts fit.
    """
    budget = parse_bytes(max_memory)
    if budget is None:
        return None
    per_draw = POSTERIOR_COPIES * chains * (F + N) * K * 8
    room = budget - reserve - _data_bytes(F, N, nnz, dense) - CHUNK_BYTES
    return int(room // max(1, per_draw))


def plan_memory(
    F: int,
    N: int,
    K: int,
    *,
    chains: int,
    draws: int,
    n_observed: int,
    nnz: int,
    dense: bool,
    pointwise_draws: int,
    max_memory: Any = DEFAULT_MAX_MEMORY,
) -> MemoryPlan:
    """Estimate a run's memory and fit its pointwise draws into ``max_memory``.

    Parameters
    ----------
    F, N, K : int
        Shape of V and the number of components.
    chains, draws : int
        Draws kept per chain.
    n_observed : int
        Observed (not masked) entries: the size of each pointwise draw.
    nnz : int
        Non-zero counts (the sparse sampler's data).
    dense : bool
        Whether the sampler holds V densely (float32 copies of V and of its mask).
    pointwise_draws : int
        Pointwise draws asked for (already capped at ``chains * draws``).
    max_memory : str, int or None
        The budget (see :func:`parse_bytes`).

    Returns
    -------
    MemoryPlan
        ``pointwise_draws`` may be lower than asked (the caller warns).

    Raises
    ------
    ValueError
        When the counts and the draws of W and H alone exceed the budget: the message
        gives the sizes and the settings that bring the run within it.
    """
    budget = parse_bytes(max_memory)
    cells = F * N
    data = _data_bytes(F, N, nnz, dense)
    posterior = POSTERIOR_COPIES * chains * draws * (F + N) * K * 8
    per_draw = POINTWISE_BYTES * n_observed
    # dense rates of a chunk of draws (two float64 arrays of F x N at a time) in one chunk
    chunk_draws = max(1, min(32, CHUNK_BYTES // max(1, 2 * cells * 8)))
    chunk_entries = max(1, CHUNK_BYTES // max(1, 3 * 8 * max(1, pointwise_draws)))
    granted = pointwise_draws
    plan = MemoryPlan(budget, data, posterior, per_draw, pointwise_draws, granted,
                      chunk_draws, chunk_entries)  # fmt: skip
    if budget is None:
        return plan
    if plan.base > budget:
        fit_draws = draws_within(F, N, K, chains=chains, nnz=nnz, dense=dense, max_memory=budget)
        assert fit_draws is not None  # a budget was given
        raise ValueError(
            f"this run needs about {format_bytes(plan.base)} before any pointwise group "
            f"(the counts {format_bytes(data)}; {chains} chains x {draws} draws of (F + N) K = "
            f"{(F + N) * K} parameters, {format_bytes(posterior)} with their working "
            f"copies), past max_memory = {format_bytes(budget)}: raise max_memory "
            "(command line: --max-memory), or lower draws (--draws; "
            + (f"at most about {int(fit_draws)} fit" if fit_draws > 0 else "no number fits")
            + ") or chains (--chains)"
        )
    room = budget - plan.base
    granted = int(min(pointwise_draws, room // max(1, per_draw)))
    if granted < _PSIS_MIN_DRAWS and granted < pointwise_draws:
        granted = 0
    entries = max(1, CHUNK_BYTES // max(1, 3 * 8 * max(1, granted)))
    return MemoryPlan(budget, data, posterior, per_draw, pointwise_draws, granted,
                      chunk_draws, entries)  # fmt: skip


def thinning_message(plan: MemoryPlan) -> str:
    """Return the warning for a plan that thinned or left out the pointwise groups."""
    what = (
        f"thinned to {plan.pointwise_draws} draws"
        if plan.pointwise_draws
        else "left out (fewer than the 25 draws PSIS-LOO needs would fit)"
    )
    return (
        f"the pointwise groups (log_likelihood, posterior_predictive) of "
        f"{plan.requested} draws would take "
        f"{format_bytes(plan.requested * plan.pointwise_per_draw)} with their checks, "
        f"beside {format_bytes(plan.base)} for the counts and the draws of W and H, "
        f"past max_memory = {format_bytes(plan.budget or 0)}: {what}. "
        "Raise max_memory (command line: --max-memory) to keep them all"
    )
