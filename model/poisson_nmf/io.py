"""Files in and out: count matrices (DATA) and saved fits (netCDF).

DATA formats, chosen by the file's extension:

- ``.csv`` / ``.tsv`` (also ``.txt``, ``.tab``: tab-separated; each also ``.gz``): a
  header line with the column names and, unless ``index=False``, a first column with
  the row names; every other cell a count (an empty cell is missing).
- ``.mtx`` (also ``.mtx.gz``): Matrix Market, coordinate (sparse) or array (dense).
- ``.npz``: a SciPy sparse matrix saved by :func:`scipy.sparse.save_npz`.
- ``.npy``: a 2-D NumPy array saved by :func:`numpy.save` (no pickles).
- ``.parquet``: a table read by pandas (pyarrow); its stored index, or else its first
  column, holds the row names.
- ``.h5ad``: AnnData (the optional extra ``anndata``); rows are ``obs``, columns ``var``.
- a folder in the 10x layout: ``matrix.mtx.gz`` (features x barcodes),
  ``features.tsv.gz`` (or ``genes.tsv.gz``) and ``barcodes.tsv.gz``.

``transpose=True`` swaps rows and columns of any of them. Labels used twice are refused
(or summed with ``duplicates="sum"``).

The counts are validated by :func:`poisson_nmf.as_counts` (negative, fractional, NaN
values are refused naming the first bad entry by its labels and line).

A fit is the :func:`poisson_nmf.sample_posterior` DataTree written as one netCDF-4 file
(h5netcdf) with root attributes ``format`` (:data:`FIT_FORMAT`), ``format_version``,
``model`` (:data:`MODEL_TAG`) and ``poisson_nmf_version``, beside the sampler's own
``settings`` (JSON). :func:`load_fit` refuses, with :class:`FitFormatError`, a file that
is not such a fit, that holds another model, or that another version of poisson-nmf
wrote: the report of a fit is only re-rendered by the code that made it (install that
version, or fit again). A fit of an older :data:`FIT_FORMAT_VERSION` is refused with
what to do (fit again, or re-save its draws with :func:`save_fit`); one of a newer format
asks to upgrade. The loadings of :func:`poisson_nmf.fit_loadings` are saved and read
back the same way (they have no ``settings``). An optional group
``map_vs_kl`` holds the MAP-versus-KL comparison (:func:`comparison_to_dataset`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp
import xarray as xr

from .exceptions import FitFormatError, LabelColumnWarning, warn_user

__all__ = [
    "FIT_FORMAT",
    "FIT_FORMAT_VERSION",
    "MODEL_TAG",
    "FitFormatError",
    "LabelColumnWarning",
    "comparison_to_dataset",
    "load_fit",
    "read_counts",
    "save_fit",
]

FIT_FORMAT = "poisson-nmf-fit"
# 2: a check's threshold is {"op", "value", "note"} (a number and an operator), not a
# string, in diagnostics.json and Diagnosis.to_dict (1: strings such as "<= 1.01")
FIT_FORMAT_VERSION = 2
MODEL_TAG = "poisson-gamma-nmf"  # V ~ Poisson(WH), W and H ~ Gamma(shape, rate)
# netCDF has no boolean attributes: save_fit stores these as 0 / 1, load_fit turns them back
_BOOL_ATTRS = ("approximate", "point_estimate", "map_converged")

_TEXT = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": "\t"}
_GZ_OK = (*_TEXT, ".mtx")  # kinds that may also come gzip-compressed
_KINDS = (*_TEXT, ".mtx", ".npz", ".npy", ".h5ad", ".parquet", ".pq")
_TENX = {
    "matrix": ("matrix.mtx.gz", "matrix.mtx"),
    "features": ("features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv"),
    "barcodes": ("barcodes.tsv.gz", "barcodes.tsv"),
}


def _kind(path: Path) -> tuple[str, bool]:
    """Return the DATA kind of a path (``.csv``, ...; ``"10x"`` for a folder) and gzip."""
    if path.is_dir():
        return "10x", False
    name = path.name.lower()
    gz = name.endswith(".gz")
    base = name[:-3] if gz else name
    for ext in _KINDS:
        if base.endswith(ext):
            return ext, gz
    return Path(base).suffix, gz


def _tenx_file(folder: Path, part: str) -> Path:
    for name in _TENX[part]:
        if (folder / name).is_file():
            return folder / name
    raise ValueError(
        f"folder {str(folder)!r} is not a 10x-style matrix folder: it has none of "
        f"{', '.join(_TENX[part])} (a 10x folder holds matrix.mtx.gz, features.tsv.gz and "
        "barcodes.tsv.gz)"
    )


def _labelled_sparse(X: Any, rows: Any, cols: Any) -> pd.DataFrame:
    """Return a sparse matrix with labels as a DataFrame of sparse columns."""
    frame: Any = pd.DataFrame.sparse  # pandas-stubs types the accessor as an ellipsis
    return frame.from_spmatrix(sp.csc_matrix(X), index=rows, columns=cols)


def _read_10x(folder: Path, transpose: bool) -> pd.DataFrame:
    X = sp.csr_array(scipy.io.mmread(_tenx_file(folder, "matrix")))  # features x barcodes
    feats = pd.read_csv(_tenx_file(folder, "features"), sep="\t", header=None, dtype=str)
    codes = pd.read_csv(_tenx_file(folder, "barcodes"), sep="\t", header=None, dtype=str)
    if (len(feats), len(codes)) != X.shape:
        raise ValueError(
            f"matrix is {X.shape[0]} x {X.shape[1]} but there are {len(feats)} features and "
            f"{len(codes)} barcodes; the three files do not belong together"
        )
    rows, cols = np.asarray(feats[0]), np.asarray(codes[0])  # feature ids are unique
    return _labelled_sparse(X.T, cols, rows) if transpose else _labelled_sparse(X, rows, cols)


def _read_h5ad(path: Path, transpose: bool) -> Any:
    try:
        import anndata
    except ImportError:
        raise ValueError(
            "reading .h5ad needs the optional package anndata: pip install 'poisson-nmf[anndata]'"
        ) from None
    ad = anndata.read_h5ad(path)
    X: Any = ad.X
    rows, cols = np.asarray(ad.obs_names), np.asarray(ad.var_names)
    if transpose:
        X, rows, cols = X.T, cols, rows
    if sp.issparse(X):
        return _labelled_sparse(X, rows, cols)
    return xr.DataArray(np.asarray(X), dims=("row", "column"), coords={"row": rows, "column": cols})


def _text_frame(p: Path, sep: str, index: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a text table; returns it with each row's line number in the file."""
    header = pd.read_csv(p, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    names = [str(x) for x in header.iloc[0]]
    df = pd.read_csv(p, sep=sep, index_col=0 if index else None, skip_blank_lines=False)
    lines = np.arange(2, df.shape[0] + 2)
    n_fields = df.shape[1] + (1 if index else 0)
    if n_fields != len(names):
        raise ValueError(
            f"the header line has {len(names)} names but line 2 has {n_fields} fields: do "
            f"the lines end with {sep!r}? Remove the trailing delimiter from the data lines "
            "(or name every column in the header)"
        )
    cols = names[1:] if index else names
    blank_header = [j for j, c in enumerate(cols) if c == ""]
    for j in blank_header:
        if df.iloc[:, j].isna().all():
            raise ValueError(
                f"column {j + (2 if index else 1)} has no name in the header and no values: "
                f"do the lines end with {sep!r}? Remove the trailing delimiter from each line"
            )
    # keep the header's own names (pandas renames a repeated 's1' to 's1.1')
    df.columns = pd.Index([c if c != "" else str(df.columns[j]) for j, c in enumerate(cols)])
    blank = df.isna().all(axis=1).to_numpy()
    if index:
        blank = blank & np.asarray(df.index.isna())
    if blank.any():  # blank lines
        df, lines = df.loc[~blank], lines[~blank]
    return df, lines


def _numeric(df: pd.DataFrame, name: str, lines: np.ndarray | None) -> np.ndarray:
    from .data import Where, frame_values

    if df.shape[0] and all(d == np.int64 for d in df.dtypes):
        return df.to_numpy(dtype=np.int64)
    where = Where(np.asarray(df.index), np.asarray(df.columns), lines)
    return frame_values(df, name, where)


def _warn_integer_labels(labels: Any, name: str) -> None:
    idx = pd.Index(labels)
    if len(idx) == 0 or not pd.api.types.is_integer_dtype(idx.dtype):
        return
    v = idx.to_numpy()
    if np.array_equal(v, np.arange(len(v))) or np.array_equal(v, np.arange(1, len(v) + 1)):
        return  # a saved row number, not data
    warn_user(
        f"{name}: the first column, read as the row labels, holds only integers "
        f"({', '.join(map(str, v[:3].tolist()))}, ...) and looks like data; if it is, read "
        "with index=False (command line: --no-index)",
        LabelColumnWarning,
    )


def _sum_duplicates(df: pd.DataFrame) -> pd.DataFrame:
    """Sum rows (then columns) sharing a label; a sum with a missing cell stays missing."""
    for _ in range(2):
        if df.index.has_duplicates:
            na = df.isna().groupby(level=0, sort=False).any()
            df = df.groupby(level=0, sort=False).sum().mask(na)
        df = df.T
    return df


def read_counts(
    path: str | Path, index: bool = True, transpose: bool = False, *, duplicates: str = "raise"
) -> Any:
    """Read a count matrix DATA from a file or a 10x-style folder.

    Parameters
    ----------
    path : str or pathlib.Path
        A ``.csv``/``.tsv``/``.txt`` table (header; also gzip-compressed, ``.csv.gz``), a
        Matrix Market ``.mtx`` (or ``.mtx.gz``), a SciPy sparse ``.npz``, a NumPy
        ``.npy``, an AnnData ``.h5ad`` (needs the optional ``anndata``), a ``.parquet``
        table, or a 10x-style folder (``matrix.mtx.gz``, ``features.tsv.gz``,
        ``barcodes.tsv.gz``; rows are features, columns barcodes).
    index : bool
        Tables only: whether the first column holds the row labels. With ``True``, a
        label column of integers that are not just 0..F-1 or 1..F warns
        (:class:`LabelColumnWarning`): it may be data. A parquet file's stored pandas
        index, when it has one, is the labels.
    transpose : bool
        Swap rows and columns (for tables stored the other way round).
    duplicates : {"raise", "sum"}
        Tables: a row or column label used more than once is refused (``"raise"``, the
        message names the labels) or its rows (columns) are summed (``"sum"``).

    Returns
    -------
    xarray.DataArray, pandas.DataFrame or scipy.sparse.csr_array, shape (F, N)
        Tables become a DataArray with dims ``("row", "column")``, the file's labels as
        coordinates and each row's line in the file as the coordinate ``line`` (error
        messages of :func:`poisson_nmf.as_counts` name it); labelled sparse data (10x,
        sparse ``.h5ad``) a DataFrame of sparse columns; ``.mtx``/``.npz`` stay sparse.
        Missing cells are NaN: pass the result to :func:`poisson_nmf.as_counts`, which
        refuses them unless ``missing="mask"``.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        For an unknown extension, a file that cannot be read as that format, lines that
        end with a delimiter, or duplicated labels (unless ``duplicates="sum"``).
    TypeError
        For a table cell that is not a number (named by row, column and line).
    """
    from .data import check_unique

    if duplicates not in ("raise", "sum"):
        raise ValueError(f"duplicates must be 'raise' or 'sum', got {duplicates!r}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"DATA file {str(p)!r} does not exist")
    kind, gz = _kind(p)
    name = f"DATA file {str(p)!r}"
    if kind not in (*_KINDS, "10x") or (gz and kind not in _GZ_OK):
        raise ValueError(
            f"{name} has an unknown extension {kind + ('.gz' if gz else '')!r}; use .csv, "
            ".tsv, .txt (also .gz), .mtx (also .gz), .npz (scipy.sparse), .npy, .h5ad, "
            ".parquet or a 10x folder"
        )
    out: Any
    try:
        if kind == "10x":
            return _read_10x(p, transpose)
        if kind == ".h5ad":
            return _read_h5ad(p, transpose)
        if kind == ".mtx":
            m = scipy.io.mmread(p)
            out = sp.csr_array(m) if sp.issparse(m) else np.asarray(m)
            return out.T if transpose else out
        if kind == ".npz":
            out = sp.csr_array(sp.load_npz(p))
            return out.T if transpose else out
        if kind == ".npy":
            out = np.load(p, allow_pickle=False)
            return out.T if transpose else out
        lines: np.ndarray | None = None
        if kind in (".parquet", ".pq"):
            df = pd.read_parquet(p)
            if index and isinstance(df.index, pd.RangeIndex) and df.shape[1] > 1:
                df = df.set_index(df.columns[0])
        else:
            df, lines = _text_frame(p, _TEXT[kind], index)
            if index and df.shape[1] == 0:
                raise ValueError("it has no data columns (expected a header and an index column)")
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise ValueError(f"cannot read {name} as {kind}: {e}") from None
    if not index:
        df.index = pd.RangeIndex(df.shape[0])
    else:
        _warn_integer_labels(df.index, name)
    if duplicates == "sum":
        df, lines = _sum_duplicates(df), None
    check_unique(np.asarray(df.index), "row", name)
    check_unique(np.asarray(df.columns), "column", name)
    values = _numeric(df, name, lines)
    coords: dict[str, Any] = {"row": np.asarray(df.index), "column": np.asarray(df.columns)}
    if lines is not None:
        coords["line"] = ("row", lines)
    da = xr.DataArray(values, dims=("row", "column"), coords=coords, name=p.name.split(".")[0])
    if transpose:
        da = da.T.rename({"row": "column", "column": "row"})
    return da


def comparison_to_dataset(cmp: Any) -> xr.Dataset:
    """Return the MAP-versus-KL comparison as a Dataset, for a saved fit and the report.

    Parameters
    ----------
    cmp : poisson_nmf.optim.compare.MAPvsKL
        From :func:`poisson_nmf.compare_map_kl`.

    Returns
    -------
    xarray.Dataset
        ``W_kl``, ``W_map`` (row, component), ``H_kl``, ``H_map`` (component, column),
        ``history_kl`` (iter_kl), ``history_map`` (iter_map); attrs: the scalar fields of
        ``cmp``, both objectives and iteration counts, and ``summary`` (its text).
    """
    kl, mp = cmp.kl, cmp.map
    F, K = np.shape(kl.W)
    N = np.shape(kl.H)[1]
    coords = {"row": np.arange(F), "component": np.arange(K), "column": np.arange(N)}
    return xr.Dataset(
        {
            "W_kl": (("row", "component"), np.asarray(kl.W)),
            "W_map": (("row", "component"), np.asarray(mp.W)),
            "H_kl": (("component", "column"), np.asarray(kl.H)),
            "H_map": (("component", "column"), np.asarray(mp.H)),
            "history_kl": ("iter_kl", np.asarray(kl.history, dtype=np.float64)),
            "history_map": ("iter_map", np.asarray(mp.history, dtype=np.float64)),
        },
        coords=coords,
        attrs={
            "summary": cmp.summary(),
            "kl_objective": float(kl.objective),
            "map_objective": float(mp.objective),
            "kl_n_iter": int(kl.n_iter),
            "map_n_iter": int(mp.n_iter),
            "map_seconds": float(getattr(mp, "seconds", np.nan)),
            "objective_gap": float(cmp.objective_gap),
            "kkt_kl_under_map": float(cmp.kkt_kl_under_map),
            "kkt_map_under_kl": float(cmp.kkt_map_under_kl),
            "identity_error": float(cmp.identity_error),
            "same_optimum": int(bool(cmp.same_optimum)),
            "w_agreement": float(cmp.w_agreement),
            "h_agreement": float(cmp.h_agreement),
        },
    )


def save_fit(idata: xr.DataTree, path: str | Path, *, comparison: Any = None) -> Path:
    """Write a fit (and optionally the MAP-versus-KL comparison) to one netCDF file.

    Parameters
    ----------
    idata : xarray.DataTree
        From :func:`poisson_nmf.sample_posterior`, :func:`poisson_nmf.fit_loadings` (or
        :func:`load_fit`); :func:`load_fit` reads either back.
    path : str or pathlib.Path
        The file to write (conventionally ``fit.nc``); it is written to a temporary
        name first and renamed, so no half-written fit is left behind.
    comparison : MAPvsKL or xarray.Dataset, optional
        Stored as the group ``map_vs_kl`` (replacing one already in ``idata``).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    from ._version import __version__

    p = Path(path)
    groups = {name: node.to_dataset() for name, node in idata.children.items()}
    if comparison is not None:
        groups["map_vs_kl"] = (
            comparison if isinstance(comparison, xr.Dataset) else comparison_to_dataset(comparison)
        )
    tree = xr.DataTree.from_dict(groups)
    tree.attrs = {
        # netCDF has no boolean attributes (attrs["approximate"]): stored as 0 / 1
        **{k: int(v) if isinstance(v, bool) else v for k, v in idata.attrs.items()},
        "format": FIT_FORMAT,
        "format_version": FIT_FORMAT_VERSION,
        "model": MODEL_TAG,
        "poisson_nmf_version": __version__,
    }
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".part")
    try:
        tree.to_netcdf(tmp, engine="h5netcdf")
        tmp.replace(p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def load_fit(path: str | Path) -> xr.DataTree:
    """Read a fit written by :func:`save_fit`, refusing other models and versions.

    Parameters
    ----------
    path : str or pathlib.Path
        A ``fit.nc`` file.

    Returns
    -------
    xarray.DataTree
        The fit, loaded into memory (the file is closed): a posterior fit, or the
        loadings of :func:`poisson_nmf.fit_loadings` (no ``settings`` record; diagnose
        and posterior_summary read it as they read the tree in memory). Attributes
        that were booleans (``approximate``, ``point_estimate``) are booleans again.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    FitFormatError
        When the file is not a poisson-nmf fit, holds another model, was written by
        another version of poisson-nmf or in another fit format (older: what to do;
        newer: upgrade), or has a ``format_version`` that is absent or not a positive
        integer.
    """
    from ._version import __version__

    p = Path(path)
    if p.is_dir() and (p / "fit.nc").is_file():
        p = p / "fit.nc"  # a report folder: its saved fit
    if p.is_dir():
        raise FileNotFoundError(
            f"FIT {str(p)!r} is a folder without a fit.nc; give the fit file (fit.nc)"
        )
    if not p.is_file():
        raise FileNotFoundError(f"FIT file {str(p)!r} does not exist")
    try:
        with xr.open_datatree(p, engine="h5netcdf") as t:
            tree = t.load()
    except (OSError, ValueError) as e:
        raise FitFormatError(
            f"{str(p)!r} is not a netCDF fit written by poisson-nmf ({e})"
        ) from None
    attrs = tree.attrs
    if attrs.get("format") != FIT_FORMAT:
        raise FitFormatError(
            f"{str(p)!r} is not a poisson-nmf fit (format tag {attrs.get('format')!r}, "
            f"expected {FIT_FORMAT!r}); write fits with `poisson-nmf fit` or save_fit"
        )
    if attrs.get("model") != MODEL_TAG:
        raise FitFormatError(
            f"{str(p)!r} holds the model {attrs.get('model')!r}, not {MODEL_TAG!r}; "
            "it cannot be re-rendered by this package"
        )
    saved = attrs.get("poisson_nmf_version")
    fmt = _format_version(p, attrs)
    if fmt > FIT_FORMAT_VERSION:
        raise FitFormatError(
            f"{str(p)!r} was written by a newer poisson-nmf (fit format {fmt}; this "
            f"poisson-nmf {__version__} reads format {FIT_FORMAT_VERSION}): upgrade "
            "poisson-nmf to read it"
        )
    if fmt < FIT_FORMAT_VERSION:
        raise FitFormatError(
            f"{str(p)!r} is in fit format {fmt}, older than this poisson-nmf {__version__}'s "
            f"format {FIT_FORMAT_VERSION} (the diagnostics' thresholds are now numbers with "
            "an operator; the draws are stored as before). Re-run the fit with this version "
            "(`poisson-nmf fit`), or re-save its draws with this version: "
            "pnmf.save_fit(xarray.open_datatree(path, engine='h5netcdf').load(), path)"
        )
    if saved != __version__ or fmt != FIT_FORMAT_VERSION:
        raise FitFormatError(
            f"{str(p)!r} was written by poisson-nmf {saved} (fit format {fmt}); this is "
            f"poisson-nmf {__version__} (fit format {FIT_FORMAT_VERSION}). Re-render it with "
            f"poisson-nmf {saved}, or fit the data again"
        )
    if "posterior" not in tree.children:
        raise FitFormatError(f"{str(p)!r} has no posterior group; it is not a complete fit")
    for k in _BOOL_ATTRS:
        if k in attrs:
            attrs[k] = bool(attrs[k])
    if is_loadings_tree(tree):
        return tree  # fit_loadings: its settings are attrs of their own, no JSON record
    try:
        json.loads(attrs["settings"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise FitFormatError(
            f"{str(p)!r} has no readable settings; it is not a complete fit"
        ) from None
    return tree


def is_loadings_tree(tree: xr.DataTree) -> bool:
    """Whether ``tree`` holds loadings given W (:func:`poisson_nmf.fit_loadings`): H, no W."""
    post: Any = tree["posterior"] if "posterior" in tree.children else {}
    return "w_source" in tree.attrs and "H" in post and "W" not in post


def _format_version(p: Path, attrs: Any) -> int:
    """Return the file's ``format_version`` as an int (FitFormatError when absent or not one)."""
    if "format_version" not in attrs:
        raise FitFormatError(
            f"{str(p)!r} has no format_version: it was not written by save_fit (or the "
            "file was changed); write fits with `poisson-nmf fit` or save_fit"
        )
    raw = attrs["format_version"]
    raw = raw.item() if isinstance(raw, np.generic | np.ndarray) and np.size(raw) == 1 else raw
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        raw = int(raw)  # an attribute rewritten as text by another tool ("²" is no digit)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise FitFormatError(
            f"{str(p)!r} has format_version {raw!r}, which is not a fit format (a positive "
            "integer); the file was not written by save_fit or has been changed"
        )
    return raw
