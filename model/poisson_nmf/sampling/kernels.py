r"""The Numba log density of Poisson NMF and its gradient, on (log W, log H).

.. math::

    \log p = \sum_{nz} [v \log λ - \log v!] - \sum_k (\textstyle\sum_f w_{fk})
    (\textstyle\sum_n h_{kn}) + \sum [a \log b - \log Γ(a) + a u - b e^u],

with :math:`u = \log w` (or :math:`\log h`), and
:math:`\partial / \partial u_{fk} = w_{fk} (\sum_{n \in nz(f)} v h_{kn} / λ_{fn} -
\sum_n h_{kn}) + a_w - b_w w_{fk}` (and likewise for H). Counts with more than a
fifth non-zeros go through a fused row-by-row pass over a zero-padded dense copy of
the counts (O(F N K) in vectorised loops, no F x N temporary); sparser counts through a
loop over the non-zeros alone (O(nnz K)). ``log`` and ``exp`` are the vectorisable
polynomials of :mod:`poisson_nmf.vecmath` (a few ulp): the C library's are called one
value at a time. The dense kernel also runs in float32 (twice the lanes per
instruction), for the sampler's ``precision="single"``. The tests check both kernels
against PyMC's ``logp`` and ``dlogp`` of the same model to rounding error.

Numba's disk cache keys a function on its own file; :mod:`poisson_nmf.numba_cache`
keys it on the source of the whole ``sampling`` package and ``vecmath`` as well.
"""

from __future__ import annotations

import numba
import numpy as np

from ..data import Counts
from ..vecmath import FAST, fexp, flog, flog_t

__all__ = ["PAD", "TINY", "TINY32", "logp_grad", "use_dense"]

TINY = 1e-300  # rates are floored here before their log (a normal float64)
TINY32 = np.float32(1e-30)  # the same in float32 (whose smallest normal is 1.2e-38)
PAD = 16  # dense rows are padded to whole blocks of this many columns


@numba.njit(nogil=True, error_model="numpy", cache=True)
def _lik_sparse(
    W: np.ndarray,
    H: np.ndarray,
    indptr: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    m_indptr: np.ndarray,
    m_cols: np.ndarray,
    gW: np.ndarray,
    gH: np.ndarray,
) -> float:
    """sum_nz v log(WH) + sum_masked WH, with its gradient written into gW and gH.

    O(nnz K), no F x N temporary: for sparse counts.
    """
    F, K = W.shape
    N = H.shape[1]
    Ht = np.ascontiguousarray(H.T)  # (N, K)
    gHt = np.zeros((N, K))
    lp = 0.0
    for f in range(F):
        for i in range(indptr[f], indptr[f + 1]):
            n = cols[i]
            v = vals[i]
            lam = 0.0
            for k in range(K):
                lam += W[f, k] * Ht[n, k]
            lam = max(lam, TINY)
            lp += v * flog(lam)
            r = v / lam
            for k in range(K):
                gW[f, k] += r * Ht[n, k]
                gHt[n, k] += r * W[f, k]
        # masked entries: their rate is taken back out of the total
        for i in range(m_indptr[f], m_indptr[f + 1]):
            n = m_cols[i]
            for k in range(K):
                lp += W[f, k] * Ht[n, k]
                gW[f, k] += Ht[n, k]
                gHt[n, k] += W[f, k]
    gH += gHt.T
    return lp


@numba.njit(nogil=True, fastmath=FAST, error_model="numpy", cache=True)
def _lik_rows(
    W: np.ndarray,
    Hp: np.ndarray,
    Vp: np.ndarray,
    Op: np.ndarray,
    masked: bool,
    tiny: float | np.floating,
    gW: np.ndarray,
    gHp: np.ndarray,
) -> float:
    """sum_obs [v log(WH) - WH], gradient into gW and gHp, dense and row by row.

    O(F N K) in short vectorised loops, no F x N temporary: for counts with more than
    about a fifth non-zeros. Hp, Vp (and the observed weights Op, when ``masked``)
    have their columns padded with zeros to a multiple of 16 (whole AVX2 blocks);
    a padded column has rate 0 and count 0, so it adds nothing (and its gHp is unused).
    Compiles for float64 or float32 arrays alike (``tiny``, the floor of the rates
    before their log, has their type; each row's sum is then in that type, the total
    in float64).
    """
    F, K = W.shape
    Np = Hp.shape[1]
    lam = np.empty(Np, dtype=Hp.dtype)
    zero = tiny - tiny
    one = tiny / tiny
    lp = 0.0
    for f in range(F):
        for n in range(Np):
            lam[n] = zero
        for k in range(K):
            w = W[f, k]
            for n in range(Np):
                lam[n] += w * Hp[k, n]
        acc = zero
        if masked:
            for n in range(Np):
                v = Vp[f, n]
                o = Op[f, n]
                lc = max(lam[n], tiny)
                acc += v * flog_t(lc) - o * lam[n]
                lam[n] = v / lc - o  # d/dlam, reusing the buffer
        else:
            for n in range(Np):
                v = Vp[f, n]
                lc = max(lam[n], tiny)
                acc += v * flog_t(lc) - lam[n]
                lam[n] = v / lc - one
        lp += float(acc)
        for k in range(K):
            s = zero
            w = W[f, k]
            for n in range(Np):
                r = lam[n]
                s += r * Hp[k, n]
                gHp[k, n] += w * r
            gW[f, k] = s
    return lp


