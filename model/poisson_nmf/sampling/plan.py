"""Settling the arguments of a run, its seeds and its memory plan, before any sampling.

Every bad argument fails here, early and named; ``resume`` replaces the settings it
stores; ``draws=None`` becomes a :class:`~poisson_nmf.sampling.stopping.StoppingRule`;
the memory budget (:mod:`poisson_nmf.memory`) may lower the draw budget or thin the
pointwise groups, with a warning, before anything is sampled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._validation import at_default, proper_priors
from ..align import check_normalize
from ..data import Counts, as_counts, check_n_components
from ..exceptions import warn_user
from ..memory import (
    POINTWISE_BYTES,
    POINTWISE_FLOOR,
    MemoryBudgetWarning,
    MemoryPlan,
    draws_within,
    plan_memory,
    thinning_message,
)
from ..priors import GammaPriors
from .kernels import use_dense
from .pointwise import pointwise_entries
from .stopping import (
    RESUMED,
    StoppingRule,
    check_rule_args,
    fixed_record,
    resume_settings,
    resumed_labels,
)

__all__ = [
    "RunArgs",
    "Seeds",
    "explicit",
    "plan_run_memory",
    "replay_seed",
    "seed_plan",
    "seed_repr",
    "settle_arguments",
    "stopping_record",
    "stopping_rule",
]


@dataclass(frozen=True)
class RunArgs:
    """The settled arguments of one run of :func:`~poisson_nmf.sample_posterior`.

    ``draws`` is the most draws per chain (the budget with a ``rule``); ``resumed_from``
    the draws per chain of the run ``resume`` continues.
    """

    counts: Counts
    K: int
    priors: GammaPriors
    draws: int
    tune: int
    chains: int
    cores: int
    sampler: str
    precision: str
    normalize: Any
    init: Any
    jitter: float
    keep: Any
    pointwise_draws: int | None
    max_memory: Any
    map_kwargs: dict
    nuts_kwargs: dict
    random_seed: Any
    rule: StoppingRule | None
    resumed_from: int | None


def settle_arguments(a: dict[str, Any]) -> RunArgs:
    """Check the arguments ``a`` of ``sample_posterior`` (by name) and settle them.

    Raises
    ------
    ValueError, TypeError
        An argument out of range or of the wrong type (named in the message).
    """
    counts = as_counts(a["V"], mask=a["mask"])
    K = check_n_components(a["n_components"], counts)
    a = dict(a)
    resumed_from = None
    if a["resume"] is not None:
        rs = resume_settings(a["resume"], counts, K, map_kwargs=a["map_kwargs"],
                             nuts_kwargs=a["nuts_kwargs"], given=explicit(a, RESUMED))  # fmt: skip
        counts = resumed_labels(a["resume"], counts)
        a.update(priors=rs.priors, tune=rs.tune, chains=rs.chains, sampler=rs.sampler,
                 precision=rs.precision, normalize=rs.normalize, init=rs.init,
                 jitter=rs.jitter, random_seed=rs.seed)  # fmt: skip
        resumed_from = rs.draws
        draws = a["draws"]
        if (draws if draws is not None else a["max_draws"]) <= resumed_from:
            raise ValueError(
                f"resume holds {resumed_from} draws per chain: pass a larger "
                f"{'draws' if draws is not None else 'max_draws'} to continue it"
            )
    priors = proper_priors(a["priors"])
    check_normalize(a["normalize"])
    _check_counts(a["draws"], a["tune"], a["chains"])
    if a["sampler"] not in ("nutpie", "pymc"):
        raise ValueError(f"sampler must be 'nutpie' or 'pymc', got {a['sampler']!r}")
    rule = stopping_rule(a["draws"], a["sampler"], a["target_rhat"], a["target_ess"],
                         a["max_draws"], a["max_time"], a["chains"])  # fmt: skip
    draws = a["draws"]
    if rule is None and (ignored := explicit(a, RULE_ARGS)):
        warn_user(
            f"{', '.join(ignored)} only apply with draws=None (draw until clean); with "
            f"draws={draws} the run draws exactly that many per chain and ignores them"
        )
    if rule is not None:
        rule = replace(rule, start=resumed_from or 0)
        draws = rule.max_draws  # the most it can be, for the progress bar
    _check_choices(a["precision"], a["keep"], a["pointwise_draws"])
    chains = int(a["chains"])  # NumPy integers are stored as ints (the attrs are JSON)
    draws = int(draws)  # the rule has set it when the run draws until clean
    pointwise_draws = None if a["pointwise_draws"] is None else int(a["pointwise_draws"])
    keep = a["keep"] if isinstance(a["keep"], str) else [int(c) for c in a["keep"]]
    cores = min(chains, os.cpu_count() or 1) if a["cores"] is None else int(a["cores"])
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    return RunArgs(
        counts=counts, K=K, priors=priors, draws=draws, tune=int(a["tune"]), chains=chains,
        cores=cores, sampler=a["sampler"], precision=a["precision"], normalize=a["normalize"],
        init=a["init"], jitter=a["jitter"], keep=keep,
        pointwise_draws=pointwise_draws, max_memory=a["max_memory"],
        map_kwargs=dict(a["map_kwargs"] or {}), nuts_kwargs=dict(a["nuts_kwargs"] or {}),
        random_seed=a["random_seed"], rule=rule, resumed_from=resumed_from,
    )  # fmt: skip


def explicit(a: dict[str, Any], names: Any) -> dict[str, Any]:
    """Return those of ``names`` in sample_posterior's arguments ``a`` not at their defaults.

    Python cannot tell an argument left out from one given its default value, so an
    argument equal to its default counts as not set (``tune=1000``, the default, on a
    run tuned 500 times is not refused by resume; ``tune=50`` is): equal means the
    default object itself, or a str, int, float or None of the default's type and value.
    """
    import inspect

    from .api import sample_posterior

    params = inspect.signature(sample_posterior).parameters
    return {n: a[n] for n in names if not at_default(a[n], params[n].default)}


def _check_counts(draws: Any, tune: Any, chains: Any) -> None:
    for name, val in (("draws", draws), ("tune", tune), ("chains", chains)):
        if name == "draws" and val is None:
            continue
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")


def _check_choices(precision: Any, keep: Any, pointwise_draws: Any) -> None:
    if precision not in ("single", "double"):
        raise ValueError(f"precision must be 'single' or 'double', got {precision!r}")
    if isinstance(keep, str) and keep not in ("all", "main"):
        raise ValueError(f"keep must be 'all', 'main' or a sequence of chains, got {keep!r}")
    if pointwise_draws is not None and (
        not isinstance(pointwise_draws, int | np.integer) or pointwise_draws < 0
    ):
        raise ValueError(
            f"pointwise_draws must be None or an integer >= 0, got {pointwise_draws!r}"
        )


def plan_run_memory(
    run: RunArgs,
) -> tuple[RunArgs, MemoryPlan, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """Fit the run into ``max_memory``.

    Returns the run (its draw budget maybe lowered), the memory plan and the entries of
    the pointwise groups (None: every observed entry).

    Warns
    -----
    MemoryBudgetWarning
        The draw budget of ``draws=None`` is lowered, or the pointwise draws thinned.
    """
    counts, K, chains = run.counts, run.K, run.chains
    F, N = counts.shape
    nnz, dense = int(counts.nz_values.size), use_dense(counts)
    rule = run.rule
    if rule is not None:
        # draw until clean within the memory budget: a budget of draws that the budget
        # cannot hold is lowered to what it can (a warning says so), leaving room for
        # POINTWISE_FLOOR pointwise draws (without them: no LOO, no predictive checks);
        # too few to check even once is refused below by plan_memory, with the sizes
        floor = min(POINTWISE_FLOOR, rule.max_draws * chains if run.pointwise_draws is None
                    else run.pointwise_draws)  # fmt: skip
        reserve = floor * POINTWISE_BYTES * counts.n_observed
        fit = draws_within(F, N, K, chains=chains, nnz=nnz, dense=dense,
                           max_memory=run.max_memory, reserve=reserve)  # fmt: skip
        if fit is not None and rule.start + rule.check_every <= fit < rule.max_draws:
            warn_user(
                f"max_draws = {rule.max_draws} per chain does not fit in max_memory = "
                f"{run.max_memory}: the run stops at {fit} draws per chain at most (raise "
                "max_memory, command line --max-memory, to allow more)",
                MemoryBudgetWarning,
            )
            run = replace(run, rule=replace(rule, max_draws=fit), draws=fit)
    draws, pw = run.draws, run.pointwise_draws
    # each chain keeps ceil(pw / chains) draws (add_pointwise_groups): planned as such
    n_req = draws * chains if pw is None else min(-(-pw // chains) * chains, draws * chains)
    entries = pointwise_entries(counts) if n_req else None
    mem = plan_memory(
        F, N, K, chains=chains, draws=draws,
        n_observed=counts.n_observed if entries is None else entries[0].size,
        nnz=nnz, dense=dense, pointwise_draws=n_req, max_memory=run.max_memory,
    )  # fmt: skip
    if mem.pointwise_draws < n_req:
        warn_user(thinning_message(mem), MemoryBudgetWarning)
    return run, mem, entries


@dataclass(frozen=True)
class Seeds:
    """The run's generators, spawned from one seed: MAP, jitter, predictive; chain seeds."""

    replay: int | None
    map: np.random.Generator
    jitter: np.random.Generator
    predictive: np.random.Generator
    chains: list[int]


