r"""Numba kernels of :func:`poisson_nmf.fit_loadings`' exact sampler on y = h^(1/p).

Per column of V_new, given W (or each draw of W of a posterior tree), the target is

    log π(y) = Σ_f v_f log λ_f - Σ_k (b_k + Σ_f w_fk) h_k + Σ_k (p_k a_k - 1) log y_k

on y > 0, with h_k = y_k^p_k and λ = W h (up to a constant). The kernels here: the log
density (:func:`_logp`) and its whitened gradient (:func:`_grad_x`), a draw from the
multivariate t proposal (:func:`_t_draw`), the adaptive importance sampling that fits it
(:func:`_adapt`), one Hamiltonian trajectory (:func:`_hmc_step`), the iterations of one
chain (:func:`_chain_steps`) and a block of columns (:func:`_sample_block`), called
through :func:`block_draws`. They call each other, so they stay in this one file: Numba's
disk cache keys a function on its own file and misses an edit to a callee elsewhere
(:mod:`poisson_nmf.numba_cache` hashes this file with the others that import Numba).

References
----------
- R. M. Neal, "MCMC using Hamiltonian dynamics", Handbook of Markov Chain Monte Carlo
  (2011).
- M. D. Hoffman and A. Gelman, "The No-U-Turn Sampler", JMLR 15 (2014), algorithm 5
  (dual averaging of the step size).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from .numba_cache import ensure_fresh

ensure_fresh()  # before any cached function of the package loads

__all__ = ["block_draws"]

# the proposal moves to the importance-weighted mean and covariance (False: kept fixed)
_MOVE = True


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


def block_draws(
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
    """Sample one block: draws, acceptance and evaluation counts (:func:`_sample_block`).

    ``piece`` is ((indptr, indices, values) of the block's CSC counts, a, b, the
    Laplace modes, their Cholesky factors, the powers p, a seed); the others are shared
    by every block (see :func:`_sample_block`).
    """
    (indptr, indices, values), a, b, m, L, p, seed = piece
    rng = np.random.default_rng(seed)
    kernel: Any = _sample_block  # a numba dispatcher, untyped for mypy
    return kernel(
        indptr, indices, values, Ws, widx, inner, tune, a, b, m, L, p, nu, n_is, rounds,
        path, _MOVE, rng,
    )  # fmt: skip
