"""Files in and out: count matrices (DATA) and saved fits (netCDF).

DATA formats, chosen by the file's extension:

- ``.csv`` / ``.tsv`` (also ``.txt``, ``.tab``: tab-separated): a header line with the
  column names and a first column with the row names; every other cell a count.
- ``.mtx`` (also ``.mtx.gz``): Matrix Market, coordinate (sparse) or array (dense).
- ``.npz``: a SciPy sparse matrix saved by :func:`scipy.sparse.save_npz`.
- ``.npy``: a 2-D NumPy array saved by :func:`numpy.save` (no pickles).

The counts are validated by :func:`poisson_nmf.as_counts` (negative, fractional, NaN
values are refused with the position of the first bad entry).

A fit is the :func:`poisson_nmf.sample_posterior` DataTree written as one netCDF-4 file
(h5netcdf) with root attributes ``format`` (:data:`FIT_FORMAT`), ``format_version``,
``model`` (:data:`MODEL_TAG`) and ``poisson_nmf_version``, beside the sampler's own
``settings`` (JSON). :func:`load_fit` refuses, with :class:`FitFormatError`, a file that
is not such a fit, that holds another model, or that another version of poisson-nmf
wrote: the report of a fit is only re-rendered by the code that made it (install that
version, or fit again). An optional group ``map_vs_kl`` holds the MAP-versus-KL
comparison (:func:`comparison_to_dataset`).
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

from .exceptions import FitFormatError

__all__ = [
    "FIT_FORMAT",
    "FIT_FORMAT_VERSION",
    "MODEL_TAG",
    "FitFormatError",
    "comparison_to_dataset",
    "load_fit",
    "read_counts",
    "save_fit",
]

FIT_FORMAT = "poisson-nmf-fit"
FIT_FORMAT_VERSION = 1
MODEL_TAG = "poisson-gamma-nmf"  # V ~ Poisson(WH), W and H ~ Gamma(shape, rate)

_TEXT = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": "\t"}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".mtx" if name.endswith((".mtx", ".mtx.gz")) else path.suffix.lower()


def read_counts(path: str | Path) -> Any:
    """Read a count matrix DATA from a file.

    Parameters
    ----------
    path : str or pathlib.Path
        A ``.csv``/``.tsv`` table (header and index), a Matrix Market ``.mtx``, a SciPy
        sparse ``.npz`` or a NumPy ``.npy`` file; see the module docstring.

    Returns
    -------
    xarray.DataArray or scipy.sparse.csr_array, shape (F, N)
        Tables become a DataArray with dims ``("row", "column")`` and the file's row
        and column names as coordinates; sparse files stay sparse. Pass the result to
        :func:`poisson_nmf.as_counts` (every fitting function does) to validate it.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        For an unknown extension or a file that cannot be read as that format.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"DATA file {str(p)!r} does not exist")
    kind = _suffix(p)
    try:
        if kind in _TEXT:
            df = pd.read_csv(p, sep=_TEXT[kind], index_col=0)
            if df.shape[1] == 0:
                raise ValueError("it has no data columns (expected a header and an index column)")
            return xr.DataArray(
                df.to_numpy(),
                dims=("row", "column"),
                coords={"row": np.asarray(df.index), "column": np.asarray(df.columns)},
                name=p.stem,
            )
        if kind == ".mtx":
            m = scipy.io.mmread(p)
            return sp.csr_array(m) if sp.issparse(m) else np.asarray(m)
        if kind == ".npz":
            return sp.csr_array(sp.load_npz(p))
        if kind == ".npy":
            return np.load(p, allow_pickle=False)
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise ValueError(f"cannot read DATA file {str(p)!r} as {kind}: {e}") from None
    raise ValueError(
        f"DATA file {str(p)!r} has an unknown extension {kind!r}; use .csv, .tsv, .mtx, "
        ".npz (scipy.sparse) or .npy"
    )


def comparison_to_dataset(cmp: Any) -> xr.Dataset:
    """Return the MAP-versus-KL comparison as a Dataset, for a saved fit and the report.

    Parameters
    ----------
    cmp : poisson_nmf.compare.MAPvsKL
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
        From :func:`poisson_nmf.sample_posterior` (or :func:`load_fit`).
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
    from . import __version__

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
        The fit, loaded into memory (the file is closed).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    FitFormatError
        When the file is not a poisson-nmf fit, holds another model, or was written by
        another version of poisson-nmf or of the fit format.
    """
    from . import __version__

    p = Path(path)
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
    fmt = int(attrs.get("format_version", -1))
    if saved != __version__ or fmt != FIT_FORMAT_VERSION:
        raise FitFormatError(
            f"{str(p)!r} was written by poisson-nmf {saved} (fit format {fmt}); this is "
            f"poisson-nmf {__version__} (fit format {FIT_FORMAT_VERSION}). Re-render it with "
            f"poisson-nmf {saved}, or fit the data again"
        )
    if "posterior" not in tree.children:
        raise FitFormatError(f"{str(p)!r} has no posterior group; it is not a complete fit")
    if "approximate" in attrs:
        attrs["approximate"] = bool(attrs["approximate"])
    try:
        json.loads(attrs["settings"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise FitFormatError(
            f"{str(p)!r} has no readable settings; it is not a complete fit"
        ) from None
    return tree
