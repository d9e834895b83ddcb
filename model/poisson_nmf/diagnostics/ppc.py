r"""Posterior predictive checks: interval coverage and the chi-square discrepancy.

The rates λ = WH of a set of draws are formed in one place, :func:`draw_rates`, used
here and by the pointwise groups of :func:`poisson_nmf.sample_posterior`.

Coverage: the share of observed counts inside their central ``prob`` posterior
predictive interval (ArviZ's ``eti``), with the one-sided binomial p of that share.
Discrepancy: Pearson's :math:`X^2(y, θ) = \sum (y - λ)^2 / λ` of the data and of the
replicated data, draw by draw, and the posterior predictive p-value
:math:`\Pr(X^2(y^{rep}, θ) \ge X^2(y, θ))` (Gelman, Meng & Stern 1996). An entry whose
rate is 0 in a draw contributes exactly 0 (its observed and replicated counts are both
0: Poisson(0) is 0), never 0 / 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import binom

from ..memory import CHUNK_BYTES
from ..observed import observed_counts, observed_layout, observed_values_at

__all__ = ["draw_rates", "interval_percent", "observed_at", "ppc_summary"]


def interval_percent(prob: float) -> str:
    """Write an interval's mass as a percentage with the digits it has (0.995: "99.5%").

    Rounding to whole percents would call a 99.5 % interval "100%".
    """
    return f"{float(prob) * 100:.6g}%"


def draw_rates(
    W: np.ndarray, H: np.ndarray, entries: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Return the Poisson rates λ = WH of each draw.

    Parameters
    ----------
    W : numpy.ndarray, shape (D, F, K)
        Draws of W.
    H : numpy.ndarray, shape (D, K, N)
        Draws of H.
    entries : tuple of two int arrays, optional
        Rows and columns of the entries wanted (the ``entry`` layout of large sparse
        fits): each rate from its row of W and column of H, never a dense F x N array.

    Returns
    -------
    numpy.ndarray
        (D, F, N), or (D, n_entries) with ``entries``.
    """
    if entries is None:
        return np.matmul(W, H)
    r, c = entries
    return np.einsum("dek,dke->de", W[:, r, :], H[:, :, c])


def observed_at(idata: xr.DataTree, like: xr.DataArray) -> xr.DataArray:
    """Observed counts laid out like a pointwise group: (row, column) or (entry).

    Either layout of ``observed_data`` (:mod:`poisson_nmf.observed`): an ``entry``
    group reads the counts at its own entries, zeros included.
    """
    if "entry" in like.dims:
        vals: np.ndarray = observed_values_at(idata, like["row"].values, like["column"].values)
        if not np.isnan(vals).any():  # counts stay integers (ArviZ's discrete plots need it)
            vals = vals.astype(np.int64)
        coords = {"row": ("entry", like["row"].values), "column": ("entry", like["column"].values)}
        return xr.DataArray(vals, dims=("entry",), coords=coords, name="V")
    obs = idata["observed_data"].to_dataset()
    if observed_layout(obs) == "grid":
        return obs["V"]
    return observed_counts(idata).to_dataarray()


