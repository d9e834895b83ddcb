"""Draws of the variational engine (:mod:`poisson_nmf.vi`): from q, weighed, resampled.

Independent draws from q, its log density, Pareto-smoothed importance sampling of q
against the exact posterior (Yao, Vehtari, Simpson & Gelman 2018, "Yes, but did it
work?": k-hat, the weights' ESS, a Monte Carlo ELBO), importance resampling by the
smoothed weights (Vehtari et al. 2024, "Pareto smoothed importance sampling", JMLR 25),
the stored draws (aligned, perhaps resampled) and the pointwise groups.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy.special import gammaln

from ._typing import Normalize
from .align import align_factors
from .data import Counts
from .priors import GammaPriors
from .vi_cavi import VIFit

__all__ = [
    "CHUNK", "DEFAULT_DRAWS", "DRAW_BYTES", "KHAT_RESAMPLE", "POINTWISE_VALUES",
    "AlignedDraws", "LogWeights", "aligned_draws", "default_draws", "draw_q",
    "importance_resample", "log_q", "pointwise_groups", "predictive_entries", "psis",
]  # fmt: skip

#: default number of stored draws: at most this many, and at most this many bytes of them
DEFAULT_DRAWS = 1000
DRAW_BYTES = 256 * 2**20
#: pointwise groups: at most this many values (draws x observed entries) per group
POINTWISE_VALUES = 25_000_000
#: draws handled at a time (align_factors works in float64)
CHUNK = 64
#: resample="auto" resamples below this PSIS k-hat (Vehtari et al. 2024: above it the
#: importance weights' estimates are unreliable)
KHAT_RESAMPLE = 0.7


def default_draws(F: int, N: int, K: int) -> int:
    """Default stored draws: 1000, or fewer so that they take at most 256 MB in float32."""
    per_draw = (F + N) * K * 4  # float32
    return int(max(1, min(DEFAULT_DRAWS, DRAW_BYTES // per_draw)))


def log_q(fit: VIFit, W: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Log density of q on (log W, log H) per draw; W (n, F, K), H (n, K, N) -> (n,).

    Sum of alpha log beta - log Gamma(alpha) + alpha u - beta e^u, u = log w.
    """
    out = np.zeros(W.shape[0])
    for A, a, b in ((W, fit.alpha_w, fit.beta_w), (H, fit.alpha_h, fit.beta_h)):
        c = float(np.sum(a * np.log(b) - gammaln(a)))
        flat = A.reshape(A.shape[0], -1)
        out += c + np.log(flat) @ a.ravel() - flat @ b.ravel()
    return out


