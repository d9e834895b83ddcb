"""Which posterior mode each chain sits in: :func:`detect_modes`, :func:`select_chains`.

Chains are compared by their mean log-likelihood and their aligned factor means; chains
in different modes are reported (a :class:`~poisson_nmf.exceptions.MultipleModesWarning`
and ``attrs["modes"]``) and kept unless ``keep="main"``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr

__all__ = ["ModeReport", "detect_modes", "select_chains"]


@dataclass(frozen=True)
class ModeReport:
    """Which chains sit in which posterior mode.

    Attributes
    ----------
    labels : list of int, length chains
        Mode of each chain; modes are numbered by first appearance, after sorting them
        so that mode 0 is the main one (most chains; ties broken by mean log-likelihood).
    n_modes : int
        Number of distinct modes.
    main_chains : list of int
        Chains in the main mode.
    loglik_mean : list of float
        Mean Poisson log-likelihood of each chain.
    loglik_z : list of list of float
        Pairwise difference of chain means of the log-likelihood, in units of the pooled
        within-chain sd.
    factor_z : list of list of float
        Pairwise distance of the chains' aligned factors: the ``quantile`` (default 0.95)
        over W and H entries of ``|mean_c - mean_d| / sqrt((var_c + var_d) / 2)``.
    thresholds : dict
        ``loglik_z`` and ``factor_z`` above which two chains are in different modes.
    """

    labels: list[int]
    n_modes: int
    main_chains: list[int]
    loglik_mean: list[float]
    loglik_z: list[list[float]]
    factor_z: list[list[float]]
    thresholds: dict

    def __str__(self) -> str:
        if self.n_modes == 1:
            return f"all {len(self.labels)} chains in one mode"
        groups = {m: [c for c, lab in enumerate(self.labels) if lab == m] for m in
                  range(self.n_modes)}  # fmt: skip
        parts = [
            f"mode {m}: chains {g} (mean log-likelihood "
            f"{np.mean([self.loglik_mean[c] for c in g]):.1f})"
            for m, g in groups.items()
        ]
        return f"chains sit in {self.n_modes} modes: " + "; ".join(parts)

    def to_json(self) -> str:
        """Return the report as a JSON string (for ``DataTree.attrs``)."""
        return json.dumps(asdict(self))


def _pairwise_z(mean: np.ndarray, var: np.ndarray, quantile: float) -> np.ndarray:
    C = mean.shape[0]
    out = np.zeros((C, C))
    for c in range(C):
        for d in range(c + 1, C):
            sd = np.sqrt((var[c] + var[d]) / 2.0)
            z = np.abs(mean[c] - mean[d]) / np.where(sd > 0, sd, np.inf)
            out[c, d] = out[d, c] = float(np.quantile(z, quantile))
    return out


def detect_modes(
    idata: xr.DataTree,
    *,
    loglik_threshold: float = 2.0,
    factor_threshold: float = 2.0,
    quantile: float = 0.95,
) -> ModeReport:
    """Group chains by the posterior mode they sit in.

    Two chains are in the same mode when their mean log-likelihoods differ by at most
    ``loglik_threshold`` pooled within-chain sds, and the ``quantile`` of their
    standardised aligned factor-mean differences is at most ``factor_threshold``.
    Chains join the first mode whose first chain they match.

    Parameters
    ----------
    idata : xarray.DataTree
        From :func:`sample_posterior` (``posterior`` W, H aligned; ``sample_stats``
        ``log_likelihood``).
    loglik_threshold, factor_threshold : float
        Thresholds, see above.
    quantile : float
        Quantile over entries of the factor distance (a whole component that differs
        moves far more than 5% of the entries when K <= 20).

    Returns
    -------
    ModeReport
    """
    post = idata["posterior"]
    ll = np.asarray(idata["sample_stats"]["log_likelihood"].values, dtype=np.float64)
    C = ll.shape[0]
    # plain NumPy over the draw axis (xarray's default skipna copies every draw first)
    draws = [post[v].transpose("chain", "draw", ...).values for v in ("W", "H")]
    means = [d.mean(axis=1).reshape(C, -1) for d in draws]
    varis = [d.var(axis=1).reshape(C, -1) for d in draws]
    fz = _pairwise_z(np.concatenate(means, 1), np.concatenate(varis, 1), quantile)
    ll_mean = ll.mean(axis=1)
    pooled = float(np.sqrt(ll.var(axis=1).mean()))
    lz = np.abs(ll_mean[:, None] - ll_mean[None, :]) / (pooled if pooled > 0 else np.inf)
    reps: list[int] = []
    raw = np.empty(C, dtype=int)
    for c in range(C):
        for m, r in enumerate(reps):
            if lz[c, r] <= loglik_threshold and fz[c, r] <= factor_threshold:
                raw[c] = m
                break
        else:
            raw[c] = len(reps)
            reps.append(c)
    n = len(reps)
    size = np.bincount(raw, minlength=n)
    mode_ll = np.array([ll_mean[raw == m].mean() for m in range(n)])
    order = sorted(range(n), key=lambda m: (-size[m], -mode_ll[m]))
    relabel = {m: i for i, m in enumerate(order)}
    labels = [relabel[int(m)] for m in raw]
    return ModeReport(
        labels=labels,
        n_modes=n,
        main_chains=[c for c in range(C) if labels[c] == 0],
        loglik_mean=[float(v) for v in ll_mean],
        loglik_z=lz.round(4).tolist(),
        factor_z=fz.round(4).tolist(),
        thresholds={
            "loglik_z": loglik_threshold,
            "factor_z": factor_threshold,
            "quantile": quantile,
        },  # fmt: skip
    )


def select_chains(idata: xr.DataTree, chains: Sequence[int]) -> xr.DataTree:
    """Keep only some chains in every group that has a ``chain`` dim.

    Parameters
    ----------
    idata : xarray.DataTree
    chains : sequence of int
        Positions of the chains to keep (e.g. ``ModeReport.main_chains``); they are
        renumbered 0, 1, ...

    Returns
    -------
    xarray.DataTree
        A new tree; ``attrs["kept_chains"]`` records the original chain numbers.
    """
    chains = [int(c) for c in chains]
    if not chains:
        raise ValueError("chains must name at least one chain to keep")
    if len(set(chains)) != len(chains):
        raise ValueError(f"chains must not repeat a chain, got {chains}")
    groups = {}
    for name, node in idata.children.items():
        ds = node.to_dataset()
        if "chain" in ds.dims:
            ds = ds.isel(chain=chains).assign_coords(chain=np.arange(len(chains)))
        groups[name] = ds
    out = xr.DataTree.from_dict(groups)
    out.attrs = {**idata.attrs, "kept_chains": json.dumps(chains)}
    return out
