r"""The public entry point: :func:`sample_posterior`, run as its stages; :func:`posterior_summary`.

The posterior sampled is exactly that of :func:`poisson_nmf.model.build_model`:
:math:`v_{fn} \sim \mathrm{Poisson}((WH)_{fn})`, :math:`w_{fk} \sim \mathrm{Gamma}(a_w, b_w)`,
:math:`h_{kn} \sim \mathrm{Gamma}(a_h, b_h)`, sampled by NUTS on :math:`(\log W, \log H)`
(PyMC's log transform, Jacobian included). The stages, one module each:

1. :mod:`~poisson_nmf.sampling.plan`: arguments settled, memory planned, seeds spawned;
2. :mod:`~poisson_nmf.sampling.starts`: the chains' starts and the alignment reference;
3. :mod:`~poisson_nmf.sampling.warmup` and :mod:`~poisson_nmf.sampling.engine`: the
   warm-up, then the chains (or the stopping loop, :mod:`~poisson_nmf.sampling.stopping`);
4. :mod:`~poisson_nmf.sampling.postprocess`, :mod:`~poisson_nmf.sampling.pointwise`,
   :mod:`~poisson_nmf.sampling.modes`: aligned draws, observed data, pointwise groups,
   modes, provenance.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import DEFAULT_PRIORS
from ..align import Normalize
from ..memory import DEFAULT_MAX_MEMORY
from ..priors import GammaPriors
from ..progress import ProgressArg, SamplingProgress
from .cache import load_callbacks
from .continuation import state_group
from .density import LogDensity
from .engine import sample_chains
from .modes import detect_modes
from .plan import plan_run_memory, seed_plan, settle_arguments
from .pointwise import add_pointwise_groups
from .postprocess import (
    add_observed_data,
    align_chains,
    keep_chains,
    posterior_groups,
    provenance,
    warn_modes,
    with_stored_draws,
)
from .starts import chain_starts, jittered
from .stopping import MAX_DRAWS, check_replay

__all__ = ["posterior_summary", "sample_posterior"]

_SAMPLE_DIMS = ("chain", "draw")


def sample_posterior(
    V: Any,
    n_components: int,
    *,
    priors: GammaPriors = DEFAULT_PRIORS,
    method: Literal["nuts", "vi"] = "nuts",
    draws: int | None = None,
    tune: int = 1000,
    chains: int = 4,
    target_rhat: float = 1.01,
    target_ess: float = 400,
    max_draws: int = MAX_DRAWS,
    max_time: float | None = None,
    resume: xr.DataTree | None = None,
    cores: int | None = None,
    random_seed: Any = None,
    sampler: Literal["nutpie", "pymc"] = "nutpie",
    precision: Literal["single", "double"] = "single",
    normalize: Normalize = "W",
    init: Any = "map",
    jitter: float = 0.05,
    mask: Any = None,
    keep: Literal["all", "main"] | Sequence[int] = "all",
    pointwise_draws: int | None = 500,
    max_memory: Any = DEFAULT_MAX_MEMORY,
    map_kwargs: dict | None = None,
    nuts_kwargs: dict | None = None,
    progress: ProgressArg = None,
) -> xr.DataTree:
    """Sample the posterior of W and H, normalised and aligned to the MAP.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`.
    n_components : int
        K.
    priors : GammaPriors
        Gamma priors on W and H (flat priors give an improper posterior and are
        refused).
    method : {"nuts", "vi"}
        ``"nuts"``: exact draws (everything below). ``"vi"``: draws from a mean-field
        variational approximation (:func:`poisson_nmf.sample_vi`, which takes its own
        settings: ``restarts``, ``max_iter``, ``tol``, ``psis_draws``); it uses
        ``priors``, ``draws`` (default: 1000 or fewer, see there), ``random_seed``,
        ``normalize``, ``mask`` and ``pointwise_draws``, and refuses any argument that
        only means something for NUTS when it is set.
    draws : int or None
        ``None`` (default): draw until clean (every entry of W and H meets
        ``target_rhat`` and ``target_ess``) or until ``max_draws`` (or ``max_time``),
        checked every 500 draws per chain; the same chains go on, without a new
        warm-up (:mod:`poisson_nmf.sampling.stopping`). An int: exactly that many draws per
        chain (``target_rhat``, ``target_ess``, ``max_draws`` and ``max_time`` given
        beside it are ignored, with a ``UserWarning``).
        ``attrs["stopping"]`` says which, and why the run stopped.
    tune, chains : int
        Tuning steps per chain, and the number of chains.
    target_rhat, target_ess : float
        The stopping rule (``draws=None``): rank-normalised R-hat at most
        ``target_rhat`` and bulk and tail ESS at least ``max(target_ess, 100 x chains)``
        on every entry, as :func:`poisson_nmf.diagnose` checks them.
    max_draws : int
        Budget of draws per chain with ``draws=None`` (default 4000): reproducible, and
        what memory is planned for (nutpie keeps chains x max_draws x (F + N) K
        values of 8 bytes).
    max_time : float, optional
        Seconds of sampling after which the run stops at its next check, clean or not
        (``draws=None``). Opt-in: the draws kept then depend on the machine's speed.
    resume : xarray.DataTree, optional
        A run of ``sample_posterior`` (or :func:`poisson_nmf.load_fit`) to go on from,
        on the same ``V`` and ``n_components``: its settings (priors, tune, chains, seed,
        ...) are used, its chains continued to ``max_draws`` (or ``draws``, which must
        exceed the draws it holds). Each chain goes on from the state stored with the
        fit (its ``sampler_state`` group: the last kept point, nutpie's tuned step size
        and mass matrix, the coordinate maps) with **no warm-up**
        (:mod:`poisson_nmf.sampling.continuation`); the stored draws are kept as they
        are and the new ones follow (``attrs["sampler"]["resumed_without_warmup"]``).
        A ``sampler="pymc"`` fit is replayed from the stored seed instead: the warm-up
        and the draws held are computed again (a :class:`UserWarning` if they differ
        from the stored ones), then go on; a nutpie fit without ``sampler_state``
        (made before 2026-12-01) is refused, as is a state that is invalid or not the
        stored chains' own (a sliced or thinned fit). Needs a run seeded with an int or ``None``
        (``settings["replay_seed"]``) and started at ``init="map"`` or ``"restarts"``
        (the MAP, the draws' alignment reference, is computed again from that seed).
        ``priors``, ``tune``, ``chains``,
        ``random_seed``, ``sampler``, ``precision``, ``normalize``, ``init`` or
        ``jitter`` given unlike the stored run's raise ``ValueError`` (an argument equal
        to its default counts as not given). The stopping rule's ``target_rhat``,
        ``target_ess`` and ``max_time`` are this call's, not the stored run's: a resume
        may ask for more than the first run did.
    cores : int, optional
        Chains run at the same time (default: ``min(chains, os.cpu_count())``).
    random_seed : int, numpy.random.Generator or None
        Seeds the MAP, the jitter of the starts, the samplers (one spawned seed per
        chain) and the posterior predictive draws.
    sampler : {"nutpie", "pymc"}
        ``"nutpie"``: the Numba log density with nutpie's NUTS (default, fast);
        ``"pymc"``: ``pm.sample`` on :func:`poisson_nmf.model.build_model`.
    precision : {"single", "double"}
        Arithmetic of the dense likelihood kernel inside the sampler (nutpie only).
        ``"single"`` (default): rates, logs and their gradient in float32 (eight
        lanes per AVX2 instruction rather than four); each row's sum is in float32 and
        the total in float64.
        Against float64 the log density differs by about 1e-8 relative (1e-3 on all
        digits, whose log density is 7e5), below any Monte Carlo error: a density
        perturbed by a factor within exp(+-0.004) moves posterior expectations by
        under 1 %, and the rounding is unrelated to the quantities of interest. The
        gradient is within 1e-6 relative; NUTS stays exact for its own target with
        any gradient, so that costs nothing in correctness. Sparse counts (fill
        below a fifth) and counts above 2^24 always use float64. ``"double"``:
        float64 throughout. The pointwise groups and :func:`log_density` are float64
        either way; ``sample_stats.lp`` and ``sample_stats.log_likelihood`` (lp less
        the log prior) are the sampler's own values.
    normalize : {"W", "H"}
        ``"W"``: each column of W sums to one and H carries the scale (W is then a
        distribution over rows, H the amount of each component); ``"H"``: each row of
        H sums to one and W carries the scale.
    init : "map", "restarts" or sequence of (W, H)
        ``"map"``: every chain starts at one MAP (jittered), the best of
        ``MAP_RESTARTS`` = 4 fits from random starts (lowest objective: the highest
        posterior density found; single fits land in different local optima).
        ``"restarts"``: each chain at the MAP of its own random start, which may be a
        different local mode (to explore modes); the alignment reference is the best of
        them. A sequence of ``chains`` pairs (W (F, K), H (K, N)) gives the starts; the
        reference is then the MAP from the first.
    jitter : float
        Sd of the log-normal jitter of each start entry.
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries.
    keep : "all", "main" or sequence of int
        Chains to keep after mode detection: all (default), those in the main mode,
        or the given chain positions.
    pointwise_draws : int or None
        Draws in all for ``log_likelihood`` and ``posterior_predictive``, rounded up
        to a multiple of the chains (at most every draw; thinned evenly within chains:
        ``chains=3, pointwise_draws=20`` keeps 7 per chain, 21); ``None`` keeps all,
        ``0`` leaves them out.
    max_memory : str, int or None
        Budget for everything the run stores and computes afterwards (default "4GB";
        None: no limit), planned before sampling by :func:`poisson_nmf.memory.plan_memory`:
        past it the pointwise groups are thinned or left out with a
        :class:`~poisson_nmf.memory.MemoryBudgetWarning` giving the sizes, or, when the
        counts and the draws of W and H alone do not fit, a ``ValueError`` names the
        settings to change before anything is sampled.
    map_kwargs : dict, optional
        Passed to :func:`poisson_nmf.kl_nmf` (default ``max_iter=1000, tol=1e-6``, and
        ``n_restarts=4`` with ``init="map"``, 1 with ``init="restarts"``).
    nuts_kwargs : dict, optional
        Passed to ``nutpie.sample`` (e.g. ``adaptation="low_rank"``,
        ``target_accept``) or to ``pm.sample``.
    progress : bool, None or callable
        Progress of the sampling: iterations (tuning and draws) over all chains and
        the divergences among the kept draws, then the post-processing step. ``None``
        (default): a bar on stderr when stderr is a terminal or a Jupyter kernel's
        output (so not in logs or tests); ``True``: the bar always; ``False``:
        nothing; a callable gets each new status as one line of text. With
        ``sampler="pymc"`` a bar is PyMC's own.

    Returns
    -------
    xarray.DataTree
        ``posterior``: ``W`` (chain, draw, row, component), ``H`` (chain, draw,
        component, column), normalised and aligned; ``sample_stats``: the sampler's
        statistics (``diverging``, ``energy``, ``step_size``, ``n_steps``, ``lp``, ...)
        plus ``log_likelihood`` (total Poisson log-likelihood), ``permutation``
        (chain, draw, component: the sampled component matched to each aligned one) and
        ``scale``; ``log_likelihood`` and ``posterior_predictive``: ``V`` per observed
        entry (dims (chain, draw, row, column), or (chain, draw, entry) with a mask),
        thinned; ``observed_data``: ``V``; ``reference``: the normalised MAP ``W``,
        ``H``. ``attrs``: ``settings`` (JSON, with the seed), ``modes`` (JSON of
        :class:`ModeReport`), ``normalize``, ``sampling_time_s``, ``total_time_s``,
        ``map_objective``, ``sampler`` (JSON: the warm-up's first stage, the number of
        long directions learned, the ridge factors), ``stopping`` (JSON: ``rule``
        ``"until_clean"`` or ``"fixed"``, the thresholds, ``reason`` ``"clean"``,
        ``"max_draws"``, ``"max_time"`` or ``"fixed"``, ``draws_per_chain``,
        ``resumed_from`` and each check's slowest entry).

    Warns
    -----
    MultipleModesWarning
        When the chains sit in more than one mode (see :func:`detect_modes`).
    """
    args = dict(locals())  # the arguments alone: first thing in the function
    if method != "nuts":
        from ..vi import from_sample_posterior

        return from_sample_posterior(args)
    t_start = time.perf_counter()
    run = settle_arguments(args)
    run, mem, pw_entries = plan_run_memory(run)
    counts, K = run.counts, run.K
    with SamplingProgress(progress, run.chains, run.tune + run.draws) as bar:
        if run.sampler == "nutpie":
            bar.phase("loading the compiled sampler (compiling it on the first run)")
            load_callbacks()  # first: on a cache miss, compiled in another process (precompile)
        seeds = seed_plan(run.random_seed, run.chains)
        dens = LogDensity.build(counts, K, run.priors)
        bar.phase("MAP starting point")
        st = chain_starts(run.init, counts, K, run.priors, seeds.map, run.chains, run.map_kwargs)
        starts = jittered(st, counts, dens, run.jitter, seeds.jitter)
        t_sample = time.perf_counter()
        bar.phase("sampling")
        state: list[Any] = []
        runs, sampler_info, monitor = sample_chains(run, dens, starts, seeds.chains, st, bar,
                                                    quiet=progress is False, state=state,
                                                    resume=resume)  # fmt: skip
        sampling_time = time.perf_counter() - t_sample
        bar.phase("aligning the draws")
        aligned = align_chains(runs, dens, st.W_ref, st.H_ref, run.normalize)
        continued = bool(sampler_info.get("resumed_without_warmup"))
        if continued:
            aligned = with_stored_draws(resume, aligned)  # type: ignore[arg-type]
            sampler_info = {**json.loads(resume.attrs.get("sampler", "{}")),  # type: ignore[union-attr]
                            **sampler_info}  # fmt: skip
        run = replace(run, draws=aligned.W.shape[1])
        groups = posterior_groups(aligned, counts, st.W_ref, st.H_ref, run.normalize)
        if state:
            groups["sampler_state"] = state_group(*state)
        add_observed_data(groups, counts, pw_entries)
        if mem.pointwise_draws > 0:
            bar.phase("pointwise log-likelihood and predictive draws")
            add_pointwise_groups(groups, counts, aligned.W, aligned.H, mem.pointwise_draws,
                                 pw_entries, seeds.predictive, run.cores,
                                 mem.chunk_draws)  # fmt: skip
        tree = xr.DataTree.from_dict(groups)
        bar.phase("checking the chains' modes")
        modes = detect_modes(tree)
        warn_modes(modes)
        tree.attrs = provenance(run, mem, seeds, modes, st.objective, sampling_time,
                                sampler_info, monitor)  # fmt: skip
        tree = keep_chains(tree, run.keep, modes)
        tree.attrs["total_time_s"] = time.perf_counter() - t_start
        if resume is not None and not continued:
            check_replay(resume, tree)
        return tree


def posterior_summary(
    idata: xr.DataTree,
    *,
    var_names: Sequence[str] | None = None,
    ci_prob: float = 0.94,
    diagnostics: bool = True,
) -> pd.DataFrame:
    """Posterior mean, sd and equal-tailed credible interval of each W and H entry.

    Parameters
    ----------
    idata : xarray.DataTree
        From :func:`sample_posterior`.
    var_names : sequence of str, optional
        Variables of the posterior to summarise; default: those of W and H it has (H
        alone for the loadings of :func:`poisson_nmf.fit_loadings`).
    ci_prob : float
        Probability mass of the central interval.
    diagnostics : bool
        Add rank-normalised ``r_hat``, ``ess_bulk`` and ``ess_tail`` (arviz_stats).

    Returns
    -------
    pandas.DataFrame
        One row per entry, with columns ``variable``, the coordinates (``row``,
        ``column``, ``component``; absent ones NA), ``mean``, ``sd``,
        ``lower``, ``upper`` (and the diagnostics).
    """
    if not 0 < ci_prob < 1:
        raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
    post = idata["posterior"].to_dataset()
    if var_names is None:
        var_names = [v for v in ("W", "H") if v in post]
    # one draw (a point estimate, fit_loadings(method="map")): no sd, interval or diagnostics
    point = post.sizes["chain"] * post.sizes["draw"] == 1
    diagnostics = diagnostics and not point
    q = [(1 - ci_prob) / 2, (1 + ci_prob) / 2]
    frames = []
    for name in var_names:
        if name not in post:
            raise ValueError(f"{name!r} is not in the posterior (has {list(post.data_vars)})")
        da = post[name].astype(np.float64)  # VI's float32 draws: summaries in float64
        cols = {
            "mean": da.mean(_SAMPLE_DIMS),
            "sd": (
                da.std(_SAMPLE_DIMS, ddof=1)
                if not point
                else xr.full_like(da.isel(chain=0, draw=0, drop=True), np.nan, dtype=float)
            ),
            "lower": da.quantile(q[0], _SAMPLE_DIMS).drop_vars("quantile"),
            "upper": da.quantile(q[1], _SAMPLE_DIMS).drop_vars("quantile"),
        }
        if diagnostics:
            import arviz_stats as azs

            one = xr.Dataset({name: da})
            cols["r_hat"] = azs.rhat(one)[name]
            cols["ess_bulk"] = azs.ess(one, method="bulk")[name]
            cols["ess_tail"] = azs.ess(one, method="tail")[name]
        df = xr.Dataset(cols).to_dataframe().reset_index()
        df.insert(0, "variable", name)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    lead = ["variable", *[c for c in ("row", "component", "column") if c in out]]
    rest = [c for c in out.columns if c not in lead]
    return out[lead + rest]
