"""The log posterior density of Poisson NMF on (log W, log H), for one data set.

:class:`LogDensity` holds what the kernels of :mod:`poisson_nmf.sampling.kernels` need
(CSR non-zeros, the padded dense copy, the prior arrays, the constants) and calls them;
:func:`log_density` is its public constructor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import gammaln

from .._validation import DEFAULT_PRIORS, proper_priors
from ..data import Counts, as_counts, check_n_components, csr_index
from ..priors import GammaPriors
from .kernels import PAD, logp_grad, use_dense

__all__ = ["LogDensity", "log_density"]


@dataclass(frozen=True)
class LogDensity:
    """The log posterior density on (log W, log H) and its gradient, as a callable.

    ``dens(x, grad=None, with_prior=True, single=False) -> float`` with ``x`` of shape
    ``((F + N) K,)``: ``log W`` (F x K, row-major) then ``log H`` (K x N); the gradient
    is written into ``grad`` when given. Built by :meth:`build` (or
    :func:`log_density`); the attributes are the arrays the Numba kernel reads.
    """

    F: int
    N: int
    K: int
    indptr: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    m_indptr: np.ndarray
    m_cols: np.ndarray
    Vp: np.ndarray
    Op: np.ndarray
    Vs: np.ndarray
    Os: np.ndarray
    aw: np.ndarray
    bw: np.ndarray
    ah: np.ndarray
    bh: np.ndarray
    lik_const: float
    prior_const: float
    dense: bool
    masked: bool

    @classmethod
    def build(
        cls, counts: Counts, K: int, priors: GammaPriors, dense: bool | None = None
    ) -> LogDensity:
        """Arrays for the kernel; ``dense=None`` picks the kernel by fill (:func:`use_dense`)."""
        F, N = counts.shape
        indptr, cols, order = csr_index(counts.nz_rows, counts.nz_cols, F)
        vals = np.ascontiguousarray(counts.nz_values[order])
        m_indptr, m_cols, _ = csr_index(counts.missing_rows, counts.missing_cols, F)
        aw, bw, ah, bh = (np.ascontiguousarray(a) for a in priors.arrays(F, N, K))
        dense = use_dense(counts) if dense is None else bool(dense)
        masked = bool(counts.has_mask)
        Vp = np.zeros((F, -(-N // PAD) * PAD if dense else 0))
        Op = np.zeros((F, Vp.shape[1] if dense and masked else 0))
        if dense:
            Vp[counts.nz_rows, counts.nz_cols] = counts.nz_values
            if masked:
                Op[:, :N] = counts.observed()
        # float32 copies for the sampler's single-precision kernel (counts above 2^24
        # would round: those keep float64)
        single_ok = dense and float(np.max(counts.nz_values, initial=0.0)) < 2.0**24
        Vs = Vp.astype(np.float32) if single_ok else np.zeros((F, 0), np.float32)
        Os = Op.astype(np.float32) if single_ok else np.zeros((F, 0), np.float32)
        return cls(
            F, N, K, indptr, cols, vals, m_indptr, m_cols, Vp, Op, Vs, Os, aw, bw, ah, bh,
            lik_const=-float(np.sum(gammaln(vals + 1.0))),
            prior_const=priors.log_normaliser(F, N, K),
            dense=dense,
            masked=masked,
        )  # fmt: skip

    @property
    def n_dim(self) -> int:
        """Length of x, (F + N) K."""
        return (self.F + self.N) * self.K

    @property
    def can_single(self) -> bool:
        """Whether the dense kernel can run in float32 (:attr:`Vs` holds the counts)."""
        return self.dense and self.Vs.shape[1] > 0

    def __call__(  # noqa: D102 - the class docstring says what a call returns
        self,
        x: np.ndarray,
        grad: np.ndarray | None = None,
        with_prior: bool = True,
        single: bool = False,
    ) -> float:
        if single and not self.can_single:
            raise ValueError("the float32 kernel needs dense counts below 2**24")
        g = np.empty(self.n_dim) if grad is None else grad
        const = self.lik_const + (self.prior_const if with_prior else 0.0)
        return float(
            logp_grad(
                x, self.F, self.N, self.K, self.indptr, self.cols, self.vals,
                self.m_indptr, self.m_cols, self.Vp, self.Op, self.Vs, self.Os, self.aw,
                self.bw, self.ah, self.bh, const, g, with_prior, self.dense, self.masked,
                single,
            )
        )  # fmt: skip

    def log_prior(self, W: np.ndarray, H: np.ndarray) -> np.ndarray:
        """Log prior on (log W, log H), Jacobian included, per draw: shape W.shape[:-2]."""
        lw = np.einsum("...fk,fk->...", np.log(W), self.aw) - np.einsum("...fk,fk->...", W, self.bw)
        lh = np.einsum("...kn,kn->...", np.log(H), self.ah) - np.einsum("...kn,kn->...", H, self.bh)
        return lw + lh + self.prior_const

    def pack(self, W: np.ndarray, H: np.ndarray) -> np.ndarray:
        """Return x = (log W, log H), flattened row-major."""
        return np.concatenate([np.log(W).ravel(), np.log(H).ravel()])

    def unpack(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return W (F, K) and H (K, N) of x."""
        nW = self.F * self.K
        return np.exp(x[:nW]).reshape(self.F, self.K), np.exp(x[nW:]).reshape(self.K, self.N)


def log_density(
    V: Any,
    n_components: int,
    *,
    priors: GammaPriors = DEFAULT_PRIORS,
    mask: Any = None,
) -> LogDensity:
    """Return the log posterior density on (log W, log H) and its gradient, as a function.

    The same density as PyMC's ``model.compile_logp()`` for
    :func:`poisson_nmf.model.build_model` (value variables ``W_log__``, ``H_log__``,
    Jacobian included), computed from the non-zeros in O(nnz K).

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`.
    n_components : int
        K.
    priors : GammaPriors
        Gamma priors on W and H.
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries.

    Returns
    -------
    LogDensity
        A callable ``f(x, grad=None, with_prior=True) -> float`` with ``x`` of shape
        ``((F + N) K,)``: ``log W`` (F x K, row-major) then ``log H`` (K x N); the
        gradient is written into ``grad`` when given. ``with_prior=False`` gives the
        Poisson log-likelihood of W = exp(...), H = exp(...) alone.
    """
    counts = as_counts(V, mask=mask)
    K = check_n_components(n_components, counts)
    return LogDensity.build(counts, K, proper_priors(priors))
