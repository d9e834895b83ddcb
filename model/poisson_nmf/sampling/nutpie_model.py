"""The nutpie model of the sampler: the only module that touches nutpie's internals.

nutpie's ``CompiledPyMCModel`` is built directly from the Numba C callbacks
(:mod:`poisson_nmf.sampling.callbacks`) rather than from a PyMC model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .cache import load_callbacks
from .callbacks import user_data
from .coordinates import Coords
from .density import LogDensity

__all__ = ["nutpie_model"]


def nutpie_model(dens: LogDensity, y0: np.ndarray, coords: Coords, single: bool = False) -> Any:
    """Build a nutpie model whose log density is a Numba C callback (no Python, no GIL).

    The sampler's coordinates are y (:class:`Coords`; the scale, each coordinate's
    conditional sd at the start, spares nutpie's first draws their tiny steps before
    its own mass matrix adapts); its expand function returns x, so the trace holds
    (log W, log H). The callbacks are compiled once; the data reach them as addresses
    in ``user_data``, and the arrays behind them are kept alive by the returned model.
    ``single``: the dense kernel in float32 where the counts allow it (see
    :func:`sample_posterior`'s ``precision``).
    """
    from nutpie.compile_pymc import CompiledPyMCModel

    n_dim = dens.n_dim
    ud, keep = user_data(dens, coords, single)
    logp_fn, expand_fn = load_callbacks()
    return CompiledPyMCModel(
        dims={"x": ("x_dim_0",)},
        _n_dim=n_dim,
        _coords={"x_dim_0": np.arange(n_dim)},
        _shapes={"x": (n_dim,)},
        compiled_logp_func=logp_fn,
        compiled_expand_func=expand_fn,
        initial_point_func=lambda seed: y0.copy(),
        shared_data=keep,  # keeps the arrays alive as long as the model
        shared_var_keys={},
        user_data=ud,
        n_expanded=n_dim,
        shape_info=(["x"], [slice(0, n_dim)], [(n_dim,)]),
        logp_func=None,
        expand_func=None,
    )
