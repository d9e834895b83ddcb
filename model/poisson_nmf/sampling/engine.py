"""Running the chains: nutpie (one sampler per chain, in threads) or PyMC.

**One nutpie sampler per chain**, run in parallel threads (the kernel releases the
GIL), each from its own start and seed, so that starts are explicit and runs
reproducible; ``cores`` at a time, the next starting when one ends. The warm-up runs in
the stages of :func:`~poisson_nmf.sampling.warmup.warmup_schedule`. ``sampler="pymc"``
runs ``pm.sample`` on :func:`~poisson_nmf.model.build_model` from the same starts
(slower; for checking).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from ..data import Counts
from ..priors import GammaPriors
from ..progress import SamplingProgress
from .adaptation import TargetAcceptSchedule, settle_final_stage
from .callbacks import Slot
from .continuation import (
    TUNE_KW,
    ChainState,
    continued_chains,
    state_from_tree,
    stored_blocks,
    tuned_state,
)
from .coordinates import Coords, ridge_stretch
from .density import LogDensity
from .nutpie_model import nutpie_model
from .plan import RunArgs
from .starts import ChainStarts
from .stopping import ConvergenceMonitor, run_until
from .warmup import Stage, learn_long_directions, shear_directions, warmup_schedule

__all__ = ["run_chains", "run_nutpie", "run_pymc", "sample_chains", "unpack_draws"]


def run_nutpie(
    dens: LogDensity,
    starts: list[np.ndarray],
    seeds: list[int],
    draws: int,
    tune: int,
    cores: int,
    nuts_kwargs: dict,
    info: dict,
    single: bool = False,
    progress: SamplingProgress | None = None,
    monitor: Any = None,
    state: list[Any] | None = None,
    resume: tuple[Coords, list[ChainState]] | None = None,
    offset: int = 0,
) -> list[tuple[np.ndarray, np.ndarray, xr.Dataset]]:
    """Run the chains; ``info`` receives the warm-up stages and the learned rank.

    The warm-up runs in the stages of :func:`~poisson_nmf.sampling.warmup.warmup_schedule`;
    the last one tunes and stops, and its chains are continued with the step size and
    mass matrix it tuned (:mod:`poisson_nmf.sampling.continuation`) for the kept draws.
    ``monitor`` (a :class:`poisson_nmf.sampling.stopping.ConvergenceMonitor`): the kept
    draws are drawn until it says stop (``draws`` is then ignored; see
    :mod:`poisson_nmf.sampling.stopping`). ``state`` (a list) receives the coordinates
    and each chain's :class:`~poisson_nmf.sampling.continuation.ChainState` at its last
    kept draw. ``resume``: coordinates and chain states to continue, with no warm-up
    at all, after ``offset`` draws per chain held elsewhere (up to ``draws`` in all).
    Returns W (draws, F, K), H (draws, K, N) and the sample stats per chain.
    """
    # imported here, in the calling thread: nutpie converts each chain's trace with
    # arviz_base, whose first import inside a worker thread inspects the whole deep
    # stack (slow)
    import arviz_base  # noqa: F401
    import nutpie  # noqa: F401

    kw = {"progress_bar": False, "save_warmup": False, **nuts_kwargs}

    def keep_draws(coords: Coords, tuned: list[ChainState], seeds: list[int], kw: dict,
                   done: int, abort: bool) -> list[tuple[np.ndarray, xr.Dataset]]:  # fmt: skip
        """Draw the kept draws: each chain continued from its tuned state (one fixed step first)."""
        models, zs, kws = continued_chains(dens, coords, tuned, single)
        info["kernel"] = "float32" if models[0].user_data[Slot.SINGLE] else "float64"
        if monitor is None:
            runs = run_chains(models, zs, seeds, draws - offset, 1, cores, kw, progress, done,
                              True, chain_kws=kws)  # fmt: skip
        else:
            runs = run_until(models, zs, seeds, 1, cores, kw, monitor, progress, done,
                             abort_on_divergence=abort, chain_kws=kws, offset=offset)  # fmt: skip
        if state is not None:
            state[:] = [
                coords,
                [replace(t, x=np.array(x[-1])) for t, (x, _) in zip(tuned, runs, strict=True)],
            ]
        return runs

    if resume is not None:
        coords, tuned = resume
        # progress as if the warm-up and the stored draws were done again
        runs = keep_draws(coords, tuned, seeds, kw, tune + offset - 1, False)
        info["resumed_without_warmup"] = True
        return [(*unpack_draws(x, dens.F, dens.N, dens.K), st) for x, st in runs]

    beta, scale = ridge_stretch(dens, starts[0])
    coords = Coords(dens.F, dens.N, beta, scale, np.zeros((dens.n_dim, 0)), np.zeros(0))
    *learning, last = warmup_schedule(tune)
    done = 0  # iterations per chain before the run that keeps its draws
    for stage in learning:
        coords, starts = _learning_stage(dens, stage, coords, starts, seeds, cores, kw,
                                         single, progress, done, info)  # fmt: skip
        seeds = [(s * 7919 + 1) % (2**31 - 1) for s in seeds]
        done += stage.tune + stage.draws
    info["long_directions"] = int(coords.c.size)
    info["ridge_beta"] = [round(float(b), 3) for b in coords.beta]
    ys = [coords.to_y(x0) for x0 in starts]
    model = nutpie_model(dens, ys[0], coords, single)
    keep_seeds = [(s * 7919 + 2) % (2**31 - 1) for s in seeds]

    def final(kw: dict, abort: bool) -> list[tuple[np.ndarray, xr.Dataset]]:
        tuned = run_chains(model, ys, seeds, 1, last.tune, cores, {**kw, **TUNE_KW}, progress,
                           done, False, read=tuned_state)  # fmt: skip
        # progress: the tuning run's one draw and the continued chain's fixed first step
        # count as one iteration, so that the iterations add up to tune + draws
        return keep_draws(coords, tuned, keep_seeds, kw, done + last.tune - 1, abort)

    # redone at a higher target_accept while the kept draws diverge (adaptation.py)
    schedule = TargetAcceptSchedule.from_nuts_kwargs(nuts_kwargs)
    status = progress.status if progress is not None else None
    runs = settle_final_stage(final, kw, schedule, monitor, status)
    info.update(schedule.to_info())
    return [(*unpack_draws(x, dens.F, dens.N, dens.K), st) for x, st in runs]


def _learning_stage(
    dens: LogDensity,
    stage: Stage,
    coords: Coords,
    starts: list[np.ndarray],
    seeds: list[int],
    cores: int,
    kw: dict,
    single: bool,
    progress: SamplingProgress | None,
    done: int,
    info: dict,
) -> tuple[Coords, list[np.ndarray]]:
    """Run a learning stage of the warm-up; return the coordinates it learned.

    Also returns the chains' last points (the next stage's starts).
    """
    ys = [coords.to_y(x0) for x0 in starts]
    model = nutpie_model(dens, ys[0], coords, single)
    first = run_chains(model, ys, seeds, stage.draws, stage.tune, cores, kw, progress, done,
                       False)  # fmt: skip
    learned = learn_long_directions(
        coords, [coords.to_y(x) for x, _ in first], shear_directions(dens, starts[0])
    )
    info["warmup_stage1"] = {"tune": stage.tune, "draws": stage.draws}
    info["warmup_stage1_divergences"] = sum(int(st["diverging"].values.sum()) for _, st in first)
    return learned, [x[-1] for x, _ in first]


def unpack_draws(x: np.ndarray, F: int, N: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws of x = (log W, log H), shape (d, n), as W (d, F, K) and H (d, K, N)."""
    d = x.shape[0]
    return np.exp(x[:, : F * K]).reshape(d, F, K), np.exp(x[:, F * K :]).reshape(d, K, N)


