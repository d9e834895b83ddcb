r"""Chains that go on with a stored step size and mass matrix: no new warm-up.

nutpie (0.16) takes no mass matrix from its caller: a chain's diagonal mass matrix
always starts from the gradient at its first point, :math:`\sigma_i^2 = 1/|g_i|`
(nuts-rs, ``update_diag_grad``), and a step size can be fixed
(``step_size_adapt_method="<float>"``) but a run needs at least one tuning step. The
coordinates are ours, though. To continue a chain whose tuned mass matrix has sds
:math:`\sigma` in the sampler's coordinates y, at the point y with gradient g, it is
run in :math:`z = y / t` with

.. math::  t_i = \sigma_i^2 |g_i|,

so that nutpie's first mass matrix in z, :math:`1 / |t_i g_i|`, is
:math:`\sigma_i^2 / t_i^2`: in y, exactly :math:`\sigma^2` again. One tuning step
that changes nothing follows (nutpie's mass-matrix windows set longer than the run,
the step size fixed to the tuned one, with nutpie's usual jitter), then the draws.
t is a fixed linear map (constant Jacobian), so the chain targets the same posterior
with the same kernel: step size, mass matrix and coordinate maps as tuned.

Every nutpie run of :func:`poisson_nmf.sample_posterior` keeps its draws this way:
the final warm-up stage tunes and stops (:data:`TUNE_KW`, one draw), its state
(:class:`ChainState`) is read, and the draws come from the chain continued; a
resumed run (``resume=``) continues the state stored with the fit (the
``sampler_state`` group, :func:`state_group`) without any warm-up.

Where :math:`|g_i|` is tiny the rescaled coordinate would be huge; :math:`|g_i|` is
floored at :data:`GRAD_FLOOR` times :math:`1/\sigma_i` (a point where one coordinate's
gradient is that far below its typical size): there the continued mass matrix differs
from the tuned one in that coordinate, a valid kernel still.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import xarray as xr

from .callbacks import _ud_logp, user_data
from .coordinates import Coords
from .density import LogDensity
from .nutpie_model import nutpie_model

__all__ = [
    "FIXED_KW",
    "check_state",
    "GRAD_FLOOR",
    "TUNE_KW",
    "ChainState",
    "continued_chains",
    "state_from_tree",
    "state_group",
    "stored_blocks",
    "tuned_state",
]

#: nutpie settings of a run that tunes and stops: its mass matrix is read back
TUNE_KW: dict[str, Any] = {"save_warmup": True, "store_mass_matrix": True}
#: windows longer than any run: nutpie's mass matrix is never updated
_NEVER = 2**62
#: nutpie settings of a continued chain (with its fixed step size)
FIXED_KW: dict[str, Any] = {"mass_matrix_switch_freq": _NEVER, "early_window_switch_freq": _NEVER}
#: |g_i| sigma_i below this is floored (see the module docstring)
GRAD_FLOOR = 1e-8


@dataclass(frozen=True)
class ChainState:
    """Where a chain is and the kernel it runs: enough to continue it.

    Attributes
    ----------
    x : numpy.ndarray, shape ((F + N) K,)
        The chain's point, (log W, log H).
    stds : numpy.ndarray, shape ((F + N) K,)
        nutpie's tuned mass matrix as sds in the sampler's coordinates y.
    step_size : float
        nutpie's tuned step size (before its per-draw jitter).
    """

    x: np.ndarray
    stds: np.ndarray
    step_size: float


def tuned_state(tree: Any) -> ChainState:
    """Return the state of a chain from nutpie's tree of a run with :data:`TUNE_KW`.

    The mass matrix is the last one nutpie stored while tuning (it stores one at each
    update); the step size the one it settled on; the point the run's last draw.
    """
    w = tree["warmup_sample_stats"]["mass_matrix_inv"].values[0]  # sds, despite the name
    rows = np.flatnonzero(~np.isnan(w).all(axis=1))
    if rows.size == 0:
        raise RuntimeError("nutpie stored no mass matrix while tuning")
    step = float(tree["sample_stats"]["step_size_bar"].values[0, -1])
    x = np.array(tree["posterior"]["x"].values[0, -1], dtype=np.float64)
    return ChainState(x=x, stds=np.array(w[rows[-1]], dtype=np.float64), step_size=step)


def continued_chains(
    dens: LogDensity, coords: Coords, states: list[ChainState], single: bool
) -> tuple[list[Any], list[np.ndarray], list[dict[str, Any]]]:
    """Return per chain the nutpie model, start and settings that continue ``states``.

    Each chain gets its own inner scale t (module docstring), so its own model; its
    start is the state's point in the new coordinates, and its settings fix the step
    size and keep nutpie's mass matrix as it starts (run them with ``tune=1``).
    """
    models, starts, kws = [], [], []
    for st in states:
        y = coords.to_y(st.x)
        ud, _keep = user_data(dens, coords, single)
        g = np.empty(y.size)
        _ud_logp(y, g, ud)
        t = st.stds**2 * np.maximum(np.abs(g), GRAD_FLOOR / st.stds)
        cont = replace(coords, inner=t)
        z = y / t
        models.append(nutpie_model(dens, z, cont, single))
        starts.append(z)
        kws.append({**FIXED_KW, "step_size_adapt_method": repr(float(st.step_size))})
    return models, starts, kws


def state_group(coords: Coords, states: list[ChainState]) -> xr.Dataset:
    """Return the ``sampler_state`` group of a fit: what :func:`state_from_tree` reads.

    Variables: ``position`` and ``mass_matrix_std`` (chain, parameter), ``step_size``
    (chain), and the coordinate maps ``ridge_beta`` (ridge), ``coordinate_scale``
    (parameter), ``long_directions`` (parameter, direction), ``long_direction_stretch``
    (direction).
    """
    return xr.Dataset(
        {
            "position": (("chain", "parameter"), np.stack([s.x for s in states])),
            "mass_matrix_std": (("chain", "parameter"), np.stack([s.stds for s in states])),
            "step_size": (("chain",), np.array([s.step_size for s in states])),
            "ridge_beta": (("ridge",), np.asarray(coords.beta, dtype=np.float64)),
            "coordinate_scale": (("parameter",), np.asarray(coords.scale, dtype=np.float64)),
            "long_directions": (("parameter", "direction"), np.asarray(coords.U, np.float64)),
            "long_direction_stretch": (("direction",), np.asarray(coords.c, np.float64)),
        },
        coords={"chain": np.arange(len(states))},
    )


def state_from_tree(tree: Any, F: int, N: int) -> tuple[Coords, list[ChainState]] | None:
    """Return the coordinates and chain states stored with a fit (None: none stored)."""
    if "sampler_state" not in tree.children:
        return None
    ds = tree["sampler_state"].to_dataset()
    coords = Coords(
        F, N,
        np.asarray(ds["ridge_beta"].values, dtype=np.float64),
        np.asarray(ds["coordinate_scale"].values, dtype=np.float64),
        np.ascontiguousarray(ds["long_directions"].values, dtype=np.float64),
        np.asarray(ds["long_direction_stretch"].values, dtype=np.float64),
    )  # fmt: skip
    states = [
        ChainState(
            x=np.asarray(ds["position"].values[c], dtype=np.float64),
            stds=np.asarray(ds["mass_matrix_std"].values[c], dtype=np.float64),
            step_size=float(ds["step_size"].values[c]),
        )
        for c in range(ds.sizes["chain"])
    ]
    return coords, states


def stored_blocks(tree: Any) -> list[np.ndarray]:
    """Return each chain's stored draws as x = (log W, log H), shape (draws, (F + N) K).

    The stored draws are normalised and aligned; aligning and normalising them again
    (as the stopping rule does) leaves them as they are.
    """
    W = np.asarray(tree["posterior"]["W"].values, dtype=np.float64)
    H = np.asarray(tree["posterior"]["H"].values, dtype=np.float64)
    C, D = W.shape[:2]
    return [np.log(np.concatenate([W[c].reshape(D, -1), H[c].reshape(D, -1)], axis=1))
            for c in range(C)]  # fmt: skip


def check_state(tree: Any, F: int, N: int, K: int) -> None:
    """Refuse a stored ``sampler_state`` that is invalid or not the stored chains' own.

    The state must be finite, with positive sds, step size and scales, of the fit's
    shape, and each chain's stored point must give the rate WH of its last stored draw
    (a tree sliced, thinned or edited after sampling does not).

    Raises
    ------
    ValueError
        Naming what is wrong.
    """
    ds = tree["sampler_state"].to_dataset()
    n = (F + N) * K
    C, D = tree["posterior"].sizes["chain"], tree["posterior"].sizes["draw"]
    shapes = {"position": (C, n), "mass_matrix_std": (C, n), "step_size": (C,),
              "ridge_beta": (K,), "coordinate_scale": (n,)}  # fmt: skip
    for name in (*shapes, "long_directions", "long_direction_stretch"):
        if name not in ds:
            raise ValueError(f"resume: the fit's sampler_state has no {name!r}")
    for name, shape in shapes.items():
        if ds[name].shape != shape:
            raise ValueError(f"resume: sampler_state {name!r} has shape {ds[name].shape}, "
                             f"expected {shape} for this fit")  # fmt: skip
    if ds["long_directions"].shape[0] != n or ds["long_direction_stretch"].ndim != 1:
        raise ValueError("resume: sampler_state's long directions do not fit this fit")
    for name in ds.data_vars:
        if not np.all(np.isfinite(ds[name].values)):
            raise ValueError(f"resume: sampler_state {name!r} is not finite")
    for name in ("mass_matrix_std", "step_size", "coordinate_scale"):
        if not np.all(ds[name].values > 0):
            raise ValueError(f"resume: sampler_state {name!r} must be positive")
    x = ds["position"].values
    W, H = np.exp(x[:, : F * K]).reshape(C, F, K), np.exp(x[:, F * K :]).reshape(C, K, N)
    Wd = np.asarray(tree["posterior"]["W"].values[:, D - 1], dtype=np.float64)
    Hd = np.asarray(tree["posterior"]["H"].values[:, D - 1], dtype=np.float64)
    for c in range(C):
        # normalising and aligning a draw leaves WH as it is (to rounding)
        if not np.allclose(W[c] @ H[c], Wd[c] @ Hd[c], rtol=1e-6, atol=1e-12):
            raise ValueError(
                f"resume: chain {c}'s stored state is not where its last stored draw is "
                "(was the fit sliced, thinned or edited?); resume needs the fit as "
                "sample_posterior returned it (save_fit / load_fit keep it)"
            )
