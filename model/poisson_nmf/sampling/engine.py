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
) -> list[tuple[np.ndarray, np.ndarray, xr.Dataset]]:
    """Run the chains; ``info`` receives the warm-up stages and the learned rank.

    The warm-up runs in the stages of :func:`~poisson_nmf.sampling.warmup.warmup_schedule`,
    then the kept draws. ``monitor`` (a
    :class:`poisson_nmf.sampling.stopping.ConvergenceMonitor`): the kept draws are drawn
    until it says stop (``draws`` is then ignored; see
    :mod:`poisson_nmf.sampling.stopping`). Returns W (draws, F, K), H (draws, K, N) and
    the sample stats per chain.
    """
    # imported here, in the calling thread: nutpie converts each chain's trace with
    # arviz_base, whose first import inside a worker thread inspects the whole deep
    # stack (slow)
    import arviz_base  # noqa: F401
    import nutpie  # noqa: F401

    kw = {"progress_bar": False, "save_warmup": False, **nuts_kwargs}
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
    info["kernel"] = "float32" if model.user_data[Slot.SINGLE] else "float64"

    def final(kw: dict, abort: bool) -> list[tuple[np.ndarray, xr.Dataset]]:
        if monitor is None:
            return run_chains(model, ys, seeds, draws, last.tune, cores, kw, progress, done, True)
        return run_until(model, ys, seeds, last.tune, cores, kw, monitor, progress, done,
                         abort_on_divergence=abort)  # fmt: skip

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
) -> list[tuple[np.ndarray, xr.Dataset]]:
    """Draws of x (draws, n) and sample stats, per chain.

    ``progress`` hears of each chain's iterations, ``done`` of them already run in
    earlier stages; divergences count only in the run that ``keeps`` its draws.

    One nutpie sampler per chain (explicit start and seed), ``cores`` at a time, each
    waited on by its own thread (nutpie's wait releases the GIL), so the next chain
    starts as soon as one finishes. Waiting in threads rather than polling
    ``is_finished`` (which costs CPU on every call) leaves the cores to the chains.
    On an interrupt or error every running sampler is cancelled.
    """
    import nutpie

    live: dict[int, Any] = {}
    lock = threading.Lock()

    def one(c: int) -> tuple[np.ndarray, xr.Dataset]:
        model = replace(base, initial_point_func=lambda seed, y0=starts[c]: y0.copy())
        report = {}
        if progress is not None and progress.active:
            cb = progress.nutpie_callback(c, done, tune if keeps else -1)
            report = {"progress_callback": cb, "progress_rate": 500}
        sampler = nutpie.sample(model, draws=draws, tune=tune, chains=1, cores=1,
                                seed=seeds[c], blocking=False, **report, **kw)  # fmt: skip
        with lock:
            live[c] = sampler
        tr = sampler.wait()
        with lock:
            live.pop(c, None)
        if progress is not None:
            div = int(tr["sample_stats"]["diverging"].values.sum()) if keeps else None
            progress.update(c, done + tune + draws, div)
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
) -> tuple[list[Any], dict[str, Any], ConvergenceMonitor | None]:
    """Run the chains of ``run``: nutpie (until its rule stops them, with one) or PyMC.

    Returns each chain's W, H and sample stats, what the sampler reports of its warm-up
    (``attrs["sampler"]``) and the stopping monitor (None for a fixed number of draws).
    ``ref`` gives the alignment reference the rule checks the draws in.
    """
    info: dict[str, Any] = {}
    monitor = None
    F, N = run.counts.shape
    if run.rule is not None:
        unpack = functools.partial(unpack_draws, F=F, N=N, K=run.K)
        monitor = ConvergenceMonitor(run.rule, unpack, ref.W_ref, ref.H_ref, run.normalize,
                                     bar.status)  # fmt: skip
    if run.sampler == "nutpie":
        runs = run_nutpie(
            dens, starts, seeds, run.draws, run.tune, run.cores, run.nuts_kwargs, info,
            single=run.precision == "single", progress=bar, monitor=monitor,
        )  # fmt: skip
    else:
        kw = {"progressbar": bar.shows_bar, **run.nuts_kwargs}
        runs = run_pymc(run.counts, dens, run.priors, starts, seeds, run.draws, run.tune,
                        run.cores, kw, quiet=quiet)  # fmt: skip
        for c, (_, _, st) in enumerate(runs):
            bar.update(c, run.tune + run.draws, int(st["diverging"].values.sum()))
    return runs, info, monitor
