"""Counts in: one entry point that validates a count matrix once.

:func:`as_counts` turns a NumPy array, a pandas DataFrame, a SciPy sparse matrix or
an xarray DataArray into a :class:`Counts`: float64 values (integer-valued,
non-negative, finite), named dims ``("row", "column")`` with the input's coordinates,
the observed non-zeros as ``(row, column, value)`` triplets, and the optional mask of
missing entries. Every later layer takes a :class:`Counts` (or anything
:func:`as_counts` accepts) and never validates again.

Conventions
-----------
- ``mask`` marks **missing** entries: ``True`` means "not observed, leave out of the
  likelihood". Missing entries may hold NaN in the input; they are stored as 0.
- Sparse input stays sparse: nothing here densifies an F x N matrix.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from .exceptions import ZeroRowsColumnsWarning

__all__ = ["Counts", "ZeroRowsColumnsWarning", "as_counts", "check_n_components"]


DIMS = ("row", "column")
# float64 holds every integer up to 2**53 exactly; int64 past 2**63 - 1 wraps.
_INT64_MAX = float(np.iinfo(np.int64).max)


@dataclass(frozen=True, slots=True)
class Counts:
    """A validated count matrix V (F x N) with an optional mask of missing entries.

    Attributes
    ----------
    values : numpy.ndarray or scipy.sparse.csr_array, shape (F, N), float64
        The counts; missing entries are stored as 0.
    nz_rows, nz_cols : numpy.ndarray, shape (nnz,), int64
        Row and column indices of the observed non-zero counts.
    nz_values : numpy.ndarray, shape (nnz,), float64
        The observed non-zero counts.
    missing_rows, missing_cols : numpy.ndarray, shape (n_missing,), int64
        Row and column indices of the masked (missing) entries; empty when no mask.
    row, column : numpy.ndarray
        Coordinates of the rows and columns, taken from the input where it had them.
    """

    values: Any
    nz_rows: np.ndarray
    nz_cols: np.ndarray
    nz_values: np.ndarray
    missing_rows: np.ndarray
    missing_cols: np.ndarray
    row: np.ndarray
    column: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(F, N)``."""
        return (int(self.values.shape[0]), int(self.values.shape[1]))

    @property
    def is_sparse(self) -> bool:
        """Whether the values are held as a SciPy sparse matrix."""
        return bool(sp.issparse(self.values))

    @property
    def has_mask(self) -> bool:
        """Whether any entry is masked as missing."""
        return self.missing_rows.size > 0

    @property
    def n_observed(self) -> int:
        """Number of observed (not masked) entries."""
        return self.shape[0] * self.shape[1] - int(self.missing_rows.size)

    @property
    def total(self) -> float:
        """Sum of the observed counts."""
        return float(self.nz_values.sum())

    def observed(self) -> np.ndarray:
        """Dense boolean matrix, shape (F, N): ``True`` where the entry is observed."""
        obs = np.ones(self.shape, dtype=bool)
        obs[self.missing_rows, self.missing_cols] = False
        return obs

    def dense(self) -> np.ndarray:
        """Dense float64 copy of V, shape (F, N), missing entries as 0."""
        if self.is_sparse:
            return np.asarray(self.values.toarray(), dtype=np.float64)
        return np.array(self.values, dtype=np.float64)

    def to_dataarray(self) -> xr.DataArray:
        """V as an int64 ``xr.DataArray`` with dims ``("row", "column")`` (densifies)."""
        return xr.DataArray(
            self.dense().astype(np.int64),
            dims=DIMS,
            coords={"row": self.row, "column": self.column},
            name="V",
        )


def check_n_components(n_components: Any, counts: Counts | None = None) -> int:
    """Validate the number of components K and return it as an ``int``.

    Parameters
    ----------
    n_components : int
        Number of components, a positive integer (``numpy`` integers accepted).
    counts : Counts, optional
        Not used to bound K: K larger than ``min(F, N)`` is allowed (the model is then
        over-complete, but well defined).

    Raises
    ------
    TypeError
        If ``n_components`` is not an integer (``1.5``, ``"2"``, ``True``).
    ValueError
        If ``n_components < 1``.
    """
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral):
        raise TypeError(
            f"n_components must be a positive integer, got {n_components!r} "
            f"({type(n_components).__name__}); pass e.g. n_components=10"
        )
    k = int(n_components)
    if k < 1:
        raise ValueError(f"n_components must be a positive integer, got {k}; pass K >= 1")
    return k