def run_chains(
    base: Any,
    starts: list[np.ndarray],
    seeds: list[int],
    draws: int,
    tune: int,
    cores: int,
    kw: dict,
    progress: SamplingProgress | None = None,
    done: int = 0,
    keeps: bool = True,
    chain_kws: Sequence[dict] | None = None,
    read: Callable[[Any], Any] | None = None,
) -> list[Any]:
    """Draws of x (draws, n) and sample stats, per chain.

    ``progress`` hears of each chain's iterations, ``done`` of them already run in
    earlier stages; divergences count only in the run that ``keeps`` its draws.
    ``base`` is the nutpie model, or a list of one per chain; ``chain_kws`` adds
    settings per chain; ``read`` (nutpie's tree -> anything) replaces what is returned
    per chain.

    One nutpie sampler per chain (explicit start and seed), ``cores`` at a time, each
    waited on by its own thread (nutpie's wait releases the GIL), so the next chain
    starts as soon as one finishes. Waiting in threads rather than polling
    ``is_finished`` (which costs CPU on every call) leaves the cores to the chains.
    On an interrupt or error every running sampler is cancelled.
    """
    import nutpie

    live: dict[int, Any] = {}
    lock = threading.Lock()

    def one(c: int) -> Any:
        model = chain_model(base, c, starts[c])
        report = {}
        if progress is not None and progress.active:
            cb = progress.nutpie_callback(c, done, tune if keeps else -1)
            report = {"progress_callback": cb, "progress_rate": 500}
        more = chain_kws[c] if chain_kws is not None else {}
        sampler = nutpie.sample(model, draws=draws, tune=tune, chains=1, cores=1,
                                seed=seeds[c], blocking=False, **report, **kw, **more)  # fmt: skip
        with lock:
            live[c] = sampler
        tr = sampler.wait()
        with lock:
            live.pop(c, None)
        if progress is not None:
            div = int(tr["sample_stats"]["diverging"].values.sum()) if keeps else None
            progress.update(c, done + tune + draws, div)
        if read is not None:
            return read(tr)
        x = np.asarray(tr["posterior"]["x"].values[0])  # (draw, n_dim)
        return x, tr["sample_stats"].to_dataset().isel(chain=0, drop=True).load()

    ex = ThreadPoolExecutor(max_workers=max(1, cores))
    try:
        # the chains are the parallelism: BLAS threads would only compete with them
        with threadpool_limits(1):
            return list(ex.map(one, range(len(starts))))
    except BaseException:
        with lock:
            for s in live.values():
                s.cancel()
        raise
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def chain_model(base: Any, c: int, y0: np.ndarray) -> Any:
    """Chain ``c``'s nutpie model (``base``, or ``base[c]`` for a list) started at ``y0``."""
    model = base[c] if isinstance(base, list | tuple) else base
    return replace(model, initial_point_func=lambda seed, y0=y0: y0.copy())


