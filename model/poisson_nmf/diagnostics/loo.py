"""PSIS-LOO of a fit: elpd_loo, p_loo and the Pareto k of each observed entry.

ArviZ's ``loo`` (Vehtari, Gelman & Gabry 2017; Pareto k thresholds of Vehtari et al.
2024), or past ``max_points`` entries ``loo_subsample``, the difference estimator of
Magnusson et al. (2019) on a fixed random subsample: ArviZ's PSIS loops over the
entries in Python. Entries whose log-likelihood is one value over the draws have exact
LOO weights (their k is not an estimate) and are left out of the Pareto k counts.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import xarray as xr

from ..memory import CHUNK_BYTES

__all__ = ["PSIS_MIN_DRAWS", "constant_loglik", "loo_summary"]

LOO_SEED = 315  # fixed: the LOO subsample, and so the report, is reproducible
# ArviZ's PSIS fits the largest min(S / 5, 3 sqrt(S / r_eff)) weights and needs 5 of them
PSIS_MIN_DRAWS = 25
_K_BINS = (("(-inf, 0.5]", 0.5), ("(0.5, 0.7]", 0.7), ("(0.7, 1]", 1.0), ("(1, inf)", np.inf))


def constant_loglik(idata: xr.DataTree) -> np.ndarray:
    """Whether each pointwise log-likelihood entry is one value over all draws (flat)."""
    ll = idata["log_likelihood"].to_dataset()["V"]
    hi = ll.max(("chain", "draw"), skipna=False).values.ravel()
    lo = ll.min(("chain", "draw"), skipna=False).values.ravel()
    return np.asarray((hi - lo) <= 1e-6 * np.maximum(np.abs(hi), 1.0))


def _weighted_loo(idata: xr.DataTree, elpd: Any) -> dict:
    """elpd_loo, its se and p_loo over all observed entries from weighted pointwise ones.

    Large sparse fits keep every non-zero (weight 1) and a random subsample of the zeros
    (weight n_zero / m) (the pointwise groups of :func:`poisson_nmf.sample_posterior`).
    With S the entries that have an elpd_i (all of them, or ArviZ's simple random
    subsample of s of the n entries), elpd = (n / s) sum_S w_i elpd_i (Horvitz-Thompson);
    its se combines the usual LOO se over the N_tot represented entries,
    sqrt(N_tot var_w(elpd_i)), with the subsampling se n sqrt((1 - s / n) var(w_i elpd_i)
    / s); lpd = sum w_i lpd_i is exact over the entries, and p_loo = lpd - elpd.
    """
    from scipy.special import logsumexp

    ll = idata["log_likelihood"].to_dataset()["V"]
    w = np.asarray(ll["weight"].values, dtype=np.float64)
    n = w.size
    ei = np.asarray(elpd.elpd_i.values, dtype=np.float64).ravel()
    fin = np.isfinite(ei)
    s = int(fin.sum())
    wf, ef = w[fin], ei[fin]
    total = n / s * float(np.sum(wf * ef))
    n_tot = float(w.sum())
    mean_w = float(np.sum(wf * ef) / np.sum(wf))
    var_w = float(np.sum(wf * (ef - mean_w) ** 2) / np.sum(wf))
    se_sub = n * math.sqrt(max(0.0, 1 - s / n) * np.var(wf * ef, ddof=1) / s) if s > 1 else 0.0
    se = math.sqrt(n_tot * var_w + se_sub**2)
    S = ll.sizes["chain"] * ll.sizes["draw"]
    lpd_i = np.empty(n)
    step = max(1, CHUNK_BYTES // (8 * S))
    for a in range(0, n, step):  # bounded chunks over entries
        part = np.asarray(ll.isel(entry=slice(a, a + step)).values, dtype=np.float64)
        lpd_i[a : a + step] = logsumexp(part.reshape(S, -1), axis=0) - math.log(S)
    return {
        "elpd": total,
        "se": se,
        "p": float(np.sum(w * lpd_i)) - total,
        "n_data_points": int(round(n_tot)),
        "weighted": True,
        "n_pointwise_entries": int(n),
    }


def _loo(idata: xr.DataTree, max_points: int) -> Any:
    import arviz_stats as azs

    ll = idata["log_likelihood"].to_dataset()
    post = idata["posterior"].to_dataset()[["W", "H"]].sel(draw=ll["draw"].values)
    tree = xr.DataTree.from_dict({"posterior": post, "log_likelihood": ll})
    n_obs = int(np.prod([n for d, n in ll["V"].sizes.items() if d not in ("chain", "draw")]))
    with warnings.catch_warnings():
        # ArviZ warns about large Pareto k; here they are a reported check
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        if n_obs <= max_points:
            return azs.loo(tree, pointwise=True, var_name="V")
        return azs.loo_subsample(
            tree, observations=max_points, pointwise=True, var_name="V", seed=LOO_SEED
        )


def loo_summary(idata: xr.DataTree, max_points: int) -> tuple[dict, Any, np.ndarray, int]:
    """PSIS-LOO of the pointwise ``log_likelihood`` group.

    Parameters
    ----------
    idata : xarray.DataTree
        With ``posterior`` (W, H) and ``log_likelihood`` V (at least
        :data:`PSIS_MIN_DRAWS` draws in all).
    max_points : int
        Past this many observed entries, a fixed random subsample of this many.

    Returns
    -------
    info : dict
        ``elpd``, ``se``, ``p``, ``n_samples``, ``n_data_points``, ``good_k``,
        ``subsampled``, ``n_k``, ``k_counts``, ``n_parameters`` ((F + N) K) and
        ``n_constant`` (and the weighted estimates of a large sparse fit).
    elpd : arviz_stats ELPDData
        With ``pareto_k`` per entry.
    k : numpy.ndarray
        The defined Pareto k, constant log-likelihood entries left out.
    n_undefined : int
        Entries that should have a k and have none. Entries outside a subsample have
        no k by design, which is not undefined.
    """
    elpd = _loo(idata, max_points)
    kv = np.asarray(elpd.pareto_k.values, dtype=float).ravel()
    const_ll = constant_loglik(idata)
    n_const = int(np.sum(const_ll & np.isfinite(kv)))
    subsampled = kv.size > max_points
    n_undef = 0 if subsampled else int(np.sum(~np.isfinite(kv) & ~const_ll))
    kv = kv[np.isfinite(kv) & ~const_ll]
    counts = np.histogram(kv, bins=[-np.inf] + [b for _, b in _K_BINS])[0]
    post = idata["posterior"]
    n_par = (post.sizes["row"] + post.sizes["column"]) * post.sizes["component"]
    info: dict[str, Any] = {
        "elpd": float(elpd.elpd),
        "se": float(elpd.se),
        "p": float(elpd.p),
        "n_samples": int(elpd.n_samples),
        "n_data_points": int(elpd.n_data_points),
        "good_k": float(elpd.good_k),
        "subsampled": bool(subsampled),
        "n_k": int(kv.size),
        "k_counts": {name: int(n) for (name, _), n in zip(_K_BINS, counts, strict=True)},
    }
    if "weight" in idata["log_likelihood"].coords:
        info.update(_weighted_loo(idata, elpd))
    info.update(n_parameters=int(n_par), n_constant=n_const)
    return info, elpd, kv, n_undef