@numba.njit(nogil=True, fastmath=FAST, error_model="numpy", cache=True)
def _lik_dense(
    W: np.ndarray,
    H: np.ndarray,
    Vp: np.ndarray,
    Op: np.ndarray,
    masked: bool,
    tiny: float | np.floating,
    grad: np.ndarray,
) -> float:
    """Return the dense log-likelihood, computed in the precision of Vp.

    Rates and logs are in Vp's type; the gradient with respect to (log W, log H) is
    written into grad in float64.
    """
    F, K = W.shape
    N = H.shape[1]
    nW = F * K
    Np = Vp.shape[1]
    Wd = np.empty((F, K), dtype=Vp.dtype)
    for f in range(F):
        for k in range(K):
            Wd[f, k] = W[f, k]
    Hp = np.zeros((K, Np), dtype=Vp.dtype)
    for k in range(K):
        for n in range(N):
            Hp[k, n] = H[k, n]
    gW = np.empty((F, K), dtype=Vp.dtype)
    gHp = np.zeros((K, Np), dtype=Vp.dtype)
    lp = _lik_rows(Wd, Hp, Vp, Op, masked, tiny, gW, gHp)
    for f in range(F):
        for k in range(K):
            grad[f * K + k] = W[f, k] * gW[f, k]
    for k in range(K):
        for n in range(N):
            grad[nW + k * N + n] = H[k, n] * gHp[k, n]
    return lp


@numba.njit(nogil=True, fastmath=FAST, error_model="numpy", cache=True)
def logp_grad(
    x: np.ndarray,
    F: int,
    N: int,
    K: int,
    indptr: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    m_indptr: np.ndarray,
    m_cols: np.ndarray,
    Vp: np.ndarray,
    Op: np.ndarray,
    Vs: np.ndarray,
    Os: np.ndarray,
    aw: np.ndarray,
    bw: np.ndarray,
    ah: np.ndarray,
    bh: np.ndarray,
    const: float,
    grad: np.ndarray,
    with_prior: bool,
    dense: bool,
    masked: bool,
    single: bool,
) -> float:
    """Return log p(x) + const and write its gradient into ``grad`` (shape ((F + N) K,)).

    ``x`` is (log W, log H) flattened row-major; the arrays are those of
    :class:`poisson_nmf.sampling.density.LogDensity`. ``dense`` picks the row-by-row
    kernel (in float32 with ``single``, from ``Vs``, ``Os``), else the loop over the
    non-zeros; ``with_prior=False`` leaves the Gamma prior terms out.
    """
    nW = F * K
    nH = K * N
    Wv = np.empty(nW)
    Hv = np.empty(nH)
    for i in range(nW):
        Wv[i] = fexp(x[i])
    for i in range(nH):
        Hv[i] = fexp(x[nW + i])
    W = Wv.reshape(F, K)
    H = Hv.reshape(K, N)
    if dense and single:
        lp = _lik_dense(W, H, Vs, Os, masked, TINY32, grad)
    elif dense:
        lp = _lik_dense(W, H, Vp, Op, masked, TINY, grad)
    else:
        gW = np.zeros((F, K))
        gH = np.zeros((K, N))
        lp = _lik_sparse(W, H, indptr, cols, vals, m_indptr, m_cols, gW, gH)
        # the rate total sum_fn (WH)_fn = sum_k (sum_f w_fk)(sum_n h_kn)
        sW = np.zeros(K)
        sH = np.zeros(K)
        for f in range(F):
            for k in range(K):
                sW[k] += W[f, k]
        for k in range(K):
            for n in range(N):
                sH[k] += H[k, n]
        for k in range(K):
            lp -= sW[k] * sH[k]
        for f in range(F):
            for k in range(K):
                grad[f * K + k] = W[f, k] * (gW[f, k] - sH[k])
        for k in range(K):
            for n in range(N):
                grad[nW + k * N + n] = H[k, n] * (gH[k, n] - sW[k])
    if with_prior:
        awf, bwf, ahf, bhf = aw.ravel(), bw.ravel(), ah.ravel(), bh.ravel()
        for i in range(nW):
            lp += awf[i] * x[i] - bwf[i] * Wv[i]
            grad[i] += awf[i] - bwf[i] * Wv[i]
        for i in range(nH):
            j = nW + i
            lp += ahf[i] * x[j] - bhf[i] * Hv[i]
            grad[j] += ahf[i] - bhf[i] * Hv[i]
    return lp + const


# the dense kernel pays O(F N K) in vectorised loops; worth it above this fill (timed
# in benchmarks/README.md), and only while its padded F x N copy of the counts is small
_DENSE_MIN_FILL = 0.2
_DENSE_MAX_ENTRIES = 4_000_000


def use_dense(counts: Counts) -> bool:
    """Whether ``counts`` go through the dense kernel (fill at least a fifth, not huge)."""
    F, N = counts.shape
    return F * N <= _DENSE_MAX_ENTRIES and counts.nz_values.size >= _DENSE_MIN_FILL * F * N
