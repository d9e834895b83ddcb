r"""Permutation and scale of NMF components across chains and draws.

NMF is identified only up to the order of its K components and one scale per
component: for any permutation P and positive diagonal D, :math:`(W P D, D^{-1} P^T H)`
gives the same rate :math:`WH`. Posterior draws are made comparable in two steps.

1. **Normalise** every draw: ``normalize="W"`` rescales each column of W to sum to
   one and moves its scale into the matching row of H (``w_{fk} / s_k``,
   ``s_k h_{kn}``, :math:`s_k = \sum_f w_{fk}`); ``normalize="H"`` rescales each row of H
   to sum to one and moves the scale into W. WH is unchanged.
2. **Match** the components of every draw to a reference (normalised the same way) by
   the optimal assignment (:func:`scipy.optimize.linear_sum_assignment`) on the cost
   :math:`-(\cos(w_{\cdot j}, w^{ref}_{\cdot k}) + \cos(h_{j \cdot}, h^{ref}_{k \cdot}))`,
   the negative sum of the cosine similarities of the W columns and the H rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._typing import Normalize

__all__ = [
    "AlignResult",
    "align_factors",
    "check_normalize",
    "match_components",
    "normalize_factors",
]


def check_normalize(normalize: str) -> None:
    """Raise ValueError unless ``normalize`` is "W" or "H"."""
    if normalize not in ("W", "H"):
        raise ValueError(
            f"normalize must be 'W' (columns of W sum to one) or 'H' (rows of H sum to "
            f"one), got {normalize!r}"
        )


def normalize_factors(
    W: np.ndarray, H: np.ndarray, *, normalize: Normalize = "W"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move each component's scale to one side, leaving WH unchanged.

    Parameters
    ----------
    W : numpy.ndarray, shape (..., F, K)
        Factor(s) W; leading dims (e.g. chain, draw) broadcast with H's.
    H : numpy.ndarray, shape (..., K, N)
        Factor(s) H.
    normalize : {"W", "H"}
        ``"W"``: columns of W sum to one, the scale goes into H; ``"H"``: rows of H
        sum to one, the scale goes into W.

    Returns
    -------
    W, H : numpy.ndarray
        The normalised factors, shapes as given (float64).
    scale : numpy.ndarray, shape (..., K)
        The sums that were divided out (a component that is all zero keeps scale 1).
    """
    check_normalize(normalize)
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    s = W.sum(axis=-2) if normalize == "W" else H.sum(axis=-1)
    s = np.where(s > 0, s, 1.0)
    if normalize == "W":
        return W / s[..., None, :], H * s[..., :, None], s
    return W * s[..., None, :], H / s[..., :, None], s


def _unit(x: np.ndarray, axis: int) -> np.ndarray:
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def match_components(
    W: np.ndarray, H: np.ndarray, W_ref: np.ndarray, H_ref: np.ndarray
) -> np.ndarray:
    """Optimal matching of components to a reference, per draw.

    Parameters
    ----------
    W : numpy.ndarray, shape (..., F, K)
    H : numpy.ndarray, shape (..., K, N)
    W_ref : numpy.ndarray, shape (F, K)
    H_ref : numpy.ndarray, shape (K, N)

    Returns
    -------
    numpy.ndarray of int, shape (..., K)
        ``perm`` such that component ``perm[..., k]`` of the draw matches reference
        component ``k``: ``W[..., perm]`` is in the reference's order.
    """
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    K = W.shape[-1]
    if W_ref.shape != W.shape[-2:] or H_ref.shape != H.shape[-2:]:
        raise ValueError(
            f"reference shapes W {W_ref.shape}, H {H_ref.shape} do not match the factors' "
            f"trailing shapes W {W.shape[-2:]}, H {H.shape[-2:]}"
        )
    lead = W.shape[:-2]
    Wu = _unit(W, -2).reshape(-1, *W.shape[-2:])
    Hu = _unit(H, -1).reshape(-1, *H.shape[-2:])
    # cost[d, j, k]: -(cos of W column j with reference column k + same for H rows)
    # as matrix products (BLAS), not einsum, which is several times slower here
    cost = -(Wu.transpose(0, 2, 1) @ _unit(np.asarray(W_ref, float), 0))
    cost -= Hu @ _unit(np.asarray(H_ref, float), 1).T
    perm = np.empty((cost.shape[0], K), dtype=np.int64)
    for d in range(cost.shape[0]):
        rows, cols = linear_sum_assignment(cost[d])
        perm[d, cols] = rows
    return perm.reshape(*lead, K)


@dataclass(frozen=True, slots=True)
class AlignResult:
    """Normalised factors in the reference's component order.

    Attributes
    ----------
    W : numpy.ndarray, shape (..., F, K)
        Normalised, aligned W.
    H : numpy.ndarray, shape (..., K, N)
        Normalised, aligned H.
    permutation : numpy.ndarray of int, shape (..., K)
        Input component matched to each reference component.
    scale : numpy.ndarray, shape (..., K)
        Scale divided out of each (aligned) component by the normalisation.
    """

    W: np.ndarray
    H: np.ndarray
    permutation: np.ndarray
    scale: np.ndarray


def align_factors(
    W: np.ndarray,
    H: np.ndarray,
    W_ref: np.ndarray,
    H_ref: np.ndarray,
    *,
    normalize: Normalize = "W",
) -> AlignResult:
    """Normalise factors and put their components in the order of a reference.

    Parameters
    ----------
    W : numpy.ndarray, shape (..., F, K)
        Factor(s) W, e.g. posterior draws with leading dims (chain, draw).
    H : numpy.ndarray, shape (..., K, N)
        Factor(s) H with the same leading dims.
    W_ref : numpy.ndarray, shape (F, K)
        Reference W (e.g. the MAP); normalised here the same way.
    H_ref : numpy.ndarray, shape (K, N)
        Reference H.
    normalize : {"W", "H"}
        Which side carries unit sums; see :func:`normalize_factors`.

    Returns
    -------
    AlignResult
        ``W``, ``H`` normalised and permuted (WH unchanged), ``permutation`` and
        ``scale``.
    """
    Wn, Hn, s = normalize_factors(W, H, normalize=normalize)
    Wr, Hr, _ = normalize_factors(W_ref, H_ref, normalize=normalize)
    perm = match_components(Wn, Hn, Wr, Hr)
    Wa = np.take_along_axis(Wn, perm[..., None, :], axis=-1)
    Ha = np.take_along_axis(Hn, perm[..., :, None], axis=-2)
    return AlignResult(W=Wa, H=Ha, permutation=perm, scale=np.take_along_axis(s, perm, axis=-1))
