"""Where the chains start: named start strategies, and the alignment reference.

- :func:`at_map`: every chain at one MAP, the best of :data:`MAP_RESTARTS` fits of
  :func:`poisson_nmf.kl_nmf` with the same priors (the exact mode: chains spend no
  warm-up travelling between modes);
- :func:`at_restarts`: each chain at the MAP of its own random start (to explore modes);
- :func:`from_values`: given (W, H) pairs.

Entries a MAP puts at zero (the boundary, for shapes a = 1) start at their conditional
posterior mean (:func:`fill_zeros`), and every start is jittered (:func:`jittered`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import Counts
from ..priors import GammaPriors
from .density import LogDensity

__all__ = [
    "MAP_RESTARTS",
    "ChainStarts",
    "at_map",
    "at_restarts",
    "chain_starts",
    "fill_zeros",
    "from_values",
    "jittered",
    "map_start",
]


@dataclass(frozen=True)
class ChainStarts:
    """Each chain's start (W, H), the alignment reference and its MAP objective."""

    pairs: list[tuple[np.ndarray, np.ndarray]]
    W_ref: np.ndarray
    H_ref: np.ndarray
    objective: float


def fill_zeros(
    counts: Counts, W: np.ndarray, H: np.ndarray, dens: LogDensity
) -> tuple[np.ndarray, np.ndarray]:
    """Replace entries at zero by their conditional posterior mean a / g'(0).

    With shape a = 1 the MAP puts many entries on the boundary w = 0, where log w is
    -inf. Near there the conditional posterior of w is about Gamma(a, g'(0)), g'(0) the
    derivative of the negative log posterior, so a / g'(0) is a typical value.
    """
    W = np.array(W, dtype=np.float64)
    H = np.array(H, dtype=np.float64)
    tiny = 1e-300
    x = dens.pack(np.maximum(W, tiny), np.maximum(H, tiny))
    g = np.empty(dens.n_dim)
    dens(x, g, with_prior=False)
    Wt, Ht = dens.unpack(x)
    # grad of the log-likelihood w.r.t. w is g_u / w; rate = b - that
    rate_w = dens.bw - g[: W.size].reshape(W.shape) / Wt
    rate_h = dens.bh - g[W.size :].reshape(H.shape) / Ht
    for A, rate, a in ((W, rate_w, dens.aw), (H, rate_h, dens.ah)):
        zero = A <= 0
        if zero.any():
            pos = A[A > 0]
            cap = float(np.median(pos)) if pos.size else 1.0
            fill = np.minimum(a / np.maximum(rate, 1e-12), cap)
            A[zero] = fill[zero]
    return W, H


#: MAP fits from random starts behind init="map": the best is the reference and the start
MAP_RESTARTS = 4


def map_start(
    counts: Counts,
    K: int,
    priors: GammaPriors,
    rng: np.random.Generator,
    map_kwargs: dict,
    restarts: int = 1,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Return W, H and the objective of :func:`poisson_nmf.kl_nmf` with these priors.

    The priors enter the fit only when both shapes are at least 1 (a proper MAP);
    otherwise the MAP of flat priors.
    """
    from ..optim.kl import kl_nmf

    kw = {"max_iter": 1000, "tol": 1e-6, "n_restarts": restarts, **map_kwargs}
    shape_ok = all(np.all(np.asarray(getattr(priors, n)) >= 1) for n in ("w_shape", "h_shape"))
    res = kl_nmf(counts, K, priors=priors if shape_ok else None, random_seed=rng, **kw)
    return res.W, res.H, float(res.objective)


def at_map(
    counts: Counts, K: int, priors: GammaPriors, rng: np.random.Generator, chains: int,
    map_kwargs: dict,
) -> ChainStarts:  # fmt: skip
    """Every chain at the best of :data:`MAP_RESTARTS` MAP fits (also the reference)."""
    W_ref, H_ref, obj = map_start(counts, K, priors, rng, map_kwargs, MAP_RESTARTS)
    return ChainStarts([(W_ref, H_ref)] * chains, W_ref, H_ref, obj)


def at_restarts(
    counts: Counts, K: int, priors: GammaPriors, rng: np.random.Generator, chains: int,
    map_kwargs: dict,
) -> ChainStarts:  # fmt: skip
    """Each chain at the MAP of its own random start; the reference is the best of them."""
    fits = [map_start(counts, K, priors, r, map_kwargs) for r in rng.spawn(chains)]
    best = int(np.argmin([f[2] for f in fits]))
    W_ref, H_ref, obj = fits[best]
    return ChainStarts([(f[0], f[1]) for f in fits], W_ref, H_ref, obj)


def from_values(init: Sequence[Any], chains: int, F: int, N: int, K: int) -> ChainStarts:
    """Start at given values: ``chains`` non-negative pairs (W (F, K), H (K, N)).

    The first pair is the reference (objective NaN).
    """
    if len(init) != chains:
        raise ValueError(f"init has {len(init)} (W, H) pairs but chains={chains}")
    pairs = []
    for i, p in enumerate(init):
        Wi, Hi = (np.asarray(a, dtype=np.float64) for a in p)
        if Wi.shape != (F, K) or Hi.shape != (K, N) or (Wi < 0).any() or (Hi < 0).any():
            raise ValueError(f"init[{i}] must be non-negative (W, H) of shapes {(F, K)}, {(K, N)}")
        pairs.append((Wi, Hi))
    return ChainStarts(pairs, pairs[0][0], pairs[0][1], float("nan"))


def chain_starts(
    init: Any, counts: Counts, K: int, priors: GammaPriors, rng: np.random.Generator,
    chains: int, map_kwargs: dict,
) -> ChainStarts:  # fmt: skip
    """Return the starts of ``init`` ("map", "restarts" or (W, H) pairs), by its strategy.

    Raises
    ------
    ValueError
        ``init`` is none of these, or its pairs have the wrong number, shapes or signs.
    """
    if isinstance(init, str) and init == "map":
        return at_map(counts, K, priors, rng, chains, map_kwargs)
    if isinstance(init, str) and init == "restarts":
        return at_restarts(counts, K, priors, rng, chains, map_kwargs)
    if isinstance(init, Sequence) and not isinstance(init, str):
        F, N = counts.shape
        return from_values(init, chains, F, N, K)
    raise ValueError(f"init must be 'map', 'restarts' or a sequence of (W, H), got {init!r}")


def jittered(
    starts: ChainStarts, counts: Counts, dens: LogDensity, jitter: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:  # fmt: skip
    """Each start as x = (log W, log H), zeros filled, with log-normal jitter of sd ``jitter``."""
    out = []
    for W0, H0 in starts.pairs:
        Wf, Hf = fill_zeros(counts, W0, H0, dens)
        x0 = dens.pack(Wf, Hf)
        out.append(x0 + jitter * rng.standard_normal(x0.size))
    return out
