"""After the chains: aligned draws, the result tree's groups, and its provenance.

Every draw is normalised and aligned to the reference with
:func:`poisson_nmf.align.align_factors` (``normalize="W"``: columns of W sum to one,
scale in H; ``normalize="H"``: rows of H sum to one, scale in W), chain by chain
(bounded memory). The groups are built by small "add a group" functions; the settings
and attrs (provenance) in one place, :func:`provenance`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..align import Normalize, align_factors
from ..data import Counts
from ..exceptions import MultipleModesWarning, warn_user
from ..memory import MemoryPlan
from ..observed import observed_group
from .density import LogDensity
from .modes import ModeReport, select_chains
from .plan import RunArgs, Seeds, seed_repr, stopping_record
from .stopping import kwargs_record

__all__ = [
    "AlignedDraws",
    "add_observed_data",
    "align_chains",
    "keep_chains",
    "posterior_groups",
    "provenance",
    "warn_modes",
    "with_stored_draws",
]


@dataclass
class AlignedDraws:
    """Aligned draws of a run, and what the alignment and the sampler give with them.

    W (C, D, F, K), H (C, D, K, N), the matching permutation and scale (C, D, K), the
    total log-likelihood (C, D) and each chain's sample stats.
    """

    W: np.ndarray
    H: np.ndarray
    permutation: np.ndarray
    scale: np.ndarray
    loglik: np.ndarray
    stats: list[xr.Dataset]


def align_chains(
    runs: list[Any], dens: LogDensity, W_ref: np.ndarray, H_ref: np.ndarray,
    normalize: Normalize,
) -> AlignedDraws:  # fmt: skip
    """Align each chain's draws (W, H, stats) to the reference; total log-likelihood per draw.

    The log-likelihood is the sampler's log density less the log prior (with Jacobian),
    both exact, or computed afresh where the sampler has no ``lp``. ``runs`` is emptied
    chain by chain as it goes (bounded memory).
    """
    chains = len(runs)
    F, N, K = dens.F, dens.N, dens.K
    draws = runs[0][0].shape[0]
    out = AlignedDraws(
        np.empty((chains, draws, F, K)), np.empty((chains, draws, K, N)),
        np.empty((chains, draws, K), dtype=np.int64), np.empty((chains, draws, K)),
        np.empty((chains, draws)), [],
    )  # fmt: skip
    g = np.empty(dens.n_dim)
    for c in range(chains):
        W, H, st = runs[c]
        runs[c] = None
        lp_name = "logp" if "logp" in st else ("lp" if "lp" in st else None)
        if lp_name is not None:
            out.loglik[c] = np.asarray(st[lp_name].values, dtype=np.float64) - dens.log_prior(W, H)
        else:
            for d in range(draws):
                out.loglik[c, d] = dens(dens.pack(W[d], H[d]), g, with_prior=False)
        al = align_factors(W, H, W_ref, H_ref, normalize=normalize)
        out.W[c], out.H[c], out.permutation[c], out.scale[c] = al.W, al.H, al.permutation, al.scale
        del W, H, al
        out.stats.append(st)
    return out


#: sample-stats variables posterior_groups derives (not nutpie's own)
_DERIVED_STATS = ("lp", "tree_depth", "log_likelihood", "permutation", "scale", "component")


def with_stored_draws(tree: xr.DataTree, new: AlignedDraws) -> AlignedDraws:
    """Return the draws of a resumed fit ``tree`` followed by the ``new`` ones, per chain.

    The stored draws are already normalised and aligned; their log-likelihood,
    permutation and scale come from the stored sample stats, and only the sample-stats
    variables both runs have are kept.
    """
    post, ss = tree["posterior"].to_dataset(), tree["sample_stats"].to_dataset()
    W = np.concatenate([post["W"].values, new.W], axis=1)
    H = np.concatenate([post["H"].values, new.H], axis=1)
    perm = np.concatenate([ss["permutation"].values, new.permutation], axis=1)
    scale = np.concatenate([ss["scale"].values, new.scale], axis=1)
    loglik = np.concatenate([ss["log_likelihood"].values, new.loglik], axis=1)
    old = ss.drop_vars([v for v in _DERIVED_STATS if v in ss.variables])
    stats = []
    for c, st in enumerate(new.stats):
        both = [v for v in st.data_vars if v in old.data_vars and st[v].dtype != object]
        before = old[both].isel(chain=c, drop=True).drop_vars("draw", errors="ignore")
        after = st[both].drop_vars("draw", errors="ignore")
        stats.append(xr.concat([before, after], dim="draw"))
    return AlignedDraws(W, H, perm, scale, loglik, stats)


def posterior_groups(
    draws: AlignedDraws, counts: Counts, W_ref: np.ndarray, H_ref: np.ndarray,
    normalize: Normalize,
) -> dict[str, xr.Dataset]:  # fmt: skip
    """Return the ``posterior``, ``sample_stats`` and ``reference`` groups."""
    chains, n_draws, _, K = draws.W.shape
    ref = align_factors(W_ref, H_ref, W_ref, H_ref, normalize=normalize)
    coords = {"row": counts.row, "column": counts.column, "component": np.arange(K)}
    sc = {"chain": np.arange(chains), "draw": np.arange(n_draws)}
    posterior = xr.Dataset(
        {
            "W": (("chain", "draw", "row", "component"), draws.W),
            "H": (("chain", "draw", "component", "column"), draws.H),
        },
        coords={**sc, **coords},
    )
    ss = xr.concat(draws.stats, dim="chain").assign_coords(sc)
    ss = ss.drop_vars([v for v in ss.data_vars if ss[v].dtype == object])
    if "logp" in ss and "lp" not in ss:
        ss["lp"] = ss["logp"]
    if "depth" in ss and "tree_depth" not in ss:
        ss["tree_depth"] = ss["depth"]
    ss["log_likelihood"] = (("chain", "draw"), draws.loglik)
    ss["permutation"] = (("chain", "draw", "component"), draws.permutation)
    ss["scale"] = (("chain", "draw", "component"), draws.scale)
    ss = ss.assign_coords(component=np.arange(K))
    reference = xr.Dataset(
        {"W": (("row", "component"), ref.W), "H": (("component", "column"), ref.H)},
        coords=coords,
    )
    return {"posterior": posterior, "sample_stats": ss, "reference": reference}


def add_observed_data(
    groups: dict[str, xr.Dataset],
    counts: Counts,
    entries: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> None:
    """Add ``observed_data`` (:func:`poisson_nmf.observed.observed_group`).

    ``entries``: the pointwise groups' entries (rows, columns, weights) of a large sparse
    fit; ``observed_data`` then lists the same entries, in the same order.
    """
    groups["observed_data"] = observed_group(
        counts, entries=None if entries is None else (entries[0], entries[1])
    )


def warn_modes(modes: ModeReport) -> None:
    """Warn (:class:`MultipleModesWarning`, at the caller of sample_posterior) of modes."""
    if modes.n_modes > 1:
        warn_user(
            f"{modes}. Each mode is a local posterior mode of NMF; keep='main' (or "
            "select_chains) keeps one, and init='restarts' explores them",
            MultipleModesWarning,
        )


def provenance(
    run: RunArgs,
    mem: MemoryPlan,
    seeds: Seeds,
    modes: ModeReport,
    objective: float,
    sampling_time: float,
    sampler_info: dict,
    monitor: Any,
) -> dict[str, Any]:
    """Return the tree's attrs: the settings (JSON, enough to replay), modes, timings, versions."""
    from .._version import __version__

    keep = run.keep
    settings = {
        "n_components": run.K,
        "priors": {k: np.asarray(v).tolist() for k, v in asdict(run.priors).items()},
        "draws": int(run.draws),
        "tune": int(run.tune),
        "chains": int(run.chains),
        "cores": run.cores,
        "sampler": run.sampler,
        "precision": run.precision,
        "normalize": run.normalize,
        "init": run.init if isinstance(run.init, str) else "explicit",
        "jitter": run.jitter,
        "keep": keep if isinstance(keep, str) else [int(c) for c in keep],
        "pointwise_draws": run.pointwise_draws,
        "max_memory": repr(run.max_memory),
        "memory": mem.to_dict(),
        "random_seed": seed_repr(run.random_seed),
        "replay_seed": seeds.replay,
        "chain_seeds": seeds.chains,
        "map_kwargs": kwargs_record(run.map_kwargs),
        "nuts_kwargs": kwargs_record(run.nuts_kwargs),
    }
    return {
        "settings": json.dumps(settings),
        "modes": modes.to_json(),
        "normalize": run.normalize,
        "map_objective": objective,
        "sampling_time_s": sampling_time,
        "sampler": json.dumps(sampler_info),
        "stopping": stopping_record(monitor, run.draws, run.resumed_from),
        "inference_library": run.sampler,
        "poisson_nmf_version": __version__,
    }


def keep_chains(tree: xr.DataTree, keep: Any, modes: ModeReport) -> xr.DataTree:
    """Return the chains ``keep`` asks for: all, the main mode's, or the given positions."""
    if keep == "main":
        return select_chains(tree, modes.main_chains)
    if not isinstance(keep, str):
        return select_chains(tree, keep)
    return tree
