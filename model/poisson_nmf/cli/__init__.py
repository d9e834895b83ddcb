"""Command line: ``poisson-nmf ...`` and ``python -m poisson_nmf ...``.

::

    poisson-nmf demo [--out reports/demo]          the main job on the bundled digits
    poisson-nmf fit DATA --components K [--priors SPEC] [--out DIR]
    poisson-nmf compare DATA --components K        MAP versus KL
    poisson-nmf report FIT --out DIR               re-render a saved fit, never refits
    poisson-nmf rank DATA --components 2:12 [--method cv|loo] [--workers N]
                [--scheduler ADDRESS] [--out DIR]  choose K (2:12 includes 12)

DATA is a CSV/TSV/TXT table (header and index; also ``.gz``), a Matrix Market ``.mtx``, a
SciPy sparse ``.npz``, a NumPy ``.npy``, a ``.parquet`` table, an AnnData ``.h5ad`` or a
10x folder (:func:`poisson_nmf.io.read_counts`); ``--missing mask`` leaves empty cells out
of the likelihood, ``--no-index`` reads a table without a label column, ``--transpose``
swaps rows and columns, ``--sum-duplicates`` sums rows or columns sharing a label.
``fit`` saves ``fit.nc`` right after sampling, before the diagnostics and the report, so
that a failure there never loses the draws. ``--priors`` is ``flat``
(``compare`` only: the posterior of flat priors is improper), four numbers
``a_w,b_w,a_h,b_h`` (shapes and rates of the Gamma priors on W and H), or
``name=value`` pairs such as ``w_shape=1.1,h_rate=0.5`` (the rest default to 1).

Bad input (a missing file, negative or fractional counts, an impossible K, an unknown
option, a fit from another version) is answered by one line on standard error,
``poisson-nmf: error: ...``, and exit code 2, never a traceback. Progress bars (tqdm)
go to standard error, and only when it is a terminal. Results go to standard output;
the last line of ``demo``, ``fit`` and ``report`` is the path of the report's
``index.html``. A ``fail`` verdict is reported, not turned into an exit code: the
command ran.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from . import commands
from .commands import parse_priors
from .parser import build_parser

__all__ = ["main", "parse_priors"]


def _show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    text = " ".join(str(message).split())
    print(f"poisson-nmf: warning: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    The layers: :mod:`.parser` turns ``argv`` into options, this function hands them as
    keywords to the command's function in :mod:`.commands` (which calls the library) and
    turns bad input into one line on standard error and exit code 2.
    """
    from .. import exceptions

    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        options = vars(build_parser().parse_args(argv))
    except SystemExit as e:  # --help (0) or a usage error (2, already printed)
        return e.code if isinstance(e.code, int) else 2
    command = getattr(commands, options.pop("command"))
    with warnings.catch_warnings():
        # the package's own warnings, one line each; third-party noise stays out
        warnings.simplefilter("ignore")
        for name in exceptions.__all__:
            cat = getattr(exceptions, name)
            if isinstance(cat, type) and issubclass(cat, Warning):
                warnings.filterwarnings("always", category=cat)
        # plain UserWarnings the package raises (select_rank's parameter count, ...)
        warnings.filterwarnings("always", category=UserWarning, module=r"poisson_nmf(\.|$)")
        warnings.filterwarnings("always", message=".*chains sit in")
        warnings.showwarning = _show_warning
        try:
            return int(command(**options))
        except (ValueError, TypeError, OSError) as e:
            raw = str(e)
            if isinstance(e, OSError) and e.strerror and e.filename is not None:
                raw = f"{e.strerror}: {e.filename}"  # not "[Errno 20] ... PosixPath(...)"
            text = " ".join(raw.split())
            print(f"poisson-nmf: error: {text}", file=sys.stderr)
            return 2
