"""Convergence of the draws of W and H: per-entry R-hat and ESS, undefined values classified.

One definition, used by :func:`poisson_nmf.diagnose` and by the stopping rule of
:func:`poisson_nmf.sample_posterior`, so that a run that stops clean passes diagnose's
sampling checks.

Every estimator is ArviZ's: rank-normalised split R-hat, bulk and tail ESS and the MCSE
of the mean (Vehtari et al. 2021), computed for all entries at once by
:mod:`poisson_nmf.ess_rhat` (the same numbers as ``arviz_stats``, which takes one entry
at a time and is too slow to check every entry as the sampler goes). Those are undefined (NaN, or
infinite) for an entry whose draws are all equal: a column of a normalised W with one
row is 1 in every draw, for instance. Such entries are **constant by construction**:
they are reported as such and left out of the comparisons with a threshold. An entry
whose value is undefined although its draws vary (non-finite draws, for instance) is
**undefined**, which counts as a failure: it is never left to a comparison that NaN
happens to fail.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "ConvergenceSummary",
    "constant_entries",
    "constant_mask",
    "entry_table",
    "flat_draws",
    "summarize_convergence",
]

# relative spread below which an entry's draws count as one value: float32 draws of a
# normalised column with one row are 1 to within a few ulp (1.2e-7 each)
_CONSTANT_RTOL = 1e-6
_VARS = ("W", "H")


def constant_entries(
    da: xr.DataArray, sample_dims: tuple[str, ...] = ("chain", "draw")
) -> xr.DataArray:
    """Whether each entry's draws are all one value (to within ``1e-6`` relative).

    Parameters
    ----------
    da : xarray.DataArray
        Draws with ``sample_dims``.
    sample_dims : tuple of str

    Returns
    -------
    xarray.DataArray of bool
        ``da`` without ``sample_dims``.
    """
    hi = da.max(sample_dims)
    lo = da.min(sample_dims)
    scale = np.maximum(abs(hi), abs(lo))
    return (hi - lo) <= _CONSTANT_RTOL * scale


def constant_mask(x: np.ndarray) -> np.ndarray:
    """:func:`constant_entries` of an array of shape (chains, draws, n_entries).

    Returns
    -------
    numpy.ndarray of bool, shape (n_entries,)
    """
    hi = x.max(axis=(0, 1))
    lo = x.min(axis=(0, 1))
    return np.asarray((hi - lo) <= _CONSTANT_RTOL * np.maximum(abs(hi), abs(lo)))


def flat_draws(post: xr.Dataset, var_names: tuple[str, ...] = _VARS) -> np.ndarray:
    """Return the draws of ``var_names`` side by side: shape (chains, draws, n_entries).

    Entries are in the order of :func:`entry_table`'s rows (each variable's entries in
    C order of its non-sample dims, variables in turn).
    """
    parts = []
    for name in var_names:
        da = post[name].transpose("chain", "draw", ...)
        parts.append(da.values.reshape(da.sizes["chain"], da.sizes["draw"], -1))
    return np.concatenate(parts, axis=2)


def entry_table(
    post: xr.Dataset,
    var_names: tuple[str, ...] = _VARS,
    *,
    intervals: bool = True,
    diagnostics: bool = True,
) -> pd.DataFrame:
    """One row per entry of ``var_names``: summaries and convergence diagnostics.

    Parameters
    ----------
    post : xarray.Dataset
        A posterior group: W (chain, draw, row, component), H (chain, draw, component,
        column).
    var_names : tuple of str
    intervals : bool
        Include the posterior mean, sd and 90% equal-tailed interval (the stopping rule
        of :func:`poisson_nmf.sample_posterior` needs only the diagnostics).
    diagnostics : bool
        Compute ESS, R-hat and MCSE; ``False`` leaves them NaN (independent draws from
        a variational approximation, where they mean nothing).

    Returns
    -------
    pandas.DataFrame
        ``variable``, ``row``, ``component``, ``column`` (absent ones None), then
        ``mean``, ``sd``, ``eti90_lb``, ``eti90_ub`` (with ``intervals``), ``ess_bulk``,
        ``ess_tail``, ``r_hat``, ``mcse_mean`` and ``constant`` (the entry's draws are
        one value: its diagnostics are undefined by construction).
    """
    ds = post[list(var_names)]
    cols: dict[str, xr.Dataset] = {}
    if intervals:
        import arviz_stats as azs

        eti = azs.eti(ds, prob=0.9)
        cols |= {
            "mean": ds.mean(("chain", "draw")),
            "sd": ds.std(("chain", "draw"), ddof=1),
            "eti90_lb": eti.sel(ci_bound="lower", drop=True),
            "eti90_ub": eti.sel(ci_bound="upper", drop=True),
        }
    # constant or non-finite entries make ArviZ divide 0 by 0; they are classified below
    # (the ``constant`` column, summarize_convergence), not left to a warning
    if not diagnostics:
        nan = xr.full_like(ds.isel(chain=0, draw=0, drop=True), np.nan, dtype=np.float64)
        cols |= {k: nan for k in ("ess_bulk", "ess_tail", "r_hat", "mcse_mean")}
        cols["constant"] = xr.full_like(nan, False, dtype=bool)
    if diagnostics:
        cols |= _diagnostics(ds, var_names)
    frames = []
    for name in var_names:
        df = xr.Dataset({k: v[name] for k, v in cols.items()}).to_dataframe().reset_index()
        for c in ("row", "component", "column"):
            if c in df:  # keep the coordinate labels as they are (no float upcast on concat)
                df[c] = df[c].astype(object)
        df.insert(0, "variable", name)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    lead = ["variable", "row", "component", "column"]
    for c in lead:
        if c not in out:
            out[c] = None
    out[lead] = out[lead].astype(object).where(out[lead].notna(), None)
    out["constant"] = out["constant"].astype(bool)
    return out[lead + [c for c in out.columns if c not in lead]]


def _diagnostics(ds: xr.Dataset, var_names: tuple[str, ...]) -> dict[str, xr.Dataset]:
    """ESS, R-hat, MCSE and constancy of every entry, as Datasets shaped like ``ds``."""
    from .ess_rhat import rank_diagnostics

    x = flat_draws(ds, var_names)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = rank_diagnostics(x)
    flat = {
        "ess_bulk": d.ess_bulk,
        "ess_tail": d.ess_tail,
        "r_hat": d.r_hat,
        "mcse_mean": d.mcse_mean,
        "constant": constant_mask(x),
    }
    out: dict[str, dict[str, xr.DataArray]] = {k: {} for k in flat}
    start = 0
    for name in var_names:
        tmpl = ds[name].isel(chain=0, draw=0, drop=True)
        stop = start + tmpl.size
        for k, v in flat.items():
            out[k][name] = tmpl.copy(data=v[start:stop].reshape(tmpl.shape))
        start = stop
    return {k: xr.Dataset(v) for k, v in out.items()}


@dataclass(frozen=True)
class ConvergenceSummary:
    """The slowest entries against the thresholds.

    Attributes
    ----------
    n_entries : int
        Entries of W and H.
    n_constant : int
        Entries constant by construction (left out of every comparison).
    n_undefined : int
        Entries whose R-hat or ESS is not finite although their draws vary (failures).
    n_chains : int
    r_hat_max, ess_min : float
        The thresholds: R-hat at most ``r_hat_max``; bulk and tail ESS at least ``ess_min``.
    worst_r_hat, min_ess_bulk, min_ess_tail : float
        Over the defined entries (NaN when there is none, or with one chain for R-hat).
    n_r_hat_above, n_ess_bulk_below, n_ess_tail_below : int
        Defined entries that miss each threshold.
    """

    n_entries: int
    n_constant: int
    n_undefined: int
    n_chains: int
    r_hat_max: float
    ess_min: float
    worst_r_hat: float
    min_ess_bulk: float
    min_ess_tail: float
    n_r_hat_above: int
    n_ess_bulk_below: int
    n_ess_tail_below: int

    @property
    def r_hat_ok(self) -> bool:
        """R-hat is defined (two or more chains) and within its threshold everywhere."""
        return self.n_chains > 1 and self.n_r_hat_above == 0 and self.n_undefined == 0

    @property
    def ess_ok(self) -> bool:
        """Bulk and tail ESS within their threshold everywhere."""
        return self.n_ess_bulk_below == 0 and self.n_ess_tail_below == 0 and self.n_undefined == 0

    @property
    def clean(self) -> bool:
        """Both R-hat and ESS meet their thresholds."""
        return self.r_hat_ok and self.ess_ok


def summarize_convergence(
    entries: pd.DataFrame, n_chains: int, *, r_hat_max: float, ess_min: float
) -> ConvergenceSummary:
    """Compare the per-entry table with the thresholds, undefined values classified.

    Parameters
    ----------
    entries : pandas.DataFrame
        Columns ``r_hat``, ``ess_bulk``, ``ess_tail`` and ``constant`` (bool), one row per
        entry (as :func:`poisson_nmf.diagnose` builds it).
    n_chains : int
    r_hat_max : float
        Largest R-hat allowed.
    ess_min : float
        Smallest bulk and tail ESS allowed (in draws over all chains).

    Returns
    -------
    ConvergenceSummary
    """
    const = entries["constant"].to_numpy(dtype=bool)
    live = ~const
    rhat = entries["r_hat"].to_numpy(dtype=float)[live]
    bulk = entries["ess_bulk"].to_numpy(dtype=float)[live]
    tail = entries["ess_tail"].to_numpy(dtype=float)[live]
    ess_def = np.isfinite(bulk) & np.isfinite(tail)
    rhat_def = np.isfinite(rhat) if n_chains > 1 else np.ones_like(rhat, dtype=bool)
    undefined = ~(ess_def & rhat_def)

    def _ext(x: np.ndarray, f: str) -> float:
        x = x[np.isfinite(x)]
        return float(getattr(np, f)(x)) if x.size else float("nan")

    return ConvergenceSummary(
        n_entries=int(len(entries)),
        n_constant=int(const.sum()),
        n_undefined=int(undefined.sum()),
        n_chains=int(n_chains),
        r_hat_max=float(r_hat_max),
        ess_min=float(ess_min),
        worst_r_hat=_ext(rhat, "max") if n_chains > 1 else float("nan"),
        min_ess_bulk=_ext(bulk, "min"),
        min_ess_tail=_ext(tail, "min"),
        n_r_hat_above=int(np.sum(np.isfinite(rhat) & (rhat > r_hat_max))) if n_chains > 1 else 0,
        n_ess_bulk_below=int(np.sum(np.isfinite(bulk) & (bulk < ess_min))),
        n_ess_tail_below=int(np.sum(np.isfinite(tail) & (tail < ess_min))),
    )