def _coords_of(V: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    if isinstance(V, pd.DataFrame):
        return np.asarray(V.index), np.asarray(V.columns)
    if isinstance(V, xr.DataArray):
        rows = np.asarray(V[V.dims[0]].values) if V.dims[0] in V.coords else None
        cols = np.asarray(V[V.dims[1]].values) if V.dims[1] in V.coords else None
        return rows, cols
    return None, None


def _check_dtype(dtype: np.dtype, name: str) -> None:
    if dtype == np.bool_:
        raise TypeError(
            f"{name} has boolean dtype; counts must be integers (cast with .astype(int) "
            "if True/False really are counts of 1 and 0)"
        )
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise TypeError(
            f"{name} has dtype {dtype}; counts must be a numeric array of non-negative "
            "integers (convert strings or objects with .astype(int) first)"
        )


def _check_values(x: np.ndarray, name: str, where: Any, integer: bool = True) -> None:
    """Check a 1-D or 2-D numeric array of counts; ``where`` maps flat index to (i, j)."""
    if x.size == 0:
        return
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            i = int(np.flatnonzero(bad.ravel())[0])
            raise ValueError(
                f"{name} contains NaN or inf (first at {where(i)}); mark missing entries "
                "with mask= (True = missing) or remove them"
            )
    neg = x < 0
    if neg.any():
        i = int(np.flatnonzero(neg.ravel())[0])
        raise ValueError(
            f"{name} contains negative values (first {x.ravel()[i].item()!r} at {where(i)}); "
            "counts must be non-negative"
        )
    if np.issubdtype(x.dtype, np.unsignedinteger) and x.dtype.itemsize >= 8:
        if (x > np.iinfo(np.int64).max).any():
            raise ValueError(f"{name} has values past the int64 range; counts must fit in int64")
    if np.issubdtype(x.dtype, np.floating):
        big = x > _INT64_MAX
        if big.any():
            i = int(np.flatnonzero(big.ravel())[0])
            raise ValueError(
                f"{name} has values past the int64 range (first {x.ravel()[i].item()!r} at "
                f"{where(i)}); counts must fit in int64"
            )
        frac = x != np.round(x)
        if integer and frac.any():
            i = int(np.flatnonzero(frac.ravel())[0])
            raise ValueError(
                f"{name} contains non-integer values (first {x.ravel()[i].item()!r} at "
                f"{where(i)}); counts must be whole numbers (2.0 is fine, 2.5 is not)"
            )


def _as_missing(mask: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    coo: Any
    if sp.issparse(mask):
        if mask.shape != shape:
            raise ValueError(
                f"mask has shape {mask.shape} but V has shape {shape}; pass a boolean "
                "mask of the same shape as V (True = missing)"
            )
        coo = sp.coo_array(mask)
        keep = coo.data.astype(bool)
        return coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64)
    m = np.asarray(mask.values if isinstance(mask, pd.DataFrame | xr.DataArray) else mask)
    if m.shape != shape:
        raise ValueError(
            f"mask has shape {m.shape} but V has shape {shape}; pass a boolean mask of "
            "the same shape as V (True = missing)"
        )
    if m.dtype != np.bool_:
        if not np.issubdtype(m.dtype, np.number) or not np.isin(m, (0, 1)).all():
            raise TypeError(f"mask must be boolean (True = missing), got dtype {m.dtype}")
        m = m.astype(bool)
    r, c = np.nonzero(m)
    return r.astype(np.int64), c.astype(np.int64)


def as_counts(
    V: Any,
    *,
    mask: Any = None,
    name: str = "V",
    integer: bool = True,
    allow_all_zero: bool = False,
) -> Counts:
    """Validate a count matrix once and return it as :class:`Counts`.

    Parameters
    ----------
    V : array_like, pandas.DataFrame, scipy.sparse matrix, xarray.DataArray or Counts
        Counts, shape (F, N), dims ``("row", "column")``: non-negative integers (integer
        or integer-valued float dtype). A ``Counts`` is returned as it is when no new
        mask is given.
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks a **missing** entry, left out of the likelihood; such entries may
        be NaN in ``V``.
    name : str
        How the argument is called in error messages.
    integer : bool
        Require whole numbers (counts). ``False`` accepts any finite non-negative values
        (the generalised KL divergence is defined for them; the Poisson model is not).
    allow_all_zero : bool
        Accept a matrix without a non-zero (new samples whose loadings are wanted).

    Returns
    -------
    Counts
        Validated counts with coordinates from the input's index/columns or coords.

    Raises
    ------
    TypeError
        For bool, object, string or other non-numeric dtypes, or a non-boolean mask.
    ValueError
        For input that is not 2-D, empty, negative, non-integer, NaN/inf outside the
        mask, past the int64 range, all zero, or a mask of the wrong shape.
    """
    if isinstance(V, Counts):
        if mask is None:
            return V
        V = V.values
    row, col = _coords_of(V)
    values: Any
    coo: Any
    if sp.issparse(V):
        if V.ndim != 2:
            raise ValueError(f"{name} must be 2-D (rows x columns), got {V.ndim}-D")
        _check_dtype(V.dtype, name)
        coo = sp.coo_array(V)
        coo.sum_duplicates()
        shape = (int(coo.shape[0]), int(coo.shape[1]))
        missing = _as_missing(mask, shape) if mask is not None else None
        rows_, cols_ = coo.row.astype(np.int64), coo.col.astype(np.int64)
        data = np.asarray(coo.data)
        if missing is not None and missing[0].size:
            # entries under the mask are dropped before validation (NaN allowed there)
            miss_flat = np.ravel_multi_index(missing, shape)
            keep = ~np.isin(np.ravel_multi_index((rows_, cols_), shape), miss_flat)
            rows_, cols_, data = rows_[keep], cols_[keep], data[keep]
        _check_values(data, name, lambda i: (int(rows_[i]), int(cols_[i])), integer)
        vals = data.astype(np.float64)
        nzk = vals != 0
        rows_, cols_, vals = rows_[nzk], cols_[nzk], vals[nzk]
        values = sp.csr_array((vals, (rows_, cols_)), shape=shape)
        order = np.lexsort((cols_, rows_))
        rows_, cols_, vals = rows_[order], cols_[order], vals[order]
    else:
        if isinstance(V, xr.DataArray | pd.DataFrame):
            arr = np.asarray(V.values)
        else:
            if isinstance(V, str | bytes) or V is None:
                raise TypeError(f"{name} must be a 2-D array of counts, got {type(V).__name__}")
            arr = np.asarray(V)
        if arr.ndim != 2:
            raise ValueError(
                f"{name} must be 2-D (rows x columns), got {arr.ndim}-D with shape "
                f"{arr.shape}; reshape it, e.g. V.reshape(1, -1) for a single row"
            )
        _check_dtype(arr.dtype, name)
        shape = (int(arr.shape[0]), int(arr.shape[1]))
        missing = _as_missing(mask, shape) if mask is not None else None
        if missing is not None and missing[0].size:
            arr = np.array(arr, dtype=np.float64 if arr.dtype.kind == "f" else arr.dtype)
            arr[missing] = 0
        if 0 not in shape:
            ncols = shape[1]
            _check_values(arr, name, lambda i: (i // ncols, i % ncols), integer)
        values = np.ascontiguousarray(arr, dtype=np.float64)
        r, c = np.nonzero(values)
        rows_, cols_, vals = r.astype(np.int64), c.astype(np.int64), values[r, c]
    F, N = shape
    if F == 0 or N == 0:
        raise ValueError(f"{name} is empty (shape {shape}); it needs at least one row and column")
    if vals.size == 0 and not allow_all_zero:
        raise ValueError(f"{name} is all zeros (shape {shape}); there is nothing to factorise")
    if missing is None:
        missing = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    row_sums = np.bincount(rows_, minlength=F)
    col_sums = np.bincount(cols_, minlength=N)
    empty_r, empty_c = int((row_sums == 0).sum()), int((col_sums == 0).sum())
    if empty_r or empty_c:
        warnings.warn(
            f"{name} has {empty_r} all-zero row(s) and {empty_c} all-zero column(s); they "
            "are kept (their factors are pushed to zero or to the prior)",
            ZeroRowsColumnsWarning,
            stacklevel=3,
        )
    return Counts(
        values=values,
        nz_rows=rows_,
        nz_cols=cols_,
        nz_values=vals,
        missing_rows=missing[0],
        missing_cols=missing[1],
        row=np.arange(F) if row is None else row,
        column=np.arange(N) if col is None else col,
    )