def draw_q(fit: VIFit, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """N independent draws of (W, H) from q, float64, shapes (n, F, K), (n, K, N)."""
    W = rng.gamma(fit.alpha_w, 1.0 / fit.beta_w, size=(n, *fit.alpha_w.shape))
    H = rng.gamma(fit.alpha_h, 1.0 / fit.beta_h, size=(n, *fit.alpha_h.shape))
    # a Gamma draw can underflow to 0 for tiny shapes; the log density needs > 0
    return np.maximum(W, 1e-300), np.maximum(H, 1e-300)


class LogWeights:
    """Log importance ratios log p(V, W, H) - log q(W, H) of draws from q (log scale).

    ``p`` is the exact joint density (:func:`poisson_nmf.log_density`, with the
    Jacobian of the log scale), ``q`` the Gamma factors on the same scale. Each ratio
    costs one exact log density, O(nnz K).
    """

    def __init__(self, counts: Counts, K: int, priors: GammaPriors, fit: VIFit) -> None:
        from .sampling.density import LogDensity

        self.fit = fit
        self.dens = LogDensity.build(counts, K, priors)
        self._g = np.empty(self.dens.n_dim)

    def __call__(self, W: np.ndarray, H: np.ndarray) -> np.ndarray:
        """Log ratios of draws W (n, F, K), H (n, K, N), float64 -> (n,)."""
        lq = log_q(self.fit, W, H)
        return np.array(
            [self.dens(self.dens.pack(W[d], H[d]), self._g) - lq[d] for d in range(W.shape[0])]
        )


def _smooth(log_w: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed, normalised weights (sum 1) of log ratios, and k-hat.

    k-hat is inf where the ratios are so spread that the Pareto fit fails.
    """
    from arviz_stats.base import array_stats

    # arviz_stats' psislw smooths the tail of -ary (its input is LOO's -log-likelihood)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        lw, khat = array_stats.psislw(-log_w)
    lw = np.asarray(lw, dtype=np.float64)
    if not np.isfinite(khat) and np.all(np.isfinite(log_w)):
        # the Pareto fit fails (NaN) when the log ratios spread over ~1000 nats, so that
        # one draw holds all the weight: k-hat is then beyond any threshold (inf), and
        # the raw weights are the weights
        khat, lw = np.inf, log_w
    w = np.exp(lw - lw.max())
    return w / w.sum(), float(khat)


def psis(
    counts: Counts, K: int, priors: GammaPriors, fit: VIFit, n: int, rng: np.random.Generator
) -> dict[str, Any]:
    """PSIS of q against the exact posterior (Yao et al. 2018) from n fresh draws of q.

    Returns
    -------
    dict
        ``khat``, ``n_draws``, ``ess`` (of the smoothed weights), ``elbo_mc`` (the
        mean log ratio: a Monte Carlo estimate of the ELBO of q(W) q(H)) and its
        standard error ``elbo_mc_se``.
    """
    lr = LogWeights(counts, K, priors, fit)
    log_w = np.concatenate([lr(*draw_q(fit, min(CHUNK, n - lo), rng)) for lo in range(0, n, CHUNK)])
    w, khat = _smooth(log_w)
    return {
        "khat": khat,
        "n_draws": int(n),
        "ess": float(1.0 / np.sum(w**2)),
        "elbo_mc": float(np.mean(log_w)),
        "elbo_mc_se": float(np.std(log_w, ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
    }


def importance_resample(
    log_w: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Resample n draws, with replacement, by their Pareto-smoothed importance weights.

    Sampling-importance-resampling with the PSIS-smoothed weights of the log ratios
    ``log_w`` (one per proposal draw): the resampled draws are approximately from the
    target where the k-hat of the weights is small (below 0.7); above it, not.

    Returns
    -------
    idx : numpy.ndarray of int, shape (n,)
        Sorted indices into the proposals.
    info : dict
        ``khat`` and ``ess`` of the smoothed weights, ``n_proposals``, ``n_unique``
        (distinct proposals kept).
    """
    w, khat = _smooth(np.asarray(log_w, dtype=np.float64))
    idx = np.sort(rng.choice(w.size, size=n, replace=True, p=w))
    return idx, {
        "khat": khat,
        "ess": float(1.0 / np.sum(w**2)),
        "n_proposals": int(w.size),
        "n_unique": int(np.unique(idx).size),
    }


def predictive_entries(
    counts: Counts,
    W: np.ndarray,
    H: np.ndarray,
    draw_idx: np.ndarray,
    n_entries: int,
    rng: np.random.Generator,
) -> xr.Dataset:
    """Predictive counts (int32) at a random subsample of observed entries, dim ``entry``.

    W (1, D, F, K), H (1, D, K, N); the layout of a masked fit's pointwise groups
    (``entry`` with ``row`` and ``column`` coordinates), so ``diagnose`` reads it the
    same way. WH is formed at the chosen entries only, never F x N.
    """
    F, N = counts.shape
    rng_e, rng_p = rng.spawn(2)
    flat = rng_e.choice(F * N, size=min(F * N, 2 * n_entries + 1000), replace=False)
    if counts.has_mask:
        flat = flat[~np.isin(flat, counts.missing_rows * N + counts.missing_cols)]
    flat = np.sort(flat[:n_entries])
    r, c = flat // N, flat % N
    pp = np.empty((1, draw_idx.size, flat.size), dtype=np.int32)
    for lo in range(0, draw_idx.size, 8):
        idx = draw_idx[lo : lo + 8]
        lam = np.zeros((idx.size, flat.size))
        for k in range(W.shape[-1]):
            lam += W[0, idx][:, r, k] * H[0, idx][:, k, c]
        pp[0, lo : lo + idx.size] = rng_p.poisson(lam)
    coords = {"chain": np.arange(1), "draw": draw_idx, "entry": np.arange(flat.size),
              "row": ("entry", counts.row[r]), "column": ("entry", counts.column[c])}  # fmt: skip
    return xr.Dataset({"V": (("chain", "draw", "entry"), pp)}, coords=coords)


@dataclass(frozen=True, slots=True)
class AlignedDraws:
    """The stored draws: from q, normalised and aligned, perhaps importance-resampled.

    Attributes
    ----------
    W : numpy.ndarray of float32, shape (1, draws, F, K)
    H : numpy.ndarray of float32, shape (1, draws, K, N)
    permutation : numpy.ndarray of int64, shape (1, draws, K)
        Each draw's components in the reference's order (as ``align_factors`` gives it).
    scale : numpy.ndarray of float64, shape (1, draws, K)
        The normalisation's scale per component.
    resample : dict or None
        ``importance_resample``'s info where the draws were resampled, else None.
    """

    W: np.ndarray
    H: np.ndarray
    permutation: np.ndarray
    scale: np.ndarray
    resample: dict[str, Any] | None


def aligned_draws(
    counts: Counts,
    priors: GammaPriors,
    fit: VIFit,
    draws: int,
    normalize: Normalize,
    rng: np.random.Generator,
    rng_resample: np.random.Generator | None,
) -> AlignedDraws:
    """Draws from q, normalised and aligned to q's mean, resampled if ``rng_resample``.

    Chunk by chunk of ``CHUNK`` draws (``align_factors`` works in float64), stored in
    float32. With ``rng_resample`` each draw's log importance ratio against the exact
    posterior is taken on the way, and ``draws`` draws are resampled from them
    (:func:`importance_resample`).
    """
    F, N = counts.shape
    K = fit.alpha_w.shape[1]
    W_ref, H_ref = fit.mean_w, fit.mean_h
    Wa = np.empty((1, draws, F, K), dtype=np.float32)
    Ha = np.empty((1, draws, K, N), dtype=np.float32)
    perm = np.empty((1, draws, K), dtype=np.int64)
    scale = np.empty((1, draws, K), dtype=np.float64)
    log_ratio = LogWeights(counts, K, priors, fit) if rng_resample is not None else None
    log_w = np.empty(draws)
    for lo in range(0, draws, CHUNK):
        W, H = draw_q(fit, min(CHUNK, draws - lo), rng)
        hi = lo + W.shape[0]
        if log_ratio is not None:
            log_w[lo:hi] = log_ratio(W, H)
        al = align_factors(W, H, W_ref, H_ref, normalize=normalize)
        Wa[0, lo:hi], Ha[0, lo:hi], perm[0, lo:hi], scale[0, lo:hi] = (
            al.W, al.H, al.permutation, al.scale
        )  # fmt: skip
        del W, H, al
    if rng_resample is None:
        return AlignedDraws(Wa, Ha, perm, scale, None)
    idx, info = importance_resample(log_w, draws, rng_resample)
    return AlignedDraws(Wa[:, idx], Ha[:, idx], perm[:, idx], scale[:, idx], info)


def pointwise_groups(
    counts: Counts,
    post: AlignedDraws,
    pointwise_draws: int | None,
    rng: np.random.Generator,
) -> tuple[dict[str, xr.Dataset], str | None]:
    """Build the ``log_likelihood`` and ``posterior_predictive`` groups of ``sample_vi``.

    At ``pointwise_draws`` of the stored draws (evenly spaced; None: all of them),
    every observed entry, as :func:`poisson_nmf.sample_posterior` lays them out (dims
    row, column; ``entry`` with a mask). Where draws x observed entries pass
    ``POINTWISE_VALUES``, only ``posterior_predictive`` at a random subsample of the
    observed entries (:func:`predictive_entries`).

    Returns
    -------
    groups : dict of str to xarray.Dataset
        Empty where ``pointwise_draws`` is 0.
    note : str or None
        What was left out, where the budget was passed (``attrs["vi"]["pointwise"]``).
    """
    from .sampling.pointwise import pointwise

    F, N = counts.shape
    draws = post.W.shape[1]
    n_obs = counts.n_observed
    n_pw = draws if pointwise_draws is None else min(pointwise_draws, draws)
    if n_pw * n_obs > POINTWISE_VALUES:
        # too many entries for all of them: predictive draws at a random subsample of
        # observed entries, for the predictive checks; no log_likelihood group (LOO on
        # a subsample would be the elpd of the subsample, not of V)
        draw_idx = np.unique(np.linspace(0, draws - 1, n_pw).round().astype(int))
        n_e = POINTWISE_VALUES // draw_idx.size
        pp_sub = predictive_entries(counts, post.W, post.H, draw_idx, n_e, rng)
        note = (
            f"posterior_predictive at a random subsample of {n_e} of the {n_obs} observed "
            f"entries ({draw_idx.size} draws, at most {POINTWISE_VALUES} values); "
            "no log_likelihood group (no PSIS-LOO)"
        )
        return {"posterior_predictive": pp_sub}, note
    if n_pw == 0:
        return {}, None
    draw_idx = np.unique(np.linspace(0, draws - 1, n_pw).round().astype(int))
    # the aligned draws give the same WH as the raw ones
    # _pointwise forms WH for a chunk of draws at a time: (chunk, F, N) float32
    chunk = max(1, min(32, 4_000_000 // (F * N)))
    ll_pw, pp = pointwise(counts, post.W, post.H, draw_idx, rng, 1, chunk)
    pc: dict[str, Any] = {"chain": np.arange(1), "draw": draw_idx}
    if counts.has_mask:
        r_, c_ = np.nonzero(counts.observed())
        dims: tuple[str, ...] = ("chain", "draw", "entry")
        pc = {**pc, "entry": np.arange(r_.size), "row": ("entry", counts.row[r_]),
              "column": ("entry", counts.column[c_])}  # fmt: skip
    else:
        ll_pw = ll_pw.reshape(1, draw_idx.size, F, N)
        pp = pp.reshape(1, draw_idx.size, F, N)
        dims = ("chain", "draw", "row", "column")
        pc = {**pc, "row": counts.row, "column": counts.column}
    return {
        "log_likelihood": xr.Dataset({"V": (dims, ll_pw)}, coords=pc),
        "posterior_predictive": xr.Dataset({"V": (dims, pp)}, coords=pc),
    }, None
