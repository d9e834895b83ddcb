r"""The PyMC model: V ~ Poisson(W H) with optional Gamma priors on W and H.

.. math::

    w_{fk} \sim \mathrm{Gamma}(a_w, b_w), \quad h_{kn} \sim \mathrm{Gamma}(a_h, b_h),
    \quad v_{fn} \sim \mathrm{Poisson}\big(\textstyle\sum_k w_{fk} h_{kn}\big)

``priors=None`` puts flat (``HalfFlat``) priors on W and H: then the MAP is the
maximum-likelihood estimate, which is the KL-NMF solution.

Two exactly equal forms of the likelihood are offered (``likelihood=``):

``"dense"``
    ``pm.Poisson("V", mu=W @ H, observed=V)``: an observed variable that
    ``pm.sample_posterior_predictive`` and ``compute_log_likelihood`` understand. With a
    mask, only the observed entries enter, as a vector with dim ``"entry"``.
``"sparse"``
    A ``pm.Potential("V_loglik", ...)`` computed from the non-zeros alone,
    :math:`\sum_{nz} [v \log λ - \log v!] - \mathrm{sum}(W, 0) \cdot \mathrm{sum}(H, 1)`
    (less the rate of masked entries), never forming the F x N rate. Its cost grows
    with nnz x K. It has no observed variable; predictive draws and the pointwise
    log-likelihood come from :mod:`poisson_nmf` instead.

``"auto"`` (the default) takes ``"sparse"`` for sparse input or where fewer than half
the observed entries are non-zero, and ``"dense"`` otherwise.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy.special import gammaln

from ._validation import DEFAULT_PRIORS, check_priors
from .data import Counts, as_counts, check_n_components
from .priors import GammaPriors

__all__ = ["build_model", "choose_likelihood"]

Likelihood = Literal["auto", "dense", "sparse"]


def choose_likelihood(counts: Counts, likelihood: str = "auto") -> str:
    """Resolve ``likelihood="auto"`` to ``"dense"`` or ``"sparse"`` for these counts."""
    if likelihood not in ("auto", "dense", "sparse"):
        raise ValueError(f"likelihood must be 'auto', 'dense' or 'sparse', got {likelihood!r}")
    if likelihood != "auto":
        return likelihood
    if counts.is_sparse or counts.nz_values.size < 0.5 * counts.n_observed:
        return "sparse"
    return "dense"


def _factor(
    name: str,
    dims: tuple[str, str],
    alpha: np.ndarray | None,
    beta: np.ndarray | None,
    initval: np.ndarray | None,
) -> Any:
    kw: dict[str, Any] = {"dims": dims}
    if initval is not None:
        kw["initval"] = initval
    if alpha is None or beta is None:
        return pm.HalfFlat(name, **kw)

    # A scalar prior stays scalar in the graph (cheaper than a broadcast constant). It
    # is passed as np.float64, never as a Python float: PyTensor casts a Python float
    # that float32 represents exactly (1.5, 2.0, 3.0, ...) to a float32 constant, and
    # PyMC's Gamma then computes log Γ(α) and the scale 1/β in float32 (β = 3 became
    # 1/float32(1/3), off by 1e-8 relative: the log-density was off by up to 1e-8).
    def _simplify(x: np.ndarray) -> Any:
        if np.all(x == x.flat[0]):
            return np.float64(x.flat[0])
        return np.ascontiguousarray(x, dtype=np.float64)

    return pm.Gamma(name, alpha=_simplify(alpha), beta=_simplify(beta), **kw)


def build_model(
    V: Any,
    n_components: int,
    *,
    priors: GammaPriors | None = DEFAULT_PRIORS,
    mask: Any = None,
    likelihood: Likelihood = "auto",
    initval: tuple[np.ndarray, np.ndarray] | None = None,
) -> pm.Model:
    """Build the PyMC model V ~ Poisson(W H) with Gamma (or flat) priors.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`.
    n_components : int
        K, the number of components.
    priors : GammaPriors or None
        Gamma priors on W and H (default: Gamma(1, 1), exponential with mean 1, on
        every entry); ``None`` for flat priors (MAP = maximum likelihood = KL-NMF).
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries, left out of the likelihood.
    likelihood : {"auto", "dense", "sparse"}
        Form of the (identical) log-likelihood; see the module docstring.
    initval : tuple (W, H), optional
        Initial values of W (F x K) and H (K x N) for PyMC's samplers and optimisers.

    Returns
    -------
    pymc.Model
        Free variables ``W`` (dims ``("row", "component")``) and ``H`` (dims
        ``("component", "column")``); the likelihood ``V`` (dense form) or the potential
        ``V_loglik`` (sparse form); coords ``row``, ``column``, ``component``.
    """
    counts = as_counts(V, mask=mask)
    K = check_n_components(n_components)
    F, N = counts.shape
    form = choose_likelihood(counts, likelihood)
    priors = check_priors(priors)
    prior_arrays: tuple[Any, ...] = (
        priors.arrays(F, N, K) if priors is not None else (None, None, None, None)
    )
    aw, bw, ah, bh = prior_arrays
    w0, h0 = (None, None) if initval is None else initval
    coords = {"row": counts.row, "column": counts.column, "component": np.arange(K)}
    with pm.Model(coords=coords) as model:
        W = _factor("W", ("row", "component"), aw, bw, w0)
        H = _factor("H", ("component", "column"), ah, bh, h0)
        if form == "dense":
            lam = pt.dot(W, H)
            if counts.has_mask:
                obs = counts.observed()
                r, c = np.nonzero(obs)
                model.add_coord("entry", np.arange(r.size))
                pm.Poisson("V", mu=lam[r, c], observed=counts.dense()[r, c], dims="entry")
            else:
                pm.Poisson("V", mu=lam, observed=counts.dense(), dims=("row", "column"))
        else:
            r, c, v = counts.nz_rows, counts.nz_cols, counts.nz_values
            lam_nz = pt.sum(W[r] * H[:, c].T, axis=1)
            total = pt.dot(pt.sum(W, axis=0), pt.sum(H, axis=1))
            if counts.has_mask:
                mr, mc = counts.missing_rows, counts.missing_cols
                total = total - pt.sum(W[mr] * H[:, mc].T)
            const = np.float64(np.sum(gammaln(v + 1.0)))
            pm.Potential("V_loglik", pt.sum(v * pt.log(lam_nz)) - total - const)
    return model
