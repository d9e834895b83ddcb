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
    Exact draws from p(H | V, W), column by column (each a K-dimensional, smooth
    problem; compiled with Numba, one call per block of columns and all its chains). The
    chain runs in y > 0 with h = y^p (p = 2 for prior shapes a >= 1, 2 / a below: the
    square root of a Poisson rate is near-Gaussian, so loadings whose posterior reaches
    down to 0 are not stretched into the long left tail they have in log space); the
    target is log π(y) = Σ_f v_f log λ_f - Σ_k (b_k + Σ_f w_fk) h_k + Σ_k (p_k a_k - 1)
    log y_k on y > 0 (trajectories may cross y_k = 0 under the gradient of its mirror
    image but are rejected if they end there: a chain in a mirror orthant would meet the
    metric reflected and mix slowly). Per column:

    1. the Laplace approximation at the mode (the h-space MAP with prior shape
       a + 1 - 1/p, :func:`poisson_nmf.optim.kl.fit_h`), then ``_IS_ROUNDS`` rounds of
       importance sampling (``_N_IS`` draws each) from a multivariate t (4 degrees of
       freedom) that move it to the weighted mean and covariance;
    2. each chain starts from an importance draw resampled by its weight; each
       iteration is an independence step from that t (a jump across the whole posterior
       when it is accepted) and a Hamiltonian trajectory with the t's covariance as
       inverse mass matrix and a path of 1.5 (whitened units), its step size tuned
       during ``tune`` iterations by dual averaging (Hoffman & Gelman 2014, acceptance
       0.8) and then fixed to the median over the chains (jittered by ±10 %).

    Nothing adapts after tuning and every step leaves p(H | V, W) invariant, so the draws
    are exact whatever the quality of the adaptation, which only sets the speed.
    ``attrs`` names the sampler and gives the acceptance rates and the log-density and
    gradient evaluations per sample (a count of work that does not depend on the
    machine's load). Tried and not kept (``benchmarks/README.md``): the conjugate Gibbs
    sampler on latent counts (Cemgil 2009; with hundreds of counts per sample the latent
    allocations move little per sweep), and Metropolis-Hastings in log space (a
    Laplace-t independence step, a random walk and single-coordinate Gamma steps:
    slowest bulk ESS 45 of 2,000 draws at K = 10). R-hat and ESS of every loading
    (:func:`poisson_nmf.diagnose`) say whether the draws suffice.

W given as a fitted posterior tree (from :func:`poisson_nmf.sample_posterior`): the
**cut posterior** p_cut(H | V) = ∫ p(H | V, W) p(W | V_train) dW. The new samples do not
update W. Draws of W are taken evenly spaced over all chains and draws of the tree (one
per kept draw of H; ``attrs["cut_posterior"]`` says how many and which); for each, the
chain of H makes ``inner`` iterations given that W, starting where it was, and keeps the
last: exact as ``inner`` grows (successive draws of W are close in distribution, so a
few suffice). The Laplace approximation is taken at the posterior mean of W, its scale
widened by 1.5, and the importance sampling weights its draws under the tree's draws of W
in turn; tuning runs given the chain's first draw of W. ``method="map"`` with a tree uses
the posterior mean of W.

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
- R. M. Neal, "MCMC using Hamiltonian dynamics", Handbook of Markov Chain Monte Carlo
  (2011).
- M. D. Hoffman and A. Gelman, "The No-U-Turn Sampler", JMLR 15 (2014), algorithm 5
  (dual averaging of the step size).
- P. E. Jacob, L. M. Murray, C. C. Holmes and C. P. Robert, "Better together? Statistical
  learning in models made of modules", arXiv:1708.08719 (2017) (cut posteriors).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from functools import partial
from typing import Any, Literal

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from ._validation import DEFAULT_PRIORS
from .data import MISSING_REMEDY, Counts, ZeroRowsColumnsWarning, as_counts
from .optim.kl import fit_h
from .parallel import map_pieces
from .priors import GammaPriors

__all__ = ["SAMPLER", "fit_loadings"]

SAMPLER = (
    "independence Metropolis-Hastings and Hamiltonian Monte Carlo on y = H^(1/p), proposal "
    "and metric adapted per sample by importance sampling from the Laplace approximation "
    "(exact: every step targets p(H | V, W), nothing adapts after tuning)"
)
# the proposal's degrees of freedom: tails heavier than the target's in log space
_NU = 4.0
# a tree's draws of W spread the loadings beyond the Laplace approximation at mean W
_TREE_INFLATE = 1.5
_METHODS = ("map", "posterior")
# adaptive importance sampling of each sample's proposal: draws per round, rounds
_N_IS = 200
_IS_ROUNDS = 2
# Hamiltonian path length in whitened units (about half a period of a unit Gaussian)
_PATH = 1.5
_MOVE = True
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
def _t_draw(
    mu: np.ndarray, L: np.ndarray, nu: float, rng: Any, z: np.ndarray, out: np.ndarray
) -> float:
    """Draw ``out`` from the multivariate t(nu, mu, L L^T); return |L^-1 (out - mu)|^2."""
    K = mu.size
    g = 2.0 * rng.standard_gamma(0.5 * nu)  # a chi-square with nu degrees of freedom
    zz = 0.0
    for k in range(K):
        z[k] = rng.standard_normal()
        zz += z[k] * z[k]
    scale = np.sqrt(nu / g)
    for k in range(K):
        y = 0.0
        for j in range(k + 1):
            y += L[k, j] * z[j]
        out[k] = mu[k] + scale * y
    return zz * nu / g


@numba.njit(cache=True, nogil=True)
def _adapt(
    mu: np.ndarray,
    L: np.ndarray,
    nu: float,
    n_is: int,
    rounds: int,
    p: np.ndarray,
    Ws: np.ndarray,
    ssum: np.ndarray,
    wsel: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    lo: int,
    hi: int,
    rng: Any,
    U: np.ndarray,
    lw: np.ndarray,
    move: bool,
) -> float:
    """Adaptive importance sampling of the proposal t(nu, mu, L L^T), in place.

    Each round draws ``n_is`` points from the proposal, weights them by target over
    proposal and moves the proposal to their weighted mean and covariance, shrunk toward
    the previous covariance by 4 K pseudo-draws (a few dominant weights must not make it
    thin in some direction). Leaves the last round's draws in ``U`` and their normalised
    weights in ``lw``; returns that round's effective sample fraction.
    """
    K = mu.size
    z = np.empty(K)
    frac = 1.0
    for _ in range(rounds):
        for i in range(n_is):
            r2 = _t_draw(mu, L, nu, rng, z, U[i])
            s = wsel[i % wsel.size]
            lp = _logp(U[i], p, Ws[s], ssum[s], a, b, indices, values, lo, hi)
            lw[i] = lp + 0.5 * (nu + K) * np.log1p(r2 / nu)
        mx = lw.max()
        if not np.isfinite(mx):
            # no draw inside the support: keep the proposal; the chains start anywhere
            # and their first accepted step enters it
            lw[:] = 1.0 / n_is
            return 0.0
        tot = 0.0
        for i in range(n_is):
            lw[i] = np.exp(lw[i] - mx)
            tot += lw[i]
        sq = 0.0
        for i in range(n_is):
            lw[i] /= tot
            sq += lw[i] * lw[i]
        ess = 1.0 / sq
        frac = ess / n_is
        mean = np.zeros(K)
        for i in range(n_is):
            for k in range(K):
                mean[k] += lw[i] * U[i, k]
        cov = np.zeros((K, K))
        for i in range(n_is):
            for k in range(K):
                dk = U[i, k] - mean[k]
                for j in range(k + 1):
                    cov[k, j] += lw[i] * dk * (U[i, j] - mean[j])
        prev = L @ L.T
        wt = ess / (ess + 4.0 * K)
        for k in range(K):
            for j in range(k + 1):
                c = wt * cov[k, j] + (1.0 - wt) * prev[k, j]
                cov[k, j] = c
                cov[j, k] = c
        if move:
            L[:, :] = np.linalg.cholesky(cov)
            mu[:] = mean
    return frac


@numba.njit(cache=True, nogil=True)
def _grad_x(
    x: np.ndarray,
    mu: np.ndarray,
    L: np.ndarray,
    p: np.ndarray,
    W: np.ndarray,
    ssum: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    lo: int,
    hi: int,
    y: np.ndarray,
    gx: np.ndarray,
    h: np.ndarray,
    acc: np.ndarray,
) -> None:
    """Set y = mu + L x and gx = L^T ∇_y log π(y), the gradient in whitened coordinates.

    With h_k = |y_k|^p_k and e_k = h_k (Σ_f v_f w_fk / λ_f - b_k - Σ_f w_fk):
    d log π / d y_k = (p_k e_k + p_k a_k - 1) / y_k. No logarithm is taken, so a
    gradient costs about what the rates cost. ``h`` and ``acc`` are scratch (K).
    """
    K = x.size
    for k in range(K):
        v = mu[k]
        for j in range(k + 1):
            v += L[k, j] * x[j]
        y[k] = v
        h[k] = abs(v) ** p[k]
        acc[k] = 0.0
    for j in range(lo, hi):
        f = indices[j]
        lam = 0.0
        for k in range(K):
            lam += W[f, k] * h[k]
        r = values[j] / lam
        for k in range(K):
            acc[k] += r * W[f, k]
    for k in range(K):
        e = h[k] * (acc[k] - b[k] - ssum[k])
        acc[k] = (p[k] * e + p[k] * a[k] - 1.0) / y[k]
    for k in range(K):
        s = 0.0
        for j in range(k, K):
            s += L[j, k] * acc[j]
        gx[k] = s


@numba.njit(cache=True, nogil=True)
def _hmc_step(
    x: np.ndarray,
    u: np.ndarray,
    g: np.ndarray,
    scr: np.ndarray,
    lp: float,
    eps: float,
    n_leap: int,
    mu: np.ndarray,
    L: np.ndarray,
    p: np.ndarray,
    W: np.ndarray,
    ssum: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    lo: int,
    hi: int,
    rng: Any,
) -> tuple[float, float]:
    """One Hamiltonian Monte Carlo trajectory in whitened coordinates u = mu + L x.

    Identity mass in x (the dense mass matrix (L L^T)^-1 in u), ``n_leap`` leapfrog
    steps of size ``eps`` and a Metropolis correction, so the target is left invariant
    (Neal 2011). ``g`` is the whitened gradient at ``x`` (reused from the last trajectory
    that ended there); ``scr`` is (6, K) scratch. Updates ``x``, ``u`` and ``g`` in place
    when accepted; returns the log density of the state kept and the acceptance
    probability.
    """
    K = x.size
    mom, xn, un, gx = scr[0], scr[1], scr[2], scr[3]
    kin = 0.0
    for k in range(K):
        mom[k] = rng.standard_normal()
        kin += mom[k] * mom[k]
        xn[k] = x[k]
        gx[k] = g[k]
    for _ in range(n_leap):
        for k in range(K):
            mom[k] += 0.5 * eps * gx[k]
            xn[k] += eps * mom[k]
        _grad_x(xn, mu, L, p, W, ssum, a, b, indices, values, lo, hi, un, gx, scr[4], scr[5])
        for k in range(K):
            mom[k] += 0.5 * eps * gx[k]
    lpn = _logp(un, p, W, ssum, a, b, indices, values, lo, hi)
    kin_n = 0.0
    for k in range(K):
        kin_n += mom[k] * mom[k]
    log_ratio = lpn - lp - 0.5 * (kin_n - kin)
    prob = 0.0  # also for NaN (a trajectory that blew up)
    if log_ratio >= 0.0:
        prob = 1.0
    elif log_ratio > -np.inf:
        prob = np.exp(log_ratio)
    if rng.random() < prob:
        x[:] = xn
        u[:] = un
        g[:] = gx
        return lpn, prob
    return lp, prob


@numba.njit(cache=True, nogil=True)
def _chain_steps(
    t0: int,
    t1: int,
    tune: int,
    inner: int,
    u: np.ndarray,
    x: np.ndarray,
    st: np.ndarray,
    mu: np.ndarray,
    L: np.ndarray,
    p: np.ndarray,
    Ws: np.ndarray,
    ssum: np.ndarray,
    wrow: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    lo: int,
    hi: int,
    nu: float,
    path: float,
    rng: Any,
    out: np.ndarray,
    n: int,
    acc: np.ndarray,
    cnt: np.ndarray,
) -> None:
    """Run iterations t0 .. t1 - 1 of one chain of one column (see :func:`_sample_block`).

    ``st`` holds the chain's scalars: log density, proposal radius, step size, then the
    dual-averaging state (log of the averaged step, average gap, centre, count) and the
    draw of W the log density was computed with. Tuning iterations (t < ``tune``) adapt
    the step size; later ones write every ``inner``-th state of h into ``out[:, n]``.
    ``acc`` gets the acceptance of the independence steps and of the trajectories;
    ``cnt`` the log-density and gradient evaluations.
    """
    K = u.size
    un = np.empty(K)
    z = np.empty(K)
    g = np.empty(K)
    scr = np.empty((6, K))
    fresh = False  # whether g is the gradient at x under the current draw of W
    for t in range(t0, t1):
        w = wrow[0] if t < tune else wrow[(t - tune) // inner]
        if w != int(st[7]):
            st[0] = _logp(u, p, Ws[w], ssum[w], a, b, indices, values, lo, hi)
            cnt[0] += 1
            st[7] = w
            fresh = False
        # an independence step from the adapted t: a jump across the whole posterior
        r2n = _t_draw(mu, L, nu, rng, z, un)
        lpn = _logp(un, p, Ws[w], ssum[w], a, b, indices, values, lo, hi)
        cnt[0] += 1
        log_ratio = lpn - st[0] + 0.5 * (nu + K) * (np.log1p(r2n / nu) - np.log1p(st[1] / nu))
        if np.log(rng.random()) < log_ratio:
            u[:] = un
            st[0] = lpn
            _t_radius(u, mu, L, x)
            fresh = False
            if t >= tune:
                acc[0] += 1.0
        # then a Hamiltonian trajectory, for what the independence step misses
        step = st[2] if t < tune else st[2] * (0.9 + 0.2 * rng.random())
        n_leap = min(max(1, int(np.ceil(path / step))), 100)
        if not fresh:
            _grad_x(
                x, mu, L, p, Ws[w], ssum[w], a, b, indices, values, lo, hi, un, g, scr[4], scr[5]
            )
            cnt[1] += 1
            fresh = True
        st[0], prob = _hmc_step(
            x, u, g, scr, st[0], step, n_leap, mu, L, p, Ws[w], ssum[w], a, b, indices, values, lo,
            hi, rng,
        )  # fmt: skip
        cnt[0] += 1
        cnt[1] += n_leap
        r2 = 0.0
        for k in range(K):
            r2 += x[k] * x[k]
        st[1] = r2
        if t < tune:
            # dual averaging of the step size (Hoffman & Gelman 2014, algorithm 5)
            st[6] += 1.0
            m_t = st[6]
            st[4] = (1.0 - 1.0 / (m_t + 10.0)) * st[4] + (0.8 - prob) / (m_t + 10.0)
            log_eps = st[5] - np.sqrt(m_t) / 0.05 * st[4]
            eta = m_t**-0.75
            st[3] = eta * log_eps + (1.0 - eta) * st[3]
            st[2] = np.exp(st[3]) if t == tune - 1 else np.exp(log_eps)
        else:
            acc[1] += prob
            if (t - tune + 1) % inner == 0:
                d = (t - tune) // inner
                for k in range(K):
                    out[d, n, k] = abs(u[k]) ** p[k]


@numba.njit(cache=True, nogil=True)
def _sample_block(
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
    L0: np.ndarray,
    p: np.ndarray,
    nu: float,
    n_is: int,
    rounds: int,
    path: float,
    move: bool,
    rng: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draws of h for every column of a block and every chain (see the module docstring).

    Per column: the proposal t(nu, mu, L L^T) in y is adapted by importance sampling from
    the Laplace approximation (:func:`_adapt`) and each chain starts from a draw
    resampled by the importance weights. Each iteration is an independence step from
    that t and a Hamiltonian trajectory (:func:`_hmc_step`) with mass matrix
    (L L^T)^-1 and path length ``path`` (whitened units), its step size tuned by dual
    averaging during the ``tune`` iterations (Hoffman & Gelman 2014, target acceptance
    0.8). After tuning nothing adapts (the step is jittered by ±10 %): every step leaves
    the target invariant, so the chains are exact.

    Returns the draws (chains, D, n_cols, K), the acceptance rates of the independence
    steps and of the trajectories after tuning (2, chains, n_cols), and per column the
    log-density and the gradient evaluations.
    """
    n_cols, K = m.shape
    S, F = Ws.shape[0], Ws.shape[1]
    C, D = widx.shape
    ssum = np.zeros((S, K))
    for s in range(S):
        for f in range(F):
            for k in range(K):
                ssum[s, k] += Ws[s, f, k]
    out = np.empty((C, D, n_cols, K))
    acc = np.zeros((2, C, n_cols))
    cnt = np.zeros((2, n_cols))
    U = np.empty((n_is, K))
    lw = np.empty(n_is)
    mu = np.empty(K)
    L = np.empty((K, K))
    us = np.empty((C, K))
    xs = np.empty((C, K))
    st = np.empty((C, 8))
    wsel = widx.ravel()
    n_steps = tune + D * inner
    acc_c = np.zeros(2)
    for n in range(n_cols):
        lo, hi = indptr[n], indptr[n + 1]
        mu[:] = m[n]
        L[:, :] = L0[n]
        _adapt(
            mu, L, nu, n_is, rounds, p[n], Ws, ssum, wsel, a[n], b[n], indices, values, lo,
            hi, rng, U, lw, move,
        )  # fmt: skip
        cnt[0, n] += n_is * rounds
        for c in range(C):
            # start from the importance draws resampled by their weights
            r = rng.random()
            i = 0
            cum = lw[0]
            while cum < r and i < n_is - 1:
                i += 1
                cum += lw[i]
            us[c] = U[i]
            st[c, 1] = _t_radius(us[c], mu, L, xs[c])
            st[c, 2] = 0.5
            st[c, 3:8] = np.array([0.0, 0.0, np.log(5.0), 0.0, -1.0])
            _chain_steps(
                0, tune, tune, inner, us[c], xs[c], st[c], mu, L, p[n], Ws, ssum, widx[c],
                a[n], b[n], indices, values, lo, hi, nu, path, rng, out[c], n, acc_c,
                cnt[:, n],
            )  # fmt: skip
        # one step size for all chains, the median of theirs: a chain that tuned itself
        # to a tiny step (started where the density is steep) would barely move
        if tune > 0:
            st[:, 2] = np.median(st[:, 2])
        for c in range(C):
            acc_c[:] = 0.0
            _chain_steps(
                tune, n_steps, tune, inner, us[c], xs[c], st[c], mu, L, p[n], Ws, ssum,
                widx[c], a[n], b[n], indices, values, lo, hi, nu, path, rng, out[c], n,
                acc_c, cnt[:, n],
            )  # fmt: skip
            acc[:, c, n] = acc_c
    acc /= max(n_steps - tune, 1)
    return out, acc, cnt[0], cnt[1]


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
def _logp(
    y: np.ndarray,
    p: np.ndarray,
    W: np.ndarray,
    ssum: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    lo: int,
    hi: int,
) -> float:
    """Return log π(y) up to a constant, h_k = y_k^p_k (see the module docstring).

    The target lives on y > 0 (-inf elsewhere). The gradient (:func:`_grad_x`) is that of
    its mirror image, defined on every orthant: a trajectory may cross y_k = 0 on the way
    (leapfrog stays reversible and volume-preserving) but is rejected if it ends there.
    A chain that wandered into the mirror orthant would meet its metric reflected and mix
    slowly there.
    """
    K = y.size
    h = np.empty(K)
    lp = 0.0
    for k in range(K):
        if not y[k] > 0.0:
            return -np.inf
        h[k] = y[k] ** p[k]
        lp += (p[k] * a[k] - 1.0) * np.log(y[k]) - (b[k] + ssum[k]) * h[k]
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
    nu: float,
    n_is: int,
    rounds: int,
    path: float,
) -> tuple[np.ndarray, ...]:
    """Sample one block: draws, acceptance and evaluation counts (:func:`_sample_block`)."""
    (indptr, indices, values), a, b, m, L, p, seed = piece
    rng = np.random.default_rng(seed)
    kernel: Any = _sample_block  # a numba dispatcher, untyped for mypy
    return kernel(
        indptr, indices, values, Ws, widx, inner, tune, a, b, m, L, p, nu, n_is, rounds,
        path, _MOVE, rng,
    )  # fmt: skip


def _power(a: np.ndarray) -> np.ndarray:
    """Return the power p of h = |y|^p per loading.

    2 (the square root of a Poisson rate is near-Gaussian), more for prior shapes below
    1, so that p a >= 2 and the density of y vanishes at 0.
    """
    return np.maximum(2.0, 2.0 / a)


def _laplace(
    by_col: sp.csc_array,
    W: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    p: np.ndarray,
    inflate: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Mode and Cholesky factor of the inverse negative Hessian of log π(y), per column.

    With h = y^p the Jacobian adds (1 - 1/p) log h, so the mode of log π(y) is the
    h-space MAP with prior shape a + 1 - 1/p (> 1: the mode is inside), found by
    :func:`poisson_nmf.optim.kl.fit_h`. There the negative Hessian in y is
    D^-1 [P (Σ_f v_f r_f r_f^T) P + diag(p (p a - 1))] D^-1, with D = diag(y),
    P = diag(p) and r_fk = w_fk h_k / λ_f.
    """
    F, N = by_col.shape
    K = W.shape[1]
    # fit_h takes a GammaPriors (rate > 0): a flat rate becomes negligible, 1e-300
    shift = GammaPriors(h_shape=(a + 1.0 - 1.0 / p).T, h_rate=np.maximum(b, 1e-300).T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroRowsColumnsWarning)
        cnt = as_counts(by_col, name="V_new", allow_all_zero=True, integer=False)
    H, _, _ = fit_h(cnt, W, priors=shift, max_iter=_MAP_MAX_ITER, tol=_MAP_TOL)
    y = H.T ** (1.0 / p)
    L = np.empty((N, K, K))
    for n in range(N):
        lo, hi = by_col.indptr[n], by_col.indptr[n + 1]
        rows, v = by_col.indices[lo:hi], by_col.data[lo:hi]
        R = W[rows] * H[:, n]
        R /= R.sum(axis=1, keepdims=True)
        R *= p[n]
        A = np.diag(p[n] * (p[n] * a[n] - 1.0)) + (R * v[:, None]).T @ R
        A /= np.outer(y[n], y[n])
        L[n] = np.linalg.cholesky(np.linalg.inv(A)) * inflate
    return np.ascontiguousarray(y), L


def _validate_counts(V_new: Any, method: str) -> Counts:
    with warnings.catch_warnings():
        # features absent from every new sample are normal here, not worth a warning
        warnings.simplefilter("ignore", ZeroRowsColumnsWarning)
        try:
            return as_counts(V_new, name="V_new", integer=method != "map", allow_all_zero=True)
        except ValueError as err:
            if MISSING_REMEDY not in str(err):
                raise
            # as_counts suggests missing='mask', which fit_loadings does not take
            msg = str(err).replace(
                MISSING_REMEDY,
                "fit_loadings takes no missing entries: fill them, or drop the features "
                "with missing values from V_new and W (rows are matched by label when both "
                "are labelled), fitting samples with other missing features separately",
            )
            raise ValueError(msg) from None


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def fit_loadings(
    V_new: Any,
    W: Any,
    *,
    priors: GammaPriors | None = DEFAULT_PRIORS,
    method: Literal["map", "posterior"] = "map",
    draws: int = 500,
    tune: int = 150,
    chains: int = 4,
    inner: int = 1,
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
        pw = _power(a)
        m, L = _laplace(by_col, mean_W, a, b, pw, 1.0 if src["kind"] == "matrix" else _TREE_INFLATE)
        starts = list(range(0, N, _BLOCK))
        seeds = np.random.SeedSequence(_entropy(random_seed)).spawn(len(starts))
        pieces = []
        for i, lo in enumerate(starts):
            blk = by_col[:, lo : lo + _BLOCK]
            csc = (blk.indptr.astype(np.int64), blk.indices.astype(np.int64), blk.data)
            sl = slice(lo, lo + _BLOCK)
            pieces.append((csc, a[sl], b[sl], m[sl], L[sl], pw[sl], seeds[i]))
        fn = partial(
            _block_draws, Ws=Ws, widx=widx, inner=inner, tune=tune, nu=_NU, n_is=_N_IS,
            rounds=_IS_ROUNDS, path=_PATH,
        )  # fmt: skip
        parts = map_pieces(fn, pieces, executor=executor, progress=progress, desc="loadings")
        post = np.concatenate([p[0] for p in parts], axis=2).transpose(0, 1, 3, 2)
        acc = np.concatenate([p[1] for p in parts], axis=2)
        evals = np.concatenate([p[2] for p in parts])
        grads = np.concatenate([p[3] for p in parts])
        attrs["logp_evaluations_per_sample"] = float(evals.mean()) if N else 0.0
        attrs["gradient_evaluations_per_sample"] = float(grads.mean()) if N else 0.0
        attrs["hmc_acceptance_mean"] = float(acc[1].mean()) if N else 0.0
        acc = acc[0]
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