def run_pymc(
    counts: Counts,
    dens: LogDensity,
    priors: GammaPriors,
    starts: list[np.ndarray],
    seeds: list[int],
    draws: int,
    tune: int,
    cores: int,
    nuts_kwargs: dict,
    quiet: bool = False,
) -> list[tuple[np.ndarray, np.ndarray, xr.Dataset]]:
    """Run ``pm.sample`` on :func:`~poisson_nmf.model.build_model` from the given starts.

    Returns W (draws, F, K), H (draws, K, N) and the sample stats per chain. ``quiet``:
    PyMC's log messages below errors (its sampler choice, timings, short-chain
    warnings: diagnose makes its own checks) are not shown.
    """
    import pymc as pm

    from ..model import build_model

    model = build_model(counts, dens.K, priors=priors, likelihood="dense")
    initvals = []
    for x0 in starts:
        W0, H0 = dens.unpack(x0)
        initvals.append({"W": W0, "H": H0})
    logger = logging.getLogger("pymc")
    level = logger.level
    if quiet:
        logger.setLevel(max(level, logging.ERROR))
    try:
        with model:
            tr = pm.sample(
                draws=draws, tune=tune, chains=len(starts), cores=cores, random_seed=seeds,
                initvals=initvals, compute_convergence_checks=False,
                **{"progressbar": False, **nuts_kwargs},
            )  # fmt: skip
    finally:
        logger.setLevel(level)
    post, stats = tr["posterior"], tr["sample_stats"]
    out = []
    for c in range(len(starts)):
        out.append(
            (
                np.asarray(post["W"].values[c], dtype=np.float64),
                np.asarray(post["H"].values[c], dtype=np.float64),
                stats.to_dataset().isel(chain=c, drop=True).load(),
            )
        )
    return out


def sample_chains(
    run: RunArgs,
    dens: LogDensity,
    starts: list[np.ndarray],
    seeds: list[int],
    ref: ChainStarts,
    bar: SamplingProgress,
    quiet: bool = False,
    state: list[Any] | None = None,
    resume: Any = None,
) -> tuple[list[Any], dict[str, Any], ConvergenceMonitor | None]:
    """Run the chains of ``run``: nutpie (until its rule stops them, with one) or PyMC.

    Returns each chain's W, H and sample stats, what the sampler reports of its warm-up
    (``attrs["sampler"]``) and the stopping monitor (None for a fixed number of draws).
    ``ref`` gives the alignment reference the rule checks the draws in. ``state`` (a
    list) receives nutpie's coordinates and chain states (see :func:`run_nutpie`).
    ``resume``: a fit with a ``sampler_state`` group, whose chains are continued with
    no warm-up (the draws returned are the new ones; the rule sees the stored ones
    first).
    """
    info: dict[str, Any] = {}
    monitor = None
    F, N = run.counts.shape
    if run.rule is not None:
        unpack = functools.partial(unpack_draws, F=F, N=N, K=run.K)
        monitor = ConvergenceMonitor(run.rule, unpack, ref.W_ref, ref.H_ref, run.normalize,
                                     bar.status)  # fmt: skip
    stored = None
    offset = 0
    if resume is not None and run.sampler == "nutpie":
        stored = state_from_tree(resume, F, N)  # None: an older fit, replayed instead
    if stored is not None:
        offset = int(run.resumed_from or 0)
        seeds = [(s * 7919 + 2 + offset) % (2**31 - 1) for s in seeds]
        if monitor is not None:
            monitor(stored_blocks(resume), offset)  # held, not checked (rule.start)
    if run.sampler == "nutpie":
        runs = run_nutpie(
            dens, starts, seeds, run.draws, run.tune, run.cores, run.nuts_kwargs, info,
            single=run.precision == "single", progress=bar, monitor=monitor, state=state,
            resume=stored, offset=offset,
        )  # fmt: skip
    else:
        kw = {"progressbar": bar.shows_bar, **run.nuts_kwargs}
        runs = run_pymc(run.counts, dens, run.priors, starts, seeds, run.draws, run.tune,
                        run.cores, kw, quiet=quiet)  # fmt: skip
        for c, (_, _, st) in enumerate(runs):
            bar.update(c, run.tune + run.draws, int(st["diverging"].values.sum()))
    return runs, info, monitor
