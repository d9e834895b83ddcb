"""Writing the report folder of a fit: :func:`write_report`.

See :mod:`poisson_nmf.report` for the files. The image shape of the factors is checked
before anything is written, and stored in the saved fit's ``attrs`` so that a
re-rendered report draws the same figures.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..diagnostics import Diagnosis, diagnose
from ..io import FIT_FORMAT_VERSION, comparison_to_dataset
from ..io import save_fit as _save_fit
from .content import content, settings_of
from .figures import draw_figures, image_axis
from .formatting import json_ready
from .render import to_html, to_markdown

__all__ = ["write_report"]


def _image_shape(idata: xr.DataTree, image_shape: Any) -> list[int] | None:
    if image_shape is None:
        raw = idata.attrs.get("image_shape")
        if raw is None:
            return None
        image_shape = json.loads(raw) if isinstance(raw, str) else raw
    try:
        shape = [int(i) for i in np.atleast_1d(image_shape)]
    except (TypeError, ValueError):
        raise ValueError(
            f"image_shape must be a sequence of positive integers such as (8, 8), got "
            f"{image_shape!r}"
        ) from None
    if not shape or any(i < 1 for i in shape):
        raise ValueError(f"image_shape must be positive integers, got {image_shape!r}")
    post: Any = idata["posterior"] if "posterior" in idata.children else {}
    sizes = [post[v].sizes[d] for v, d in (("W", "row"), ("H", "column")) if v in post]
    if sizes and int(np.prod(shape)) not in sizes:
        raise ValueError(
            f"image_shape {tuple(shape)} holds {int(np.prod(shape))} pixels, but V has "
            f"{' rows and '.join(str(n) for n in sizes)} columns: give the shape of one "
            "image, whose pixels are the rows (or the columns) of V"
        )
    return shape


def _comparison(idata: xr.DataTree, comparison: Any, post: xr.Dataset) -> xr.Dataset | None:
    """Return the MAP-versus-KL comparison (given, or saved with the fit), checked."""
    cmp: xr.Dataset | None = None
    if comparison is not None:
        cmp = (
            comparison if isinstance(comparison, xr.Dataset) else comparison_to_dataset(comparison)
        )
    elif "map_vs_kl" in idata.children:
        cmp = idata["map_vs_kl"].to_dataset()
    if cmp is not None:
        want = (post.sizes["row"], post.sizes["column"], post.sizes["component"])
        got = (cmp.sizes["row"], cmp.sizes["column"], cmp.sizes["component"])
        if got != want:
            raise ValueError(
                f"the comparison is of a {got[0]} x {got[1]} matrix with K = {got[2]}, the "
                f"fit of a {want[0]} x {want[1]} matrix with K = {want[2]}; compare the same "
                "data and K"
            )
    return cmp


def write_report(
    idata: xr.DataTree,
    out_dir: str | Path,
    *,
    diagnosis: Diagnosis | None = None,
    comparison: Any = None,
    image_shape: Sequence[int] | None = None,
    title: str | None = None,
    save_fit: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the diagnostic report of a fit into a folder.

    Parameters
    ----------
    idata : xarray.DataTree
        From :func:`poisson_nmf.sample_posterior` or :func:`poisson_nmf.load_fit`.
    out_dir : str or pathlib.Path
        The report folder (created; files already there are overwritten).
    diagnosis : Diagnosis, optional
        From :func:`poisson_nmf.diagnose`; computed when not given.
    comparison : MAPvsKL or xarray.Dataset, optional
        From :func:`poisson_nmf.compare_map_kl`, for the MAP-versus-KL section. A fit
        that carries a ``map_vs_kl`` group (saved with one) uses that when not given.
    image_shape : sequence of int, optional
        Shape of one image when the columns (or rows) of V are pixels, e.g. ``(8, 8)``;
        default: ``idata.attrs["image_shape"]`` if present. Stored in the saved fit.
    title : str, optional
        Page title (default: "poisson-nmf report: <folder name>").
    save_fit : bool
        Write ``fit.nc`` (the fit, the comparison and the image shape) into the folder.
    progress : callable, optional
        Called with a short label before each step (the command line's progress bar).

    Returns
    -------
    pathlib.Path
        The report folder; its ``index.html`` is the page to open.
    """
    if not isinstance(idata, xr.DataTree) or "posterior" not in idata.children:
        raise TypeError(
            "idata must be an xarray.DataTree with a posterior group (from "
            f"sample_posterior or load_fit), got {type(idata).__name__}"
        )
    if "W" not in idata["posterior"] or "H" not in idata["posterior"]:
        raise ValueError(
            "write_report needs a posterior of W and H (sample_posterior); a tree of "
            "loadings alone (fit_loadings) is summarised by pnmf.diagnose and "
            "pnmf.posterior_summary"
        )
    if diagnosis is not None and not hasattr(diagnosis, "entries"):
        raise TypeError(
            f"diagnosis must be a Diagnosis from pnmf.diagnose, got {type(diagnosis).__name__}"
        )
    shape = _image_shape(idata, image_shape)  # checked before anything is written
    out = Path(out_dir)
    fig_dir = out / "figures"
    step = progress or (lambda label: None)
    post = idata["posterior"].to_dataset()
    cmp = _comparison(idata, comparison, post)  # checked before anything is written
    fig_dir.mkdir(parents=True, exist_ok=True)
    if diagnosis is None:
        step("diagnostics")
        diagnosis = diagnose(idata)
    diag = diagnosis
    figures = draw_figures(idata, diag, cmp, shape, fig_dir, step)
    axis = image_axis(shape, post.sizes["row"], post.sizes["column"])
    step("pages")
    title = title or f"poisson-nmf report: {out.resolve().name}"
    blocks = content(idata, diag, figures, cmp, title, axis)
    (out / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
    (out / "index.html").write_text(to_html(blocks, fig_dir), encoding="utf-8")
    info = {
        "format_version": FIT_FORMAT_VERSION,
        "diagnosis": diag.to_dict(),
        "settings": settings_of(idata),
        "attrs": {k: v for k, v in idata.attrs.items() if k not in ("settings", "modes")},
        "image_shape": shape,
        "map_vs_kl": None if cmp is None else dict(cmp.attrs),
        "figures": sorted(figures),
    }
    (out / "diagnostics.json").write_text(json.dumps(json_ready(info), indent=2), encoding="utf-8")
    if save_fit:
        step("fit.nc")
        tree = idata.copy()
        if shape is not None:
            tree.attrs = {**tree.attrs, "image_shape": json.dumps(shape)}
        _save_fit(tree, out / "fit.nc", comparison=cmp)
    return out
