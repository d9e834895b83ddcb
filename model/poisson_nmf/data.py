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
  likelihood". Missing entries may hold NaN (or pd.NA, or an empty cell) in the input;
  `values` holds a 0 in their place, a placeholder no later layer reads as a zero count.
- Sparse input stays sparse: nothing here densifies an F x N matrix.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from .exceptions import ZeroRowsColumnsWarning, warn_user

__all__ = [
    "Counts",
    "Where",
    "ZeroRowsColumnsWarning",
    "align_mask",
    "as_counts",
    "check_label_types",
    "check_n_components",
    "check_unique",
    "csr_index",
    "frame_values",
]


DIMS = ("row", "column")
# float64 holds every integer up to 2**53 exactly; int64 past 2**63 - 1 wraps.
_INT64_MAX = float(np.iinfo(np.int64).max)


@dataclass(frozen=True, slots=True)
class Counts:
    """A validated count matrix V (F x N) with an optional mask of missing entries.

    Attributes
    ----------
    values : numpy.ndarray or scipy.sparse.csr_array, shape (F, N), float64
        The counts; masked entries hold a placeholder 0 (never read as an observed zero).
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


MISSING_REMEDY = (
    "to leave them out of the likelihood, pass pnmf.as_counts(V, missing='mask') in place "
    "of V (every function taking counts accepts it; command line: --missing mask), or "
    "fill or remove them"
)
# float64, which every later layer computes in, holds whole numbers exactly up to 2**53
EXACT_MAX = 2**53


def _label(x: Any) -> str:
    return repr(x.item() if isinstance(x, np.generic) else x)


@dataclass(frozen=True, slots=True)
class Where:
    """Describe entry (i, j) by its row and column labels and, from a file, its line."""

    row: np.ndarray | None
    column: np.ndarray | None
    lines: np.ndarray | None = None
    line_dim: int = 0

    def __call__(self, i: int, j: int) -> str:
        """Return "row R, column C" (and the file's line) for entry (i, j)."""
        r = _label(self.row[i]) if self.row is not None else str(i)
        c = _label(self.column[j]) if self.column is not None else str(j)
        text = f"row {r}, column {c}"
        if self.lines is not None:
            text += f" (line {int(self.lines[i if self.line_dim == 0 else j])} of the file)"
        return text


def _coords_of(V: Any) -> Where:
    if isinstance(V, pd.DataFrame):
        return Where(np.asarray(V.index), np.asarray(V.columns))
    if isinstance(V, xr.DataArray):
        rows = np.asarray(V[V.dims[0]].values) if V.dims[0] in V.coords else None
        cols = np.asarray(V[V.dims[1]].values) if V.dims[1] in V.coords else None
        if "line" in V.coords and V["line"].ndim == 1 and V["line"].dims[0] in V.dims:
            dim = V.dims.index(V["line"].dims[0])
            return Where(rows, cols, np.asarray(V["line"].values), dim)
        return Where(rows, cols)
    return Where(None, None)


def check_unique(labels: np.ndarray | None, axis: str, name: str) -> None:
    """Raise ValueError naming the duplicated ``axis`` labels of ``name``, if any."""
    if labels is None:
        return
    idx = pd.Index(labels)
    if idx.has_duplicates:
        dup = idx[idx.duplicated()].unique()
        shown = _shown(dup)
        raise ValueError(
            f"{name} has duplicated {axis} labels ({len(dup)} label(s) more than once: "
            f"{shown}); each {axis} must be named once: rename or drop them, or sum the "
            f"duplicated {axis}s with read_counts(..., duplicates='sum') (command line: "
            "--sum-duplicates)"
            + (
                "; if the first column is data, not labels, read with index=False "
                "(command line: --no-index)"
                if axis == "row" and pd.api.types.is_integer_dtype(idx.dtype)
                else ""
            )
        )


def check_label_types(
    labels: np.ndarray | None, axis: str, name: str, remedy: str | Callable[[str], str]
) -> None:
    """Raise TypeError for ``axis`` labels of ``name`` that a saved fit could not store.

    Refused: labels of mixed types (``1`` beside ``'a'``, or ``True`` beside ``1``), and
    labels netCDF cannot store: tuples (a pandas MultiIndex), ``Period``, ``Interval``,
    timezone-aware datetimes, or any other object. Such a fit could be sampled but then
    neither saved nor reported (and mixed types not diagnosed: the entry table sorts the
    labels), so they are refused here, before any work. Accepted: typed arrays (ints,
    floats, str, bytes, bool, naive datetime64, timedelta64) and object arrays of one of
    int, float, str, bytes, naive datetime or timedelta. NumPy scalars count as their
    Python type.

    ``remedy`` is how to convert the labels where the user is: a statement, or a
    function of the pandas Index method chain that converts them (``".astype(str)"``)
    returning the statement (e.g. ``"df.index = df.index.astype(str)"``).
    """
    if labels is None or labels.dtype != object:  # a typed array holds one storable type
        return
    fix = remedy if callable(remedy) else (lambda how: remedy)
    first: dict[type, Any] = {}
    tz_aware = None
    for x in labels:
        v = x.item() if isinstance(x, np.generic) and x.dtype.kind not in "mM" else x
        first.setdefault(type(v), v)
        if tz_aware is None and isinstance(v, datetime) and v.tzinfo is not None:
            tz_aware = v
    if len(first) > 1:
        (ta, a), (tb, b) = list(first.items())[:2]
        raise TypeError(
            f"{name}'s {axis} labels mix types: {_label(a)} ({ta.__name__}) and "
            f"{_label(b)} ({tb.__name__}); a fit of them could be neither saved nor "
            f"diagnosed. Make them one type first, e.g. {fix('.astype(str)')}"
        )
    if not first:
        return
    ((t, v),) = first.items()
    kind, how = _unstorable(t, tz_aware)
    if kind:
        shown = _label(tz_aware if tz_aware is not None else v)
        raise TypeError(
            f"{name}'s {axis} labels are {kind} (first {shown}), which a saved fit cannot "
            "store (netCDF holds numbers, strings and naive datetimes): the fit could be "
            f"sampled but neither saved nor reported. Convert them first, e.g. {fix(how)}"
        )


def _unstorable(t: type, tz_aware: Any) -> tuple[str, str]:
    """Describe an object label type netCDF cannot store, and the pandas method that fixes it.

    Returns ``("", "")`` for a storable type.
    """
    if tz_aware is not None:
        return "timezone-aware datetimes", ".tz_localize(None)"
    if issubclass(t, bool | np.bool_):
        return "booleans in an object array", ".astype(bool)"
    if issubclass(t, int | float | str | bytes | datetime | timedelta):
        return "", ""
    if issubclass(t, np.datetime64 | np.timedelta64):
        return "", ""
    if issubclass(t, tuple):
        return "tuples (a pandas MultiIndex?)", ".to_flat_index().map(str)"
    if issubclass(t, pd.Period):
        return "pandas Periods", ".to_timestamp()"
    if issubclass(t, pd.Interval):
        return "pandas Intervals", ".astype(str)"
    return f"objects of type {t.__name__}", ".map(str)"


def _label_remedy(V: Any, axis: str) -> Callable[[str], str]:
    """How to convert ``V``'s ``axis`` labels, written for V's kind, given the pandas method."""
    if isinstance(V, pd.DataFrame):
        attr = "index" if axis == "row" else "columns"
        return lambda how: f"df.{attr} = df.{attr}{how}"
    return lambda how: f"V = V.assign_coords({axis}=V.indexes[{axis!r}]{how})"


def _check_dtype(dtype: Any, name: str) -> None:
    if dtype == np.bool_ or pd.api.types.is_bool_dtype(dtype):
        raise TypeError(
            f"{name} has boolean dtype; counts must be integers (cast with .astype(int) "
            "if True/False really are counts of 1 and 0)"
        )
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise TypeError(
            f"{name} has dtype {dtype}; counts must be a numeric array of non-negative "
            "integers (convert strings or objects with .astype(int) first)"
        )


def _check_exact(x: Any, name: str, where: Any) -> None:
    """Refuse counts past 2**53 before anything converts them to float64 (exact compare)."""
    if x.size == 0 or x.dtype.kind not in "iuf":
        return
    big = x > (float(EXACT_MAX) if x.dtype.kind == "f" else EXACT_MAX)
    if big.any():
        i = int(np.flatnonzero(big.ravel())[0])
        raise ValueError(
            f"{name} has a count past 2**53 = {EXACT_MAX} (first {x.ravel()[i].item()!r} at "
            f"{where(i)}); the model computes in float64, which holds whole numbers exactly "
            "only up to 2**53: scale the counts down or leave that entry out"
        )


def _check_values(x: np.ndarray, name: str, where: Any, integer: bool = True) -> None:
    """Check a 1-D or 2-D numeric array of counts (NaN already handled).

    ``where`` maps a flat index to a description of the entry; ``integer=False`` accepts
    any finite non-negative values.
    """
    if x.size == 0:
        return
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            i = int(np.flatnonzero(bad.ravel())[0])
            raise ValueError(
                f"{name} contains {x.ravel()[i].item()!r} (first at {where(i)}); counts "
                "must be finite non-negative whole numbers"
            )
    neg = x < 0
    if neg.any():
        i = int(np.flatnonzero(neg.ravel())[0])
        raise ValueError(
            f"{name} contains negative values (first {x.ravel()[i].item()!r} at {where(i)}); "
            "counts must be non-negative"
        )
    if not integer:
        return
    _check_exact(x, name, where)
    if np.issubdtype(x.dtype, np.floating):
        frac = x != np.round(x)
        if frac.any():
            i = int(np.flatnonzero(frac.ravel())[0])
            raise ValueError(
                f"{name} contains non-integer values (first {x.ravel()[i].item()!r} at "
                f"{where(i)}); counts must be whole numbers (2.0 is fine, 2.5 is not)"
            )


def _refuse_missing(n: int, name: str, first: str) -> None:
    raise ValueError(
        f"{name} has {n} missing value(s) (NaN, pd.NA or an empty cell), the first at "
        f"{first}; {MISSING_REMEDY}"
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
        keep = _mask_values(coo.data).astype(bool)
        return coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64)
    m = np.asarray(mask.values if isinstance(mask, pd.DataFrame | xr.DataArray) else mask)
    if m.shape != shape:
        raise ValueError(
            f"mask has shape {m.shape} but V has shape {shape}; pass a boolean mask of "
            "the same shape as V (True = missing)"
        )
    r, c = np.nonzero(_mask_values(m))
    return r.astype(np.int64), c.astype(np.int64)


def align_mask(mask: Any, row: Any, column: Any, name: str = "V") -> Any:
    """Reorder a labelled mask to V's labels; a mask without labels is returned as it is.

    A pandas DataFrame mask, or an xarray DataArray mask with coordinates, whose labels
    are V's (``row``, ``column``; None where V has none) in another order is aligned to
    V by label (as pandas aligns), never read by position. Dims ``("column", "row")``
    are transposed by name. A NumPy or SciPy mask, or an axis where either has no
    labels, stays positional.

    Returns
    -------
    numpy.ndarray or the mask itself
        The mask's values in V's order, or ``mask`` unchanged when it has no labels.

    Raises
    ------
    ValueError
        The mask's labels on an axis are not V's (the differing labels are named), or
        repeat one.
    TypeError
        A DataFrame mask holding missing values (NaN, ``pd.NA``).
    """
    if isinstance(mask, xr.DataArray):
        if set(mask.dims) == {"row", "column"}:
            mask = mask.transpose("row", "column")
        if mask.ndim != 2:
            return mask  # the shape check names it
        labels = [mask.indexes[d] if d in mask.indexes else None for d in mask.dims]
        values = np.asarray(mask.values)
    elif isinstance(mask, pd.DataFrame):
        labels = [mask.index, mask.columns]
        values = _frame_mask_values(mask)
    else:
        return mask
    for ax, (axis, mine, theirs) in enumerate(zip(DIMS, (row, column), labels, strict=True)):
        if mine is None or theirs is None:
            continue
        v_idx = pd.Index(mine)
        if theirs.equals(v_idx):
            continue
        if theirs.has_duplicates:
            dup = _shown(theirs[theirs.duplicated()].unique())
            raise ValueError(
                f"mask has duplicated {axis} labels ({dup}); a labelled mask is aligned to "
                f"{name} by label: give it {name}'s {axis} labels once each"
            )
        pos = theirs.get_indexer(v_idx)
        only_v, only_m = v_idx[pos < 0], theirs[~theirs.isin(v_idx)]
        if only_v.size or only_m.size:
            raise ValueError(
                f"mask's {axis} labels are not {name}'s: "
                + "; ".join(
                    f"{n} {axis} label(s) {where} ({_shown(ix)})"
                    for n, where, ix in (
                        (only_v.size, f"of {name} not in the mask", only_v),
                        (only_m.size, f"of the mask not in {name}", only_m),
                    )
                    if n
                )
                + f". A labelled mask is aligned to {name} by label: give it {name}'s "
                "labels (in any order), or pass mask.to_numpy() to apply it by position"
            )
        values = np.take(values, pos, axis=ax)
    return values


def _shown(labels: pd.Index) -> str:
    """Return the first five labels, for a message."""
    return ", ".join(_label(x) for x in labels[:5]) + (", ..." if labels.size > 5 else "")


def _frame_mask_values(mask: pd.DataFrame) -> np.ndarray:
    """Return a DataFrame mask's values, pandas nullable ``boolean`` / ``Int64`` as NumPy."""
    if not any(hasattr(d, "numpy_dtype") for d in mask.dtypes):
        return np.asarray(mask.values)
    na = mask.isna().to_numpy()
    if na.any():
        i, j = np.argwhere(na)[0]
        raise TypeError(
            f"mask holds a missing value (first at row {_label(mask.index[i])}, column "
            f"{_label(mask.columns[j])}); a mask says for every entry whether it is "
            "missing: fill it, e.g. mask.fillna(True)"
        )
    dtypes = [getattr(d, "numpy_dtype", d) for d in mask.dtypes]
    return mask.to_numpy(dtype=np.result_type(*dtypes))


def _mask_values(m: np.ndarray) -> np.ndarray:
    """Return a mask's values as bool: booleans, or integers that are all 0 or 1 (TypeError)."""
    if m.dtype == np.bool_:
        return m
    if np.issubdtype(m.dtype, np.integer):
        bad = ~np.isin(m, (0, 1))
        if not bad.any():
            return m.astype(bool)
        found = f"integers other than 0 and 1 (first {m.ravel()[np.argmax(bad.ravel())].item()!r})"
    else:
        found = f"dtype {m.dtype}"
    raise TypeError(
        f"mask must be boolean or integers 0 / 1 (True or 1 = missing), got {found}; "
        "pass e.g. mask=np.isnan(V) or mask=(M != 0)"
    )


def frame_values(df: pd.DataFrame, name: str, where: Where) -> np.ndarray:
    """Return a DataFrame's cells as float64 (NaN for NaN, pd.NA, empty cells), by column.

    Accepts NumPy and pandas nullable numeric dtypes (``Int8`` to ``UInt64``, ``Float32``,
    ``Float64``) and object columns that hold only numbers; integer columns are range
    checked exactly before the conversion.
    """
    out = np.empty(df.shape, dtype=np.float64)
    for j in range(df.shape[1]):
        s = df.iloc[:, j]
        dt = s.dtype
        if pd.api.types.is_bool_dtype(dt):
            raise TypeError(
                f"{name} column {_label(df.columns[j])} has boolean dtype; counts must be "
                "integers (cast with .astype(int) if True/False really are counts)"
            )
        if not pd.api.types.is_numeric_dtype(dt):
            num = pd.to_numeric(s, errors="coerce")
            bad = (num.isna() & s.notna()).to_numpy()
            if bad.any():
                i = int(np.argmax(bad))
                raise TypeError(
                    f"{name} has dtype {dt} in column {_label(df.columns[j])}: "
                    f"{s.iloc[i]!r} at {where(i, j)} is not a number; counts must be "
                    "non-negative integers (convert strings with .astype(int) first)"
                )
            s = num
        if pd.api.types.is_integer_dtype(s.dtype):
            npdt: Any = getattr(s.dtype, "numpy_dtype", s.dtype)
            _check_exact(s.fillna(0).to_numpy(dtype=npdt), name, lambda i, j=j: where(i, j))
        out[:, j] = s.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def as_counts(
    V: Any,
    mask: Any = None,
    missing: str = "raise",
    *,
    name: str = "V",
    integer: bool = True,
    allow_all_zero: bool = False,
) -> Counts:
    """Validate a count matrix once and return it as :class:`Counts`.

    Parameters
    ----------
    V : array_like, pandas.DataFrame, scipy.sparse matrix, xarray.DataArray or Counts
        Counts, shape (F, N), dims ``("row", "column")``: non-negative whole numbers up
        to 2**53 (integer, integer-valued float, or pandas nullable ``Int8`` ... ``UInt64``
        / ``Float64`` dtypes; a DataFrame of sparse columns stays sparse). Row and column
        labels must be unique. A ``Counts`` is returned as it is when no new mask is
        given.
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks a **missing** entry, left out of the likelihood; such entries may
        be NaN in ``V``. A DataFrame (or DataArray with coordinates) mask is aligned to
        ``V``'s labels by label when ``V`` has labels (see :func:`align_mask`); other
        masks apply by position.
    missing : {"raise", "mask"}
        What NaN, ``pd.NA`` and empty cells outside ``mask`` do: ``"raise"`` refuses
        them (the message names the first one), ``"mask"`` makes them masked (missing)
        entries. Infinite values are always refused.
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
        For bool, object, string or other non-numeric dtypes, a non-boolean mask, or
        row / column labels of mixed types or that netCDF cannot store (tuples of a
        MultiIndex, Period, Interval, timezone-aware datetimes; see
        :func:`check_label_types`).
    ValueError
        For input that is not 2-D, has no rows or columns, duplicated labels, negative,
        non-integer, infinite or missing values (the latter unless ``missing="mask"``),
        counts past 2**53, all zeros, a mask of the wrong shape, or a labelled mask
        whose labels are not V's. Messages name the
        entry by its row and column labels (and its line, for a table read from a file).
    """
    if missing not in ("raise", "mask"):
        raise ValueError(f"missing must be 'raise' or 'mask', got {missing!r}")
    kept = None
    if isinstance(V, Counts):
        if mask is None:
            return V
        kept = Where(V.row, V.column)  # sparse values come back without them
        V, mask = _unpack_with_mask(V, align_mask(mask, V.row, V.column, name))
    if isinstance(V, xr.DataArray) and set(V.dims) == {"row", "column"}:
        V = V.transpose("row", "column")  # by name: ("column", "row") is not read by position
    where = _coords_of(V) if kept is None else kept
    for labels, axis in ((where.row, "row"), (where.column, "column")):
        check_label_types(labels, axis, name, _label_remedy(V, axis))  # [True, 1]: not duplicates
        check_unique(labels, axis, name)
    if mask is not None:
        mask = align_mask(mask, where.row, where.column, name)
    coo, arr = _read_input(V, name, where)
    if coo is not None:
        values, nz, missing_rc = _sparse_entries(coo, mask, missing, name, where, integer)
    else:
        values, nz, missing_rc = _dense_entries(arr, mask, missing, name, where, integer)
    shape = (int(values.shape[0]), int(values.shape[1]))
    rows_, cols_, vals = nz
    if vals.size == 0 and not allow_all_zero:
        _refuse_all_zero(shape, missing_rc, name)
    if missing_rc is None:
        missing_rc = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    elif coo is not None and missing_rc[0].size:
        flat = np.unique(np.ravel_multi_index(missing_rc, shape))
        missing_rc = tuple(a.astype(np.int64) for a in np.unravel_index(flat, shape))  # type: ignore[assignment]
    _warn_empty_lines(rows_, cols_, shape, bool(missing_rc[0].size), name)
    F, N = shape
    return Counts(
        values=values,
        nz_rows=rows_,
        nz_cols=cols_,
        nz_values=vals,
        missing_rows=missing_rc[0],
        missing_cols=missing_rc[1],
        row=np.arange(F) if where.row is None else where.row,
        column=np.arange(N) if where.column is None else where.column,
    )


# ---------------------------------------------------------------------------------------
# the stages of as_counts

_Entries = tuple[np.ndarray, np.ndarray, np.ndarray]  # rows, columns, values (int64, float64)
_Missing = tuple[np.ndarray, np.ndarray]  # rows, columns of missing entries (int64)


def _unpack_with_mask(counts: Counts, mask: Any) -> tuple[Any, Any]:
    """Unpack a Counts given a new mask: its values to validate again, the combined mask.

    The new mask adds to the entries already missing, never replaces them. Sparse values
    come back as they are; dense ones as a DataArray that keeps the coordinates.
    """
    if counts.has_mask:
        r_new, c_new = _as_missing(mask, counts.shape)
        flat = np.unique(
            np.concatenate(
                [
                    np.ravel_multi_index((counts.missing_rows, counts.missing_cols), counts.shape),
                    np.ravel_multi_index((r_new, c_new), counts.shape),
                ]
            )
        )
        r, c = np.unravel_index(flat, counts.shape)
        mask = sp.coo_array((np.ones(flat.size, dtype=bool), (r, c)), shape=counts.shape)
    if counts.is_sparse:
        return counts.values, mask
    coords = {"row": counts.row, "column": counts.column}
    return xr.DataArray(counts.dense(), dims=DIMS, coords=coords), mask


def _read_input(V: Any, name: str, where: Where) -> tuple[Any, Any]:
    """Read V as COO entries (sparse input) or as a dense array, after the shape checks.

    Returns ``(coo, None)`` or ``(None, arr)``; V must be 2-D with rows and columns.
    """
    if isinstance(V, pd.DataFrame):
        return _read_frame(V, name, where)
    if sp.issparse(V):
        if V.ndim != 2:
            raise ValueError(f"{name} must be 2-D (rows x columns), got {V.ndim}-D")
        _check_not_empty((int(V.shape[0]), int(V.shape[1])), name)
        return sp.coo_array(V), None
    if isinstance(V, xr.DataArray):
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
    _check_not_empty((int(arr.shape[0]), int(arr.shape[1])), name)
    return None, arr


def _read_frame(df: pd.DataFrame, name: str, where: Where) -> tuple[Any, Any]:
    """Read a DataFrame: all columns sparse with fill 0 as COO, any other as dense."""
    _check_not_empty((int(df.shape[0]), int(df.shape[1])), name)
    sparse_cols = [isinstance(d, pd.SparseDtype) for d in df.dtypes]
    if df.shape[1] and all(isinstance(d, pd.SparseDtype) and d.fill_value == 0 for d in df.dtypes):
        if len({d.subtype for d in df.dtypes}) > 1:  # to_coo needs one subtype
            df = df.astype(pd.SparseDtype("float64", 0))
        acc: Any = df.sparse  # pandas-stubs types the accessor as an ellipsis
        return sp.coo_array(acc.to_coo()), None
    if any(sparse_cols):  # sparse beside dense columns, or a non-zero fill
        df = df.apply(lambda s: s.sparse.to_dense() if isinstance(s.dtype, pd.SparseDtype) else s)
    return None, frame_values(df, name, where)


def _sparse_entries(
    coo: Any, mask: Any, missing: str, name: str, where: Where, integer: bool
) -> tuple[Any, _Entries, _Missing | None]:
    """Validate sparse input's stored entries: CSR values, sorted non-zeros, missing ones.

    Entries under the mask are dropped before validation (NaN allowed there); NaN
    elsewhere is refused or, with ``missing="mask"``, added to the missing entries
    (``None`` when there is no mask and no NaN; not yet sorted or unique).
    """
    _check_dtype(coo.dtype, name)
    coo.sum_duplicates()
    shape = (int(coo.shape[0]), int(coo.shape[1]))
    missing_rc = _as_missing(mask, shape) if mask is not None else None
    rows_, cols_ = coo.row.astype(np.int64), coo.col.astype(np.int64)
    data = np.asarray(coo.data)
    if missing_rc is not None and missing_rc[0].size:
        miss_flat = np.ravel_multi_index(missing_rc, shape)
        keep = ~np.isin(np.ravel_multi_index((rows_, cols_), shape), miss_flat)
        rows_, cols_, data = rows_[keep], cols_[keep], data[keep]
    if data.dtype.kind == "f":
        nan = np.isnan(data)
        if nan.any():
            if missing == "raise":
                i = int(np.argmax(nan))
                _refuse_missing(int(nan.sum()), name, where(int(rows_[i]), int(cols_[i])))
            prev = missing_rc or (np.zeros(0, np.int64), np.zeros(0, np.int64))
            missing_rc = (
                np.concatenate([prev[0], rows_[nan]]),
                np.concatenate([prev[1], cols_[nan]]),
            )
            rows_, cols_, data = rows_[~nan], cols_[~nan], data[~nan]
    _check_values(data, name, lambda i: where(int(rows_[i]), int(cols_[i])), integer)
    vals = data.astype(np.float64)
    nzk = vals != 0
    rows_, cols_, vals = rows_[nzk], cols_[nzk], vals[nzk]
    values = sp.csr_array((vals, (rows_, cols_)), shape=shape)
    order = np.lexsort((cols_, rows_))
    return values, (rows_[order], cols_[order], vals[order]), missing_rc


def _dense_entries(
    arr: np.ndarray, mask: Any, missing: str, name: str, where: Where, integer: bool
) -> tuple[np.ndarray, _Entries, _Missing]:
    """Validate a dense array: float64 values (0 where missing), non-zeros, missing ones.

    NaN outside the mask is refused or, with ``missing="mask"``, made missing.
    """
    _check_dtype(arr.dtype, name)
    shape = (int(arr.shape[0]), int(arr.shape[1]))
    ncols = shape[1]
    flat_where = lambda i: where(i // ncols, i % ncols)  # noqa: E731
    m = np.zeros(shape, dtype=bool)
    if mask is not None:
        m[_as_missing(mask, shape)] = True
    if arr.dtype.kind == "f":
        nan = np.isnan(arr) & ~m
        if nan.any():
            if missing == "raise":
                _refuse_missing(int(nan.sum()), name, flat_where(int(np.argmax(nan))))
            m |= nan
    if m.any():
        arr = np.array(arr, dtype=np.float64 if arr.dtype.kind == "f" else arr.dtype)
        arr[m] = 0
    _check_values(arr, name, flat_where, integer)
    values = np.ascontiguousarray(arr, dtype=np.float64)
    r, c = np.nonzero(values)
    mr, mc = np.nonzero(m)
    entries = (r.astype(np.int64), c.astype(np.int64), values[r, c])
    return values, entries, (mr.astype(np.int64), mc.astype(np.int64))


def _refuse_all_zero(shape: tuple[int, int], missing_rc: _Missing | None, name: str) -> None:
    n_missing = (
        0 if missing_rc is None else int(np.unique(np.ravel_multi_index(missing_rc, shape)).size)
    )
    if n_missing == shape[0] * shape[1]:
        raise ValueError(
            f"{name} has no observed entries: every entry (shape {shape}) is missing "
            "(masked, NaN, pd.NA or an empty cell); there is nothing to factorise"
        )
    if n_missing:
        raise ValueError(
            f"{name}'s observed entries are all zeros ({shape[0] * shape[1] - n_missing} "
            f"observed, {n_missing} missing; shape {shape}); there is nothing to factorise"
        )
    raise ValueError(f"{name} is all zeros (shape {shape}); there is nothing to factorise")


def _warn_empty_lines(
    rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], masked: bool, name: str
) -> None:
    """Warn (at the user's line) of rows/columns without a non-zero."""
    empty_r = int((np.bincount(rows, minlength=shape[0]) == 0).sum())
    empty_c = int((np.bincount(cols, minlength=shape[1]) == 0).sum())
    if empty_r or empty_c:
        warn_user(
            (
                f"{name} has {empty_r} all-zero row(s) and {empty_c} all-zero column(s)"
                if not masked
                else f"{name} has {empty_r} row(s) and {empty_c} column(s) with no non-zero "
                "observed count (masked entries are not counted as zeros)"
            )
            + "; they are kept (their factors are pushed to zero or to the prior)",
            ZeroRowsColumnsWarning,
        )


def csr_index(
    rows: np.ndarray, cols: np.ndarray, n_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group entries given as (row, column) pairs by row: a CSR index.

    Parameters
    ----------
    rows, cols : numpy.ndarray of int, shape (nnz,)
        Row and column of each entry (any order). Pass ``(cols, rows, N)`` to group by
        column instead (a CSC index of the same entries).
    n_rows : int
        Number of rows (rows without entries get an empty run).

    Returns
    -------
    indptr : numpy.ndarray of int64, shape (n_rows + 1,)
        Row r's entries are ``indptr[r]:indptr[r + 1]`` of the sorted order.
    indices : numpy.ndarray of int64, shape (nnz,)
        Their columns, ascending within each row.
    order : numpy.ndarray of int, shape (nnz,)
        The permutation that sorts the entries: ``values[order]`` lines up with
        ``indices``.
    """
    order = np.lexsort((cols, rows))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr, np.ascontiguousarray(cols[order], dtype=np.int64), order


def _check_not_empty(shape: tuple[int, int], name: str) -> None:
    if shape[0] == 0 or shape[1] == 0:
        what = "no rows" if shape[0] == 0 else "no columns"
        raise ValueError(
            f"{name} is empty: it has {what} (shape {shape}); it needs at least one row "
            "and one column of counts"
        )