def _coverage(pp: xr.DataArray, yv: np.ndarray, obs_dims: tuple[str, ...], prob: float):
    """Whether each observed count is inside its central ``prob`` predictive interval."""
    import arviz_stats as azs

    # intervals in chunks along the first entry dim, each within CHUNK_BYTES (ArviZ's
    # quantiles sort a float64 copy): never a float64 copy of the whole group
    S = pp.sizes["chain"] * pp.sizes["draw"]
    per = int(np.prod([pp.sizes[d] for d in obs_dims[1:]], dtype=np.int64))
    step = max(1, CHUNK_BYTES // max(1, 3 * 8 * S * per))
    covered = np.empty(yv.shape, dtype=bool)
    for a in range(0, pp.sizes[obs_dims[0]], step):
        bounds = azs.eti(pp.isel({obs_dims[0]: slice(a, a + step)}), prob=prob)
        lo = bounds.sel(ci_bound="lower").transpose(*obs_dims).values
        hi = bounds.sel(ci_bound="upper").transpose(*obs_dims).values
        covered[a : a + step] = (yv[a : a + step] >= lo) & (yv[a : a + step] <= hi)
    return covered


def _discrepancies(
    idata: xr.DataTree, pp: xr.DataArray, y_flat: np.ndarray, w: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Chi-square of the data and of the replicated data, one value per predictive draw."""
    post = idata["posterior"].to_dataset()
    draws = pp["draw"].values
    entries = None
    if "entry" in pp.dims:
        entries = (
            pd.Index(post["row"].values).get_indexer(pp["row"].values),
            pd.Index(post["column"].values).get_indexer(pp["column"].values),
        )
    # rates of a few draws at a time (a dense F x N each), within CHUNK_BYTES
    F, N = post.sizes["row"], post.sizes["column"]
    chunk = max(1, min(32, CHUNK_BYTES // max(1, 4 * 8 * F * N)))
    real, rep = [], []
    for c in range(pp.sizes["chain"]):
        Wc = post["W"].isel(chain=c).transpose("draw", "row", "component")
        Hc = post["H"].isel(chain=c).transpose("draw", "component", "column")
        for s in range(0, draws.size, chunk):
            d = draws[s : s + chunk]
            lam = draw_rates(Wc.sel(draw=d).values, Hc.sel(draw=d).values, entries)
            lam = lam.reshape(len(d), -1)
            yrep = pp.isel(chain=c).sel(draw=d).values.reshape(len(d), -1).astype(np.float64)
            # a rate of exactly 0 has y = y_rep = 0 (Poisson(0) is 0): its term is 0
            pos = lam > 0
            safe = np.where(pos, lam, 1.0)
            tr = np.where(pos, (y_flat - lam) ** 2 / safe, 0.0)
            tp = np.where(pos, (yrep - lam) ** 2 / safe, 0.0)
            real.append(np.sum(tr if w is None else tr * w, axis=1))
            rep.append(np.sum(tp if w is None else tp * w, axis=1))
    return np.concatenate(real), np.concatenate(rep)


def ppc_summary(idata: xr.DataTree, prob: float) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Coverage and discrepancy of the posterior predictive group against the data.

    Parameters
    ----------
    idata : xarray.DataTree
        With ``posterior`` (W, H), ``posterior_predictive`` V (chain, draw, row, column)
        or (chain, draw, entry) with a ``weight`` coordinate, and ``observed_data``.
    prob : float
        Mass of the central predictive intervals.

    Returns
    -------
    info : dict
        ``prob``, ``coverage`` (weighted share), ``coverage_p`` (one-sided binomial p),
        ``ppp`` (NaN when some draw's discrepancy is not finite), ``n_undefined_draws``,
        ``realised_mean``, ``replicated_mean``, ``n_draws``, ``n_entries`` (observed
        counts stood for), ``n_pointwise_entries``, ``weighted``.
    discrepancy : pandas.DataFrame
        ``realised`` and ``replicated`` chi-square, one row per predictive draw.
    covered : pandas.DataFrame
        ``observed`` count and ``covered`` (bool), one row per pointwise entry.
    """
    pp = idata["posterior_predictive"]["V"]
    obs_dims = tuple(str(d) for d in pp.dims if d not in ("chain", "draw"))
    pp = pp.transpose("chain", "draw", *obs_dims)
    yv = observed_at(idata, pp).transpose(*obs_dims).values.astype(np.float64)
    # large sparse fits: every non-zero and a weighted subsample of the zeros (entry dim)
    w = np.asarray(pp["weight"].values, dtype=np.float64) if "weight" in pp.coords else None
    covered = _coverage(pp, yv, obs_dims, prob)
    t_real, t_rep = _discrepancies(idata, pp, yv.ravel(), w)
    fin = np.isfinite(t_real) & np.isfinite(t_rep)
    ppp = float(np.mean(t_rep >= t_real)) if fin.all() else float("nan")
    cov_share = float(covered.mean()) if w is None else float(np.sum(w * covered.ravel()) / w.sum())
    # one-sided: P(X <= covered count) for X ~ Binomial(n, prob), n the entries checked
    # (with a zero subsample, those entries, not the more numerous ones they stand for)
    n_chk = int(covered.size)
    cov_p = float(binom.cdf(int(round(cov_share * n_chk)), n_chk, prob)) if n_chk else 1.0
    info = {
        "prob": prob,
        "coverage": cov_share,
        "ppp": ppp,
        "coverage_p": cov_p,
        "n_undefined_draws": int(np.sum(~fin)),
        "discrepancy": "Pearson chi-square sum (y - WH)^2 / WH",
        "realised_mean": float(t_real.mean()),
        "replicated_mean": float(t_rep.mean()),
        "n_draws": int(t_real.size),
        "n_entries": int(covered.size) if w is None else int(round(w.sum())),
        "n_pointwise_entries": n_chk,
        "weighted": w is not None,
    }
    disc = pd.DataFrame({"realised": t_real, "replicated": t_rep})
    cov = pd.DataFrame({"observed": yv.ravel(), "covered": covered.ravel()})
    return info, disc, cov
