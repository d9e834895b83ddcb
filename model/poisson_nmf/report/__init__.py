"""The diagnostic report of a fit: a folder ``reports/<run>/`` a person can open.

:func:`write_report` (:mod:`.writer`) writes

- ``index.html``: one self-contained page (figures embedded as base64 ``data:`` URIs,
  inline CSS, no script, no remote resource): opens from disk, offline;
- ``report.md``: the same content in Markdown, figures linked from ``figures/``;
- ``diagnostics.json``: the verdict, every check and the run's settings;
- ``figures/*.png``: the figures (:mod:`.figures`, captions in :data:`FIGURES`);
- ``fit.nc``: the fit itself (:func:`poisson_nmf.io.save_fit`), so that
  ``poisson-nmf report fit.nc --out DIR`` re-renders the report without refitting.

The page is a list of blocks, one function per section (:mod:`.content`), rendered as
Markdown and as HTML (:mod:`.render`); numbers are written by :mod:`.formatting`.

The names are loaded on first use, so that :mod:`poisson_nmf.diagnostics` can use the
formatting without importing the writer (which imports it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .figures import FIGURES
    from .writer import write_report

__all__ = ["FIGURES", "write_report"]


def __getattr__(name: str) -> Any:
    if name == "FIGURES":
        from .figures import FIGURES

        return FIGURES
    if name == "write_report":
        from .writer import write_report

        return write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
