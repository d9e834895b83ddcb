r"""Loadings of new samples given fixed components: a MAP or exact posterior draws.

Given W (F x K, the components: a reference catalogue, or a fitted posterior) and new
counts V (F x N), the loadings H (K x N) of :math:`V \sim \mathrm{Poisson}(WH)` with
independent Gamma(a, b) priors (shape, rate) on the entries of H. Given W, the columns
of V are independent problems, each with K unknowns.

``method="map"``
    The penalised KL objective over H alone (:func:`poisson_nmf.optim.kl.fit_h`, the H half
    of :func:`poisson_nmf.kl_nmf`'s coordinate descent): convex in each column, so the
    result is the column's unique minimiser (when W has full column rank) and depends on
    that column alone. A point estimate: the returned tree holds one draw.

``method="posterior"``
    Exact draws from p(H | V, W) by Metropolis-Hastings on u = log h, column by column
    (each a K-dimensional, smooth problem; compiled with Numba). The proposal is fitted
    to each column: a multivariate t (4 degrees of freedom) centred at the mode of the
    log-space density, which is the h-space MAP with prior shape a + 1 (the Jacobian
    adds log h; :func:`poisson_nmf.optim.kl.fit_h`), with the scale of the inverse negative
    Hessian there, diag(a) + Σ_f v_f r_f r_f^T with r_fk = w_fk h_k / λ_f. Each iteration
    is an independence step from that proposal and then a random-walk step of the same
    shape (scale 2.38 / sqrt(K)); both leave p(H | V, W) invariant, so the chain is exact
    whatever the proposal's quality, which only sets the speed. ``inner`` iterations are
    made per kept draw. ``attrs["sampler"]`` names it, with the acceptance rates. The
    conjugate Gibbs sampler on latent counts (Cemgil 2009) was tried first and not kept:
    with hundreds of counts per sample the latent allocations move little per sweep
    (see ``benchmarks/README.md``). R-hat and ESS of every loading
    (:func:`poisson_nmf.diagnose`) say whether the draws suffice.

W given as a fitted posterior tree (from :func:`poisson_nmf.sample_posterior`): the
**cut posterior** p_cut(H | V) = ∫ p(H | V, W) p(W | V_train) dW. The new samples do not
update W. Draws of W are taken evenly spaced over all chains and draws of the tree (one
per kept draw of H; ``attrs["cut_posterior"]`` says how many and which); for each, the
chain of H makes ``inner`` iterations given that W, starting where it was, and keeps the
last: exact as ``inner`` grows (successive draws of W are close in distribution, so a
few suffice). The proposal is fitted at the posterior mean of W, its scale widened by
1.5. ``method="map"`` with a tree uses the posterior mean of W.

Flat priors (``priors=None``: a = 1, b = 0) are allowed for both methods: given W with
positive column sums, p(H | V, W) is proper (it decays as exp(-h Σ_f w_fk)). With
components normalised to sum to one (a catalogue of signatures, ``components_``), the
loadings are on the scale of the counts, where a Gamma(1, 1) prior shrinks them toward 0
(its rate adds 1 to the column sum 1): pass a prior on the counts' scale, or None.

Independent pieces: the columns are split into blocks of ``_BLOCK`` columns, each with
its own seed spawned from ``random_seed`` before anything runs, and the blocks run through
:func:`poisson_nmf.parallel.map_pieces` on ``executor``: the draws are equal whatever the
executor.

References
----------
- A. T. Cemgil, "Bayesian inference for nonnegative matrix factorisation models",
  Comput. Intell. Neurosci. (2009).
- P. E. Jacob, L. M. Murray, C. C. Holmes and C. P. Robert, "Better together? Statistical
  learning in models made of modules", arXiv:1708.08719 (2017) (cut posteriors).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict
from functools import partial
from typing import Any, Literal

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from .data import Counts, ZeroRowsColumnsWarning, as_counts
from .optim.kl import fit_h
from .parallel import map_pieces
from .priors import GammaPriors

__all__ = ["SAMPLER", "fit_loadings"]

SAMPLER = (
    "independence Metropolis-Hastings on log H, multivariate-t proposal at the Laplace "
    "approximation of each sample (exact: Metropolis-Hastings targets p(H | V, W))"
)
# the proposal's degrees of freedom: tails heavier than the target's in log space
_NU = 4.0
# a tree's draws of W spread the loadings beyond the Laplace approximation at mean W
_TREE_INFLATE = 1.5
_METHODS = ("map", "posterior")
# columns per independent piece: fixed, so that the draws do not depend on the executor
_BLOCK = 64
# tolerance of the MAP given W: columns are convex problems, solved to rounding
_MAP_TOL = 1e-12
_MAP_MAX_ITER = 2000


def _labels(x: Any, axis: int) -> np.ndarray | None:
    """Labels of axis 0 (rows) or 1 of a DataFrame or DataArray; None for other input."""
    if isinstance(x, pd.DataFrame):
        return np.asarray(x.index if axis == 0 else x.columns)
    if isinstance(x, xr.DataArray):
        dim = x.dims[axis]
        return np.asarray(x[dim].values) if dim in x.coords else None
    return None


def _w_draws(W: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, dict]:
    """W as draws (S, F, K), its row and component labels, and where it came from."""
    if isinstance(W, xr.DataTree):
        if "posterior" not in W.children or "W" not in W["posterior"]:
            raise ValueError(
                "W is a DataTree without a posterior W; pass a fitted tree from "
                "sample_posterior or a matrix of components (F x K)"
            )
        da = W["posterior"]["W"].transpose("chain", "draw", "row", "component")
        C, D = da.sizes["chain"], da.sizes["draw"]
        draws = np.asarray(da.values, dtype=np.float64).reshape(C * D, *da.shape[2:])
        src = {"kind": "posterior tree", "chains": int(C), "draws_per_chain": int(D)}
        return draws, np.asarray(da["row"].values), np.asarray(da["component"].values), src
    rows, comps = _labels(W, 0), _labels(W, 1)
    if sp.issparse(W):
        W = W.toarray()
    a = np.asarray(W.values if isinstance(W, pd.DataFrame | xr.DataArray) else W)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_:
        raise TypeError(
            f"W must be a numeric 2-D matrix (F x K) or a posterior DataTree, got "
            f"{type(W).__name__} with shape {getattr(a, 'shape', None)}"
        )
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)) or (a < 0).any():
        raise ValueError("W must be finite and non-negative (a catalogue of components)")
    return a[None], rows, comps, {"kind": "matrix"}


def _match_rows(
    draws: np.ndarray, w_rows: np.ndarray | None, v_rows: np.ndarray | None, F: int
) -> np.ndarray:
    """Reorder the rows of W to V_new's rows by label, or check that the counts agree."""
    if w_rows is not None and v_rows is not None:
        w_idx, v_idx = pd.Index(w_rows), pd.Index(v_rows)
        missing = v_idx.difference(w_idx)
        extra = w_idx.difference(v_idx)
        if len(missing) or len(extra) or not w_idx.is_unique or not v_idx.is_unique:
            raise ValueError(
                "the rows of W and V_new do not match by label: "
                f"{len(missing)} of V_new's rows are not in W (e.g. {list(missing[:3])}), "
                f"{len(extra)} of W's rows are not in V_new (e.g. {list(extra[:3])})"
                + ("" if w_idx.is_unique and v_idx.is_unique else "; labels repeat")
                + "; give both the same features (rename or reindex one of them)"
            )
        return np.ascontiguousarray(draws[:, w_idx.get_indexer(v_idx)])
    if draws.shape[1] != F:
        raise ValueError(
            f"W has {draws.shape[1]} rows but V_new has {F} (features x samples); give W "
            "one row per feature of V_new (or label both, and rows are matched by label)"
        )
    return draws


