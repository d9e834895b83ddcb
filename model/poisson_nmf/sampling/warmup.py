"""The warm-up: its schedule, and the long directions learned in its first stage.

Beyond the scale ridges (:mod:`poisson_nmf.sampling.coordinates`) the posterior has a
few dozen long, slowly mixing directions (the slowest is typically an exchange of a few
entries between two components, a shear W -> W M, H -> M^-1 H). With ``tune >=``
:data:`LEARN_MIN_TUNE` the warm-up runs in two stages (:func:`warmup_schedule`): a
first run of ``tune // 4`` tuning steps and ``tune // 2`` draws per chain, from which
:func:`learn_long_directions` finds the long directions (at most :data:`MAX_RANK`, each
checked on held-out draws, or within the span of the K (K - 1) shears when no generic
one proves real); a fixed map M = I + U diag(c) U^T shrinks them to unit variance, and
the rest of the tuning runs in those coordinates (nutpie adapts its own diagonal mass
matrix again). The map is fixed before any kept draw, so the posterior is exactly the
same. Half the tuning as draws for learning: a larger sample of the long directions
for the same number of gradients (the comparison is in benchmarks/README.md's log).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .coordinates import Coords
from .density import LogDensity

__all__ = [
    "LEARN_MIN_TUNE",
    "MAX_RANK",
    "MIN_VARIANCE",
    "Stage",
    "learn_long_directions",
    "shear_directions",
    "top_right_singular",
    "warmup_schedule",
]

#: the smallest ``tune`` split into two stages (below it, one plain warm-up)
LEARN_MIN_TUNE = 300
_STAGE1 = (4, 2)  # the first stage's divisors of tune: tuning steps, draws
#: most long directions learned
MAX_RANK = 32
#: held-out variance (in units of a single coordinate's) a learned direction must reach
MIN_VARIANCE = 2.0


@dataclass(frozen=True)
class Stage:
    """One run of the chains in the warm-up.

    Attributes
    ----------
    tune : int
        Tuning steps per chain (step size and mass matrix adapt).
    draws : int
        Draws per chain after them that the stage returns (0 for the last stage, after
        which the kept draws follow).
    learns : bool
        Whether the stage's draws teach the long directions for the stages after it.
    """

    tune: int
    draws: int
    learns: bool


def warmup_schedule(tune: int) -> list[Stage]:
    """Return the warm-up stages for ``tune`` tuning iterations per chain in all.

    ``tune < LEARN_MIN_TUNE``: one stage, ``tune`` tuning steps. Otherwise a learning
    stage of ``tune // 4`` tuning steps and ``tune // 2`` draws, then the rest of the
    tuning (``tune - tune // 4 - tune // 2``) in the learned coordinates. The
    iterations of all stages add up to ``tune``.

    Raises
    ------
    ValueError
        ``tune`` is negative.
    """
    if tune < 0:
        raise ValueError(f"tune must be >= 0, got {tune}")
    if tune < LEARN_MIN_TUNE:
        return [Stage(tune=tune, draws=0, learns=False)]
    t1, d1 = tune // _STAGE1[0], tune // _STAGE1[1]
    return [
        Stage(tune=t1, draws=d1, learns=True),
        Stage(tune=tune - t1 - d1, draws=0, learns=False),
    ]


def top_right_singular(A: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the k largest squared singular values of A (m, n) and right vectors (k, n).

    They come from the eigen-decomposition of the smaller Gram matrix.

    Only the k largest pairs are computed, far cheaper than a full ``np.linalg.svd``
    with thousands of draws and coordinates.
    """
    import scipy.linalg

    m, n = A.shape
    k = min(k, m, n)
    if k == 0:
        return np.zeros(0), np.zeros((0, n))
    p = min(m, n)
    G = A @ A.T if m <= n else A.T @ A
    ev, vec = scipy.linalg.eigh(G, subset_by_index=(p - k, p - 1))
    ev, vec = np.maximum(ev[::-1], 0.0), vec[:, ::-1]
    if m > n:
        return ev, np.ascontiguousarray(vec.T)
    s = np.sqrt(ev)
    return ev, (vec.T @ A) / np.where(s > 0, s, 1.0)[:, None]


def learn_long_directions(
    coords: Coords, ys: list[np.ndarray], candidates: np.ndarray | None = None
) -> Coords:
    """Coordinates in which the longest directions of warm-up draws are unit length.

    ``ys``: per chain, warm-up draws (draws, n) in ``coords``; ``candidates``: (n, p)
    directions in x where long ones are expected (:func:`shear_directions`). Each
    chain is centred (chains may sit in different modes) and each coordinate scaled to
    unit sd; then, on that scale:

    - **Principal directions, as many as prove real on held-out draws.** The draws are
      split in two (alternate chains; the two halves of a lone chain), the principal
      directions of one half are measured on the other, and those with held-out
      variance at least ``MIN_VARIANCE`` times a single coordinate's count. The
      directions themselves come from all draws, their variance l from the sample one
      lam by the spiked-covariance relation lam = l (1 + gamma / (l - 1)),
      gamma = n / m (m draws).
    - **If none proves real**, the eigen-directions of the candidates' span (p small
      against m, so its sample covariance is accurate) with variance at least
      ``MIN_VARIANCE``. With far more coordinates than draws the sample principal
      directions are mostly noise, while the shears' span is estimated well; when a
      generic direction does prove real, it is used alone.

    At most ``MAX_RANK`` directions, each shrunk to unit variance.

    Directions of the whole of (log W, log H), since W moves with H (alternatives
    tried: benchmarks/README.md's experiments log).
    """
    # in float32: the Gram products over the draws are the cost here, and the
    # directions only precondition
    sizes = np.cumsum([0] + [y.shape[0] for y in ys])
    m, n = int(sizes[-1]), ys[0].shape[1]
    Z = np.empty((m, n), dtype=np.float32)
    for y, lo, hi in zip(ys, sizes[:-1], sizes[1:], strict=True):
        Z[lo:hi] = y - y.mean(axis=0)
    dof = m - len(ys)
    sd = np.sqrt(np.einsum("ij,ij->j", Z, Z, dtype=np.float64) / max(m - 1, 1))
    sd = np.where(sd > 0, sd, 1.0)
    Z /= sd.astype(np.float32)
    blocks = np.split(Z, sizes[1:-1])
    if len(blocks) >= 2:
        a, b = np.concatenate(blocks[0::2]), np.concatenate(blocks[1::2])
    else:
        a, b = Z[: m // 2], Z[m // 2 :]
    Va = top_right_singular(a, 4 * MAX_RANK)[1]
    held_out = ((b @ Va.T) ** 2).mean(axis=0)
    rank = min(int((held_out >= MIN_VARIANCE).sum()), MAX_RANK)
    if rank > 0 or candidates is None or candidates.shape[1] == 0:
        sv2, Vt = top_right_singular(Z, rank)
        lam = sv2.astype(np.float64) / dof
        gamma = n / m
        q = lam + 1.0 - gamma
        ell = (q + np.sqrt(np.maximum(q * q - 4.0 * lam, 0.0))) / 2.0
        U = Vt[:rank].T.astype(np.float64)
    else:
        D = coords.to_y(np.ascontiguousarray(candidates.T)) / sd  # (p, n)
        Q = np.linalg.qr(D.T)[0]
        P = (Z @ Q.astype(np.float32)).astype(np.float64)
        ell_c, V = np.linalg.eigh(P.T @ P / dof)
        order = np.argsort(-ell_c)
        sel = order[ell_c[order] >= MIN_VARIANCE][:MAX_RANK]
        U, ell = Q @ V[:, sel], ell_c[sel]
    return replace(
        coords,
        scale=coords.scale * sd,
        U=np.ascontiguousarray(U),
        c=np.sqrt(np.maximum(ell, 1.0)) - 1.0,
    )


def shear_directions(dens: LogDensity, x: np.ndarray, cap: float = 3.0) -> np.ndarray:
    """Return the K (K - 1) near-symmetries of NMF at x, as directions in (log W, log H).

    WH is unchanged by W -> W M, H -> M^-1 H for any invertible M; scalings (diagonal
    M) are exact symmetries (the ridges), and the shears M = I + t E_ab stay one until
    an entry reaches zero. At first order in t they move log W[:, b] by
    W[:, a] / W[:, b] and log H[a, :] by -H[b, :] / H[a, :] (capped at ``cap``: the
    ratio is huge for entries near zero, where the first order means little).
    Returns an array (n, K (K - 1)).
    """
    F, N, K = dens.F, dens.N, dens.K
    nW = F * K
    W, H = dens.unpack(x)
    out = []
    for a in range(K):
        for b in range(K):
            if a == b:
                continue
            d = np.zeros(dens.n_dim)
            d[np.arange(F) * K + b] = np.minimum(W[:, a] / W[:, b], cap)
            d[nW + a * N + np.arange(N)] = -np.minimum(H[b] / H[a], cap)
            out.append(d)
    return np.array(out).T if out else np.zeros((dens.n_dim, 0))
