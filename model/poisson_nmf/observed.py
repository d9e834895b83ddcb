"""The ``observed_data`` group of a fit: V in a layout xarray and netCDF can hold.

Two layouts, chosen from the input:

``"grid"`` (dense input, and sparse input of at most :data:`GRID_MAX_ENTRIES` cells,
with no missing entries)
    ``V`` on ``("row", "column")``. The pointwise groups of such fits are on the same
    grid, so ArviZ's own functions (``plot_ppc_dist``, ``loo_pit``) pair them with
    ``observed_data``. (Asked for explicitly with a mask: a boolean ``mask`` on the same
    dims, ``True`` = missing.)

``"entries"`` (larger sparse input, and any input with missing entries)
    ``V`` on ``("entry",)`` holds the listed entries, with the labels of their row and
    column as coordinates ``row`` and ``column`` on ``entry``: every observed
    **non-zero** count, and, when the fit has pointwise groups on an ``entry`` dim
    (every observed entry of a masked fit; every non-zero and a weighted subsample of
    zeros of a large sparse one), exactly their entries in their order, so that
    ``observed_data`` pairs with ``log_likelihood`` and ``posterior_predictive`` entry
    by entry. Masked entries are listed on a dimension
    ``missing`` (coordinates ``missing_row`` and ``missing_column``). Every entry of the
    grid that is not listed is an **observed zero**; ``attrs["shape"]`` is ``[F, N]``
    and ``attrs["layout"] = "entries"`` says so. Storage is O(nnz), never F x N, so a
    20,000 x 5,000 table at 2 % fill stores 2 M values instead of 100 M.

Counts are stored as int32 when every count fits, else int64 (``as_counts`` refuses
counts past int64's range), so no count is rounded or wrapped.

Readers never index ``observed_data["V"]`` by position: :func:`observed_counts` rebuilds
the :class:`~poisson_nmf.data.Counts` of either layout, and :func:`observed_values_at`
gives V at listed (row, column) labels, zeros included.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from .data import Counts

__all__ = [
    "GRID_MAX_ENTRIES",
    "observed_counts",
    "observed_group",
    "observed_layout",
    "observed_values_at",
    "same_counts",
]

Layout = Literal["grid", "entries"]

#: sparse input with more cells than this is stored on an ``entry`` dim (the threshold
#: above which the pointwise groups of a sparse fit leave the grid too)
GRID_MAX_ENTRIES = 200_000


def _count_dtype(values: np.ndarray) -> type[np.signedinteger]:
    big = values.size and float(np.max(values)) > np.iinfo(np.int32).max
    return np.int64 if big else np.int32


def observed_group(
    counts: Counts,
    layout: Layout | Literal["auto"] = "auto",
    entries: tuple[np.ndarray, np.ndarray] | None = None,
) -> xr.Dataset:
    """Build the ``observed_data`` group for ``counts``.

    Parameters
    ----------
    counts : Counts
        Validated counts, shape (F, N), from :func:`poisson_nmf.as_counts`.
    layout : {"auto", "grid", "entries"}
        ``"auto"`` (default): ``"entries"`` when ``entries`` is given, when some entries
        are missing (then every observed entry, in row-major order, as the pointwise
        groups of a masked fit list them) or when the input is sparse with more than
        :data:`GRID_MAX_ENTRIES` cells; ``"grid"`` otherwise.
    entries : tuple of two int arrays, shape (n,) each, optional
        Rows and columns (positions) of the entries to list, in their order: those of
        the pointwise groups. They must include every observed non-zero.

    Returns
    -------
    xarray.Dataset
        See the module docstring for the two layouts; ``attrs["layout"]`` names the one
        used.

    Raises
    ------
    ValueError
        If ``layout`` is not one of the three names, or ``entries`` leave out an
        observed non-zero.
    """
    F, N = counts.shape
    if layout == "auto":
        if entries is None and counts.has_mask:  # the pointwise groups' entries then
            rows, cols = np.nonzero(counts.observed())
            entries = (rows, cols)
        big = counts.is_sparse and F * N > GRID_MAX_ENTRIES
        layout = "entries" if entries is not None or big else "grid"
    if layout not in ("grid", "entries"):
        raise ValueError(f"layout must be 'auto', 'grid' or 'entries', got {layout!r}")
    dtype = _count_dtype(counts.nz_values)
    if layout == "grid":
        V = np.zeros((F, N), dtype=dtype)
        V[counts.nz_rows, counts.nz_cols] = counts.nz_values
        ds = xr.Dataset(
            {"V": (("row", "column"), V)}, coords={"row": counts.row, "column": counts.column}
        )
        if counts.has_mask:
            ds["mask"] = (("row", "column"), ~counts.observed())
        ds.attrs["layout"] = layout
        return ds
    if entries is None:
        order = np.lexsort((counts.nz_cols, counts.nz_rows))
        r, c, vals = counts.nz_rows[order], counts.nz_cols[order], counts.nz_values[order]
    else:
        r, c = (np.asarray(a, dtype=np.int64) for a in entries)
        vals = _values_at(counts, r, c)
        if np.count_nonzero(vals) != counts.nz_values.size:
            raise ValueError("entries must include every observed non-zero count")
    ds = xr.Dataset(
        {"V": (("entry",), vals.astype(dtype))},
        coords={
            "entry": np.arange(r.size),
            "row": ("entry", counts.row[r]),
            "column": ("entry", counts.column[c]),
        },
    )
    if counts.has_mask:
        ds = ds.assign_coords(
            missing_row=("missing", counts.row[counts.missing_rows]),
            missing_column=("missing", counts.column[counts.missing_cols]),
        )
    ds.attrs["shape"] = [F, N]
    ds.attrs["zeros"] = (
        "V lists the observed non-zero counts (and, where the fit has pointwise groups on "
        "an entry dim, their zeros too); every entry of the row x column grid that is not "
        "listed and not under 'missing' is an observed zero"
    )
    ds.attrs["layout"] = layout
    return ds


def _values_at(counts: Counts, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """V at positions (r, c) as float64 (masked entries read 0: placeholders)."""
    if counts.is_sparse:
        return np.asarray(counts.values[r, c], dtype=np.float64).ravel()
    return np.asarray(counts.values, dtype=np.float64)[r, c]


def observed_layout(obs: xr.Dataset | xr.DataTree) -> Layout:
    """``"grid"`` or ``"entries"``: the layout of an ``observed_data`` group."""
    ds = obs.to_dataset() if isinstance(obs, xr.DataTree) else obs
    return "entries" if "entry" in ds["V"].dims else "grid"


def _labels(tree: xr.DataTree, dim: str) -> np.ndarray:
    for group in ("posterior", "reference", "observed_data"):
        if group in tree.children and dim in tree[group].dims:
            return np.asarray(tree[group][dim].values)
    raise ValueError(f"the tree has no '{dim}' coordinate to lay out its observed data on")


def _positions(labels: np.ndarray, wanted: Any, dim: str) -> np.ndarray:
    idx = pd.Index(labels).get_indexer(np.asarray(wanted))
    if (idx < 0).any():
        raise ValueError(f"observed_data names a {dim} label the fit does not have")
    return idx.astype(np.int64)


def observed_counts(tree: xr.DataTree) -> Counts:
    """Rebuild the counts of a fit's ``observed_data`` group, in either layout.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit (``sample_posterior``, ``load_fit``) with an ``observed_data`` group.

    Returns
    -------
    Counts
        Sparse (CSR) for the ``"entries"`` layout, dense for ``"grid"``, with the
        mask of missing entries.

    Raises
    ------
    ValueError
        If the tree has no ``observed_data`` group.
    """
    if "observed_data" not in tree.children:
        raise ValueError("the tree has no observed_data group")
    obs = tree["observed_data"].to_dataset()
    row, column = _labels(tree, "row"), _labels(tree, "column")
    F, N = row.size, column.size
    empty = np.zeros(0, dtype=np.int64)
    if observed_layout(obs) == "grid":
        V = np.asarray(obs["V"].values, dtype=np.float64)
        miss = np.asarray(obs["mask"].values, dtype=bool) if "mask" in obs else None
        seen = np.ones(V.shape, bool) if miss is None else ~miss
        nz_r, nz_c = np.nonzero((V != 0) & seen)
        mr, mc = (empty, empty) if miss is None else np.nonzero(miss)
        values: Any = np.where(seen, V, 0.0)
        vals = values[nz_r, nz_c]
    else:
        listed = np.asarray(obs["V"].values) != 0  # listed zeros are observed zeros
        nz_r = _positions(row, obs["row"].values[listed], "row")
        nz_c = _positions(column, obs["column"].values[listed], "column")
        if "missing" in obs.dims:
            mr = _positions(row, obs["missing_row"].values, "row")
            mc = _positions(column, obs["missing_column"].values, "column")
        else:
            mr, mc = empty, empty
        vals = np.asarray(obs["V"].values, dtype=np.float64)[listed]
        order = np.lexsort((nz_c, nz_r))  # row-major, as as_counts lists them
        nz_r, nz_c, vals = nz_r[order], nz_c[order], vals[order]
        values = sp.csr_array((vals, (nz_r, nz_c)), shape=(F, N))
    return Counts(
        values=values,
        nz_rows=np.asarray(nz_r, dtype=np.int64),
        nz_cols=np.asarray(nz_c, dtype=np.int64),
        nz_values=np.asarray(vals, dtype=np.float64),
        missing_rows=np.asarray(mr, dtype=np.int64),
        missing_cols=np.asarray(mc, dtype=np.int64),
        row=row,
        column=column,
    )


def observed_values_at(tree: xr.DataTree, row: Any, column: Any) -> np.ndarray:
    """V at the entries labelled ``(row[i], column[i])``, zeros included, as float64.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit with an ``observed_data`` group (either layout).
    row, column : array_like, shape (n,)
        Labels of the entries (as on the ``entry`` dim of a pointwise group).

    Returns
    -------
    numpy.ndarray, shape (n,)
        The observed counts there; a masked entry reads NaN (never a zero).
    """
    counts = observed_counts(tree)
    ri = _positions(counts.row, row, "row")
    ci = _positions(counts.column, column, "column")
    out = _values_at(counts, ri, ci)
    if counts.has_mask:
        F, N = counts.shape
        masked = np.isin(
            np.ravel_multi_index((ri, ci), (F, N)),
            np.ravel_multi_index((counts.missing_rows, counts.missing_cols), (F, N)),
        )
        out = np.where(masked, np.nan, out)
    return out


def _entries(counts: Counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    F, N = counts.shape
    nz = np.ravel_multi_index((counts.nz_rows, counts.nz_cols), (F, N))
    order = np.argsort(nz)
    miss = np.sort(np.ravel_multi_index((counts.missing_rows, counts.missing_cols), (F, N)))
    return nz[order], counts.nz_values[order], miss


def same_counts(a: Counts, b: Counts) -> bool:
    """Whether two counts hold the same observed values and the same missing entries.

    Compared entry by entry from the non-zeros (O(nnz), never F x N); labels are not
    compared (a fit's labels come from its own coordinates).
    """
    if a.shape != b.shape:
        return False
    return all(np.array_equal(x, y) for x, y in zip(_entries(a), _entries(b), strict=True))