def _prior_ab(priors: GammaPriors | None, F: int, N: int, K: int) -> tuple[np.ndarray, ...]:
    """Return (a, b) of H's prior as (N, K) arrays; flat priors are a = 1, b = 0."""
    if priors is None:
        return np.ones((N, K)), np.zeros((N, K))
    if not isinstance(priors, GammaPriors):
        raise TypeError(f"priors must be a GammaPriors or None, got {type(priors).__name__}")
    _, _, a, b = priors.arrays(F, N, K)
    return np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)


@numba.njit(cache=True, nogil=True)
def _imh_block(
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    Ws: np.ndarray,
    widx: np.ndarray,
    inner: int,
    tune: int,
    a: np.ndarray,
    b: np.ndarray,
    m: np.ndarray,
    L: np.ndarray,
    nu: float,
    rng: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Independence Metropolis-Hastings on u = log h, one chain per column.

    Each iteration makes an independence step, a random-walk Metropolis step with the
    proposal's shape and a sweep of single-coordinate steps (:func:`_coordinate_sweep`);
    each leaves the target invariant.

    Target: log π(u) = Σ_f v_f log Σ_k w_fk e^{u_k} - Σ_k (b_k + Σ_f w_fk) e^{u_k}
    + Σ_k a_k u_k (the Gamma(a, b) posterior of h, in log space). Proposal: multivariate
    t with ``nu`` degrees of freedom, centre ``m[n]`` and scale ``L[n]`` (a Cholesky
    factor). Returns the kept draws of h (D, n_cols, K) and the acceptance rate per
    column.
    """
    n_cols, K = m.shape
    S, F = Ws.shape[0], Ws.shape[1]
    D = widx.size
    ssum = np.zeros((S, K))
    for s in range(S):
        for f in range(F):
            for k in range(K):
                ssum[s, k] += Ws[s, f, k]
    out = np.empty((D, n_cols, K))
    acc = np.zeros(n_cols)
    # random-walk scale of Roberts, Gelman & Gilks (1997) on the Laplace shape
    rw = 2.38 / np.sqrt(K)
    u = np.empty(K)
    un = np.empty(K)
    z = np.empty(K)
    for n in range(n_cols):
        lo, hi = indptr[n], indptr[n + 1]
        for k in range(K):
            u[k] = m[n, k]
        r2 = 0.0
        w_prev = -1
        lp = 0.0
        n_steps = tune + D * inner
        for t in range(n_steps):
            w = widx[0] if t < tune else widx[(t - tune) // inner]
            if w != w_prev:
                # the target changed with W: the current state's density under the new W
                lp = _imh_logp(u, Ws[w], ssum[w], a[n], b[n], indices, values, lo, hi)
                w_prev = w
            g = 2.0 * rng.standard_gamma(0.5 * nu)
            zz = 0.0
            for k in range(K):
                z[k] = rng.standard_normal()
                zz += z[k] * z[k]
            scale = np.sqrt(nu / g)
            for k in range(K):
                y = 0.0
                for j in range(k + 1):
                    y += L[n, k, j] * z[j]
                un[k] = m[n, k] + scale * y
            r2n = zz * nu / g
            lpn = _imh_logp(un, Ws[w], ssum[w], a[n], b[n], indices, values, lo, hi)
            # log q(u) = -(nu + K) / 2 log(1 + r2 / nu) + const
            log_ratio = lpn - lp + 0.5 * (nu + K) * (np.log1p(r2n / nu) - np.log1p(r2 / nu))
            if np.log(rng.random()) < log_ratio:
                for k in range(K):
                    u[k] = un[k]
                lp, r2 = lpn, r2n
                acc[n] += 1.0
            # then a random-walk step with the same shape, for what the Laplace misses
            for k in range(K):
                z[k] = rng.standard_normal()
            for k in range(K):
                y = 0.0
                for j in range(k + 1):
                    y += L[n, k, j] * z[j]
                un[k] = u[k] + rw * y
            lpn = _imh_logp(un, Ws[w], ssum[w], a[n], b[n], indices, values, lo, hi)
            if np.log(rng.random()) < lpn - lp:
                for k in range(K):
                    u[k] = un[k]
                lp = lpn
            # then one sweep of single-coordinate steps in h (what a skewed, nearly
            # unidentified small loading needs); the state is kept in log space
            lp = _coordinate_sweep(u, Ws[w], ssum[w], a[n], b[n], indices, values, lo, hi, rng)
            r2 = _t_radius(u, m[n], L[n], z)
            if t >= tune and (t - tune + 1) % inner == 0:
                d = (t - tune) // inner
                for k in range(K):
                    out[d, n, k] = np.exp(u[k])
        acc[n] /= n_steps
    return out, acc


@numba.njit(cache=True, nogil=True)
def _coordinate_sweep(
    u: np.ndarray,
    W: np.ndarray,
    ssum: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    lo: int,
    hi: int,
    rng: Any,
) -> float:
    """Metropolis-Hastings on each h_k in turn; returns log π(u) after the sweep.

    Proposal: h_k' ~ Gamma(a_k + E_k, b_k + s_k) with E_k = Σ_f v_f w_fk h_k / λ_f the
    counts that component k is expected to have produced (the conditional of the
    latent-count Gibbs sampler, averaged over the latent counts); the reverse proposal
    uses E_k at h'. Target: the h-space conditional
    Σ_f v_f log λ_f - (b_k + s_k) h_k + (a_k - 1) log h_k.
    """
    K = u.size
    n = hi - lo
    h = np.exp(u)
    lam = np.zeros(n)
    for j in range(n):
        f = indices[lo + j]
        for k in range(K):
            lam[j] += W[f, k] * h[k]
    loglam = np.log(lam)
    lam_new = np.empty(n)
    log_new = np.empty(n)
    for k in range(K):
        c = b[k] + ssum[k]
        e_old = 0.0
        for j in range(n):
            e_old += values[lo + j] * W[indices[lo + j], k] * h[k] / lam[j]
        hn = rng.standard_gamma(a[k] + e_old) / c
        if not hn > 1e-300:
            continue
        e_new = 0.0
        dll = 0.0
        for j in range(n):
            wf = W[indices[lo + j], k]
            if wf == 0.0:
                continue
            ln = lam[j] + wf * (hn - h[k])
            lam_new[j] = ln
            log_new[j] = np.log(ln)
            e_new += values[lo + j] * wf * hn / ln
            dll += values[lo + j] * (log_new[j] - loglam[j])
        # log π(h') - log π(h) + log q(h | h') - log q(h' | h), Gamma(shape, rate c)
        log_ratio = dll - c * (hn - h[k]) + (a[k] - 1.0) * (np.log(hn) - np.log(h[k]))
        log_ratio += _gamma_logpdf(h[k], a[k] + e_new, c) - _gamma_logpdf(hn, a[k] + e_old, c)
        if np.log(rng.random()) < log_ratio:
            h[k] = hn
            u[k] = np.log(hn)
            for j in range(n):
                if W[indices[lo + j], k] != 0.0:
                    lam[j] = lam_new[j]
                    loglam[j] = log_new[j]
    # the log-space target at the new state, as _imh_logp computes it
    lp = 0.0
    for k in range(K):
        lp += a[k] * u[k] - (b[k] + ssum[k]) * h[k]
    for j in range(n):
        lp += values[lo + j] * loglam[j]
    return lp


@numba.njit(cache=True, nogil=True)
def _t_radius(u: np.ndarray, m: np.ndarray, L: np.ndarray, z: np.ndarray) -> float:
    """|L^-1 (u - m)|^2 by forward substitution (z is scratch)."""
    r2 = 0.0
    for k in range(u.size):
        y = u[k] - m[k]
        for j in range(k):
            y -= L[k, j] * z[j]
        z[k] = y / L[k, k]
        r2 += z[k] * z[k]
    return r2


@numba.njit(cache=True, nogil=True)
def _gamma_logpdf(x: float, shape: float, rate: float) -> float:
    return shape * np.log(rate) - math.lgamma(shape) + (shape - 1.0) * np.log(x) - rate * x


@numba.njit(cache=True, nogil=True)
def _imh_logp(
    u: np.ndarray,
    W: np.ndarray,
    ssum: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    lo: int,
    hi: int,
) -> float:
    K = u.size
    h = np.exp(u)
    lp = 0.0
    for k in range(K):
        lp += a[k] * u[k] - (b[k] + ssum[k]) * h[k]
    for j in range(lo, hi):
        f = indices[j]
        lam = 0.0
        for k in range(K):
            lam += W[f, k] * h[k]
        lp += values[j] * np.log(lam)
    return lp


def _block_draws(
    piece: tuple[Any, ...],
    *,
    Ws: np.ndarray,
    widx: np.ndarray,
    inner: int,
    tune: int,
    chains: int,
    nu: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws (chains, D, n_cols, K) and acceptance (chains, n_cols) of one block."""
    (indptr, indices, values), a, b, m, L, seed = piece
    rngs = np.random.default_rng(seed).spawn(chains)
    out, acc = [], []
    imh: Any = _imh_block  # a numba dispatcher, untyped for mypy
    for c, rng in enumerate(rngs):
        d, r = imh(indptr, indices, values, Ws, widx[c], inner, tune, a, b, m, L, nu, rng)
        out.append(d)
        acc.append(r)
    return np.stack(out), np.stack(acc)


def _laplace(
    by_col: sp.csc_array, W: np.ndarray, a: np.ndarray, b: np.ndarray, inflate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mode and Cholesky factor of the inverse Hessian of log π(u), u = log h, per column.

    The mode of the Gamma(a, b) posterior in log space is the h-space MAP with shape
    a + 1 (the Jacobian adds log h), found by :func:`poisson_nmf.optim.kl.fit_h`; there the
    negative Hessian is diag(a) + Σ_f v_f r_f r_f^T with r_fk = w_fk h_k / λ_f.
    """
    F, N = by_col.shape
    K = W.shape[1]
    # fit_h takes a GammaPriors (rate > 0): a flat rate becomes negligible, 1e-300
    shift = GammaPriors(h_shape=(a + 1.0).T, h_rate=np.maximum(b, 1e-300).T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroRowsColumnsWarning)
        cnt = as_counts(by_col, name="V_new", allow_all_zero=True, integer=False)
    H, _, _ = fit_h(cnt, W, priors=shift, max_iter=_MAP_MAX_ITER, tol=_MAP_TOL)
    m = np.log(H.T)
    L = np.empty((N, K, K))
    for n in range(N):
        lo, hi = by_col.indptr[n], by_col.indptr[n + 1]
        rows, v = by_col.indices[lo:hi], by_col.data[lo:hi]
        R = W[rows] * H[:, n]
        R /= R.sum(axis=1, keepdims=True)
        A = np.diag(a[n]) + (R * v[:, None]).T @ R
        L[n] = np.linalg.cholesky(np.linalg.inv(A)) * inflate
    return np.ascontiguousarray(m), L


def _validate_counts(V_new: Any, method: str) -> Counts:
    with warnings.catch_warnings():
        # features absent from every new sample are normal here, not worth a warning
        warnings.simplefilter("ignore", ZeroRowsColumnsWarning)
        return as_counts(V_new, name="V_new", integer=method != "map", allow_all_zero=True)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def fit_loadings(
    V_new: Any,
    W: Any,
    *,
    priors: GammaPriors | None = GammaPriors(),  # noqa: B008 - frozen, never mutated
    method: Literal["map", "posterior"] = "map",
    draws: int = 500,
    tune: int = 200,
    chains: int = 4,
    inner: int = 2,
    random_seed: Any = None,
    executor: Any = None,
    progress: Any = None,
) -> xr.DataTree:
    """Fit the loadings H of new samples V_new given components W, with uncertainty.

    Parameters
    ----------
    V_new : array_like, DataFrame, sparse matrix or DataArray, shape (F, N_new)
        New samples as columns (features x samples), dims ``("row", "column")``. Counts
        (non-negative integers); ``method="map"`` also accepts any non-negative values.
        May be all zero.
    W : array_like, DataFrame, DataArray, shape (F, K), or xarray.DataTree
        A matrix of components (a reference catalogue): its rows are matched to
        V_new's rows by label when both have labels (DataFrame index, DataArray coords),
        else by position. Or a fitted posterior tree (posterior ``W``): the cut
        posterior over its draws (see the module docstring).
    priors : GammaPriors or None
        Gamma(shape, rate) prior on each loading (only the ``h_`` part is used; it
        broadcasts against (K, N_new)). ``None``: flat (a = 1, b = 0), proper given W.
        ``method="map"`` needs shapes >= 1.
    method : {"map", "posterior"}
        ``"map"``: the penalised KL minimiser given W (one draw). ``"posterior"``: exact
        draws by Metropolis-Hastings (``attrs["sampler"]``).
    draws, tune, chains : int
        Kept draws per chain, tuning iterations, chains (``"posterior"``).
    inner : int
        Iterations per kept draw (``"posterior"``); with a posterior tree, iterations
        given each draw of W.
    random_seed : int, numpy.random.Generator, SeedSequence or None
        Seed; blocks of columns get seeds spawned from it.
    executor : None, concurrent.futures.Executor or dask.distributed.Client
        Where the blocks of columns run (:func:`poisson_nmf.parallel.map_pieces`); the
        draws do not depend on it.
    progress : bool, None or callable
        Progress over the blocks (see :func:`poisson_nmf.parallel.map_pieces`).

    Returns
    -------
    xarray.DataTree
        ``posterior``: H (chain, draw, component, column). ``attrs``: ``method``,
        ``sampler``, ``approximate`` (False), ``point_estimate``, ``w_source`` and, for
        a tree, ``cut_posterior`` (JSON), ``priors``, the settings.

    Raises
    ------
    ValueError
        Bad counts (negative, fractional where counts are needed, NaN), rows of W and
        V_new that do not match, a W with an all-zero column or an all-zero row where
        V_new has counts, bad settings.
    TypeError
        W or priors of the wrong kind.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    draws = _check_int(draws, "draws", 1)
    tune = _check_int(tune, "tune", 0)
    chains = _check_int(chains, "chains", 1)
    inner = _check_int(inner, "inner", 1)
    counts = _validate_counts(V_new, method)
    F, N = counts.shape
    Ws, w_rows, comps, src = _w_draws(W)
    Ws = _match_rows(Ws, w_rows, _labels(V_new, 0), F)
    S, _, K = Ws.shape
    a, b = _prior_ab(priors, F, N, K)
    mean_W = Ws.mean(axis=0)
    if (mean_W.sum(axis=0) <= 0).any():
        k = int(np.flatnonzero(mean_W.sum(axis=0) <= 0)[0])
        raise ValueError(f"W's component {k} is all zero; drop it (its loading is undefined)")
    dead = mean_W.sum(axis=1) <= 0
    if dead[counts.nz_rows].any():
        f = int(counts.nz_rows[dead[counts.nz_rows]][0])
        raise ValueError(
            f"W's row {counts.row[f]!r} is all zero but V_new has counts there (zero rate, "
            "impossible under the model); drop that feature or give W positive entries"
        )
    map_priors = priors if priors is not None and np.all(a >= 1) else None
    H_map, n_iter, converged = fit_h(
        counts, mean_W, priors=map_priors, max_iter=_MAP_MAX_ITER, tol=_MAP_TOL
    )
    comp = np.arange(K) if comps is None else comps
    attrs: dict[str, Any] = {
        "method": method,
        "approximate": False,
        "point_estimate": method == "map",
        "w_source": json.dumps(src),
        "priors": "flat" if priors is None else json.dumps(_priors_dict(priors)),
        "random_seed": str(random_seed),
    }
    if method == "map":
        if priors is not None and map_priors is None:
            raise ValueError("method='map' needs prior shapes >= 1 (a mode exists only then)")
        post = H_map[None, None]
        attrs |= {
            "sampler": "penalised KL given W (poisson_nmf.optim.kl.fit_h)",
            "map_converged": bool(converged.all()),
            "map_max_sweeps": int(n_iter.max()),
        }
        if src["kind"] != "matrix":
            attrs["w_used"] = "posterior mean of W"
    else:
        if chains * draws > 1 and src["kind"] != "matrix":
            widx = np.round(np.linspace(0, S - 1, chains * draws)).astype(np.int64)
            widx = np.ascontiguousarray(widx.reshape(draws, chains).T)
            attrs["cut_posterior"] = json.dumps(
                {
                    "note": "cut posterior: the new samples do not update W",
                    "w_draws_used": int(chains * draws),
                    "w_draws_available": int(S),
                    "selection": "evenly spaced over all chains and draws of the tree "
                    "(flattened chain-major), interleaved over the chains of H",
                    "iterations_per_w_draw": inner,
                }
            )
        else:
            widx = np.zeros((chains, draws), dtype=np.int64)
        by_col = sp.csc_array((counts.nz_values, (counts.nz_rows, counts.nz_cols)), shape=(F, N))
        m, L = _laplace(by_col, mean_W, a, b, 1.0 if src["kind"] == "matrix" else _TREE_INFLATE)
        starts = list(range(0, N, _BLOCK))
        seeds = np.random.SeedSequence(_entropy(random_seed)).spawn(len(starts))
        pieces = []
        for i, lo in enumerate(starts):
            blk = by_col[:, lo : lo + _BLOCK]
            csc = (blk.indptr.astype(np.int64), blk.indices.astype(np.int64), blk.data)
            sl = slice(lo, lo + _BLOCK)
            pieces.append((csc, a[sl], b[sl], m[sl], L[sl], seeds[i]))
        fn = partial(_block_draws, Ws=Ws, widx=widx, inner=inner, tune=tune, chains=chains, nu=_NU)
        parts = map_pieces(fn, pieces, executor=executor, progress=progress, desc="loadings")
        post = np.concatenate([p[0] for p in parts], axis=2).transpose(0, 1, 3, 2)
        acc = np.concatenate([p[1] for p in parts], axis=1)
        attrs["acceptance_rate_min"] = float(acc.min())
        attrs["acceptance_rate_mean"] = float(acc.mean())
        attrs |= {"sampler": SAMPLER, "draws": draws, "tune": tune, "chains": chains}
    H = xr.DataArray(
        post,
        dims=("chain", "draw", "component", "column"),
        coords={
            "chain": np.arange(post.shape[0]),
            "draw": np.arange(post.shape[1]),
            "component": comp,
            "column": counts.column,
        },
        name="H",
    )
    return xr.DataTree.from_dict({"/": xr.Dataset(attrs=attrs), "posterior": xr.Dataset({"H": H})})


def _entropy(seed: Any) -> Any:
    """Return SeedSequence entropy from an int, Generator, SeedSequence or None."""
    if isinstance(seed, np.random.Generator):
        return seed.integers(2**63)
    if isinstance(seed, np.random.SeedSequence):
        return seed.entropy
    return seed


def _priors_dict(priors: GammaPriors) -> dict:
    return {k: np.asarray(v).tolist() for k, v in asdict(priors).items()}
