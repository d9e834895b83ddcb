"""Bundled real data sets (no download at run time)."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["load_digits"]


def load_digits() -> xr.DataArray:
    """Scikit-learn's bundled 8x8 handwritten digits as a count matrix.

    Each row is one image of 64 pixels with integer intensities 0..16, the data Lee &
    Seung-style parts-based NMF is usually shown on.

    Returns
    -------
    xarray.DataArray
        int64 counts, shape (1797, 64), dims ``("row", "column")``. Coordinates:
        ``row`` 0..1796, ``column`` 0..63 (pixel ``8 * y + x``), and on ``row`` the
        non-index coordinate ``digit`` (the label 0..9). Three pixel columns are zero in
        every image; drop them with ``V[:, V.sum("row") > 0]`` where that matters.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    d = _sk_load_digits()
    X = np.asarray(d.data).astype(np.int64)
    return xr.DataArray(
        X,
        dims=("row", "column"),
        coords={
            "row": np.arange(X.shape[0]),
            "column": np.arange(X.shape[1]),
            "digit": ("row", np.asarray(d.target, dtype=np.int64)),
        },
        name="digits",
        attrs={
            "description": "UCI optical recognition of handwritten digits, 8x8, via scikit-learn",
            "image_shape": [8, 8],
        },
    )