def seed_plan(random_seed: Any, chains: int) -> Seeds:
    """Spawn the run's generators from ``random_seed`` (an int, Generator or None)."""
    replay = replay_seed(random_seed)
    rng = np.random.default_rng(random_seed if replay is None else replay)
    rng_map, rng_jit, rng_chain, rng_pp = rng.spawn(4)
    seeds = [int(s) for s in rng_chain.integers(0, 2**31 - 1, size=chains)]
    return Seeds(replay, rng_map, rng_jit, rng_pp, seeds)


def replay_seed(random_seed: Any) -> int | None:
    """Return the int seed a run can be replayed from: the seed, or a fresh one for None."""
    if isinstance(random_seed, int | np.integer) and not isinstance(random_seed, bool):
        return int(random_seed)
    if random_seed is None:
        return int(np.random.SeedSequence().generate_state(2, np.uint32).view(np.uint64)[0] >> 1)
    return None  # a Generator or SeedSequence: not replayable


#: the stopping rule's settings, ignored with an explicit ``draws``
RULE_ARGS = ("target_rhat", "target_ess", "max_draws", "max_time")


def stopping_rule(
    draws: int | None,
    sampler: str,
    target_rhat: Any,
    target_ess: Any,
    max_draws: Any,
    max_time: Any,
    chains: int,
) -> StoppingRule | None:
    """Return the stopping rule of ``draws=None`` (None for an explicit number of draws)."""
    check_rule_args(target_rhat, target_ess, max_draws, max_time)
    if draws is not None:
        return None
    if sampler != "nutpie":
        raise ValueError(
            "draws=None (sample until clean) needs sampler='nutpie'; give sampler='pymc' "
            "an explicit number of draws"
        )
    if int(chains) < 2:  # R-hat is undefined with one chain: the rule could never be met
        raise ValueError(
            "draws=None samples until R-hat and ESS are met, and R-hat needs at least 2 "
            "chains: pass chains >= 2, or an explicit draws=N"
        )
    return StoppingRule(
        float(target_rhat), float(target_ess), int(chains), int(max_draws),
        None if max_time is None else float(max_time),
    )  # fmt: skip


def stopping_record(monitor: Any, draws: int, resumed_from: int | None) -> str:
    """``attrs["stopping"]``: the monitor's record, or that of a fixed number of draws."""
    if monitor is None:
        return fixed_record(draws, resumed_from)
    return str(monitor.record(draws, resumed_from))


def seed_repr(random_seed: Any) -> Any:
    """Return the seed as stored in the settings: an int, None, or the repr of a Generator."""
    if random_seed is None or isinstance(random_seed, int | np.integer):
        return None if random_seed is None else int(random_seed)
    return repr(random_seed)
