"""Small DataTrees built with NumPy (no sampling), for fast tests of the checks.

Independent draws stand in for well-mixed chains: R-hat near 1, ESS near the number of
draws, one mode, E-BFMI of i.i.d. normal energies near 2.
"""

from __future__ import annotations

import numpy as np
import xarray as xr


def hand_tree(
    C: int = 4, D: int = 200, F: int = 3, N: int = 4, K: int = 2, seed: int = 0, pointwise=False
) -> xr.DataTree:
    """A fit of an F x N matrix with K components: posterior, sample_stats, observed_data.

    With ``pointwise``, a ``posterior_predictive`` group of Poisson(WH) draws at every
    draw (so the posterior predictive checks run); no ``log_likelihood`` group.
    """
    rng = np.random.default_rng(seed)
    W = rng.gamma(200.0, 1 / 200.0, (C, D, F, K))  # Gamma(shape, scale): mean 1, sd 0.07
    H = rng.gamma(200.0, 10 / 200.0, (C, D, K, N))  # mean 10
    coords = {"row": np.arange(F), "column": np.arange(N), "component": np.arange(K)}
    post = xr.Dataset(
        {
            "W": (("chain", "draw", "row", "component"), W),
            "H": (("chain", "draw", "component", "column"), H),
        },
        coords=coords,
    )
    ss = xr.Dataset(
        {
            "diverging": (("chain", "draw"), np.zeros((C, D), dtype=bool)),
            "maxdepth_reached": (("chain", "draw"), np.zeros((C, D), dtype=bool)),
            "energy": (("chain", "draw"), rng.normal(size=(C, D))),
            "log_likelihood": (("chain", "draw"), rng.normal(-50.0, 1.0, (C, D))),
        }
    )
    lam = np.einsum("cdfk,cdkn->cdfn", W, H)
    V = rng.poisson(lam.mean((0, 1)))
    groups = {
        "posterior": post,
        "sample_stats": ss,
        "observed_data": xr.Dataset({"V": (("row", "column"), V)}, coords=coords),
    }
    if pointwise:
        pp = rng.poisson(lam)
        groups["posterior_predictive"] = xr.Dataset(
            {"V": (("chain", "draw", "row", "column"), pp)}, coords=coords
        )
    return xr.DataTree.from_dict(groups)


def with_values(tree: xr.DataTree, group: str, var: str, values) -> xr.DataTree:
    """A copy of ``tree`` with ``group/var`` replaced by ``values`` (same dims)."""
    t = tree.copy()
    ds = t[group].to_dataset()
    ds[var] = (ds[var].dims, values)
    t[group] = xr.DataTree(ds)
    return t
