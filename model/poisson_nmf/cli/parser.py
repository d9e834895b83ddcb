"""The argparse layer of the command line: options, their types and help.

Nothing here runs a command: :func:`build_parser` returns a parser whose namespaces
carry ``command`` (the name of a function of :mod:`poisson_nmf.cli.commands`) and that
function's keyword arguments, one per option.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from ..memory import DEFAULT_MAX_MEMORY

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (and exit code 2, as argparse has)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"poisson-nmf: error: {message} (see `{self.prog} --help`)\n")


def _int_at_least(lowest: int) -> Callable[[str], int]:
    """Make an argparse type that accepts integers >= lowest."""
    what = "a positive integer" if lowest == 1 else f"an integer >= {lowest}"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if v < lowest:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1)
_count = _int_at_least(0)


def _components(text: str) -> Any:
    # K is checked by check_n_components, with the library's own message
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--components must be a positive integer, got {text!r} (fit also takes 'auto')"
        ) from None


def _image_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 8x8, got {text!r}") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes such as 8x8, got {text!r}")
    return shape


def _sampling_options(p: argparse.ArgumentParser, tune: int, chains: int,
                      pointwise: int) -> None:  # fmt: skip
    from ..sampling.stopping import MAX_DRAWS

    p.add_argument("--draws", type=_positive_int, default=None, metavar="N",
                   help="exactly N draws per chain (default: draw until every entry has "
                   "R-hat <= 1.01 and ESS >= 400, checked every 500 draws, at most "
                   "--max-draws)")  # fmt: skip
    p.add_argument("--max-draws", type=_positive_int, default=MAX_DRAWS, metavar="N",
                   help=f"most draws per chain without --draws (default {MAX_DRAWS})")  # fmt: skip
    p.add_argument("--tune", type=_positive_int, default=tune, metavar="N",
                   help=f"tuning steps per chain (default {tune})")  # fmt: skip
    p.add_argument("--chains", type=_positive_int, default=chains, metavar="N",
                   help=f"chains (default {chains})")  # fmt: skip
    p.add_argument("--pointwise-draws", type=_count, default=pointwise, metavar="N",
                   help="draws kept for the predictive checks and LOO "
                   f"(default {pointwise}; 0 leaves them out)")  # fmt: skip
    p.add_argument("--max-memory", default=DEFAULT_MAX_MEMORY, metavar="SIZE",
                   help="budget for everything the run stores and computes after sampling, "
                   f"e.g. 8GB or none (default {DEFAULT_MAX_MEMORY}): past it the pointwise "
                   "draws are thinned, or the run stops before sampling")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")


_DATA_HELP = "counts: .csv/.tsv/.txt (also .gz), .mtx, .npz, .npy, .parquet, .h5ad or a 10x folder"


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--missing", choices=("raise", "mask"), default="raise",
                   help="empty cells and NaN: refuse them (raise, default) or leave them "
                   "out of the likelihood (mask)")  # fmt: skip
    p.add_argument("--no-index", action="store_true",
                   help="tables: the first column is data, not row labels")  # fmt: skip
    p.add_argument("--transpose", action="store_true",
                   help="swap rows and columns (tables stored the other way round)")  # fmt: skip
    p.add_argument("--sum-duplicates", action="store_true",
                   help="sum rows (columns) sharing a label instead of refusing them")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """Build the ``poisson-nmf`` parser; each sub-command sets ``command`` to its function."""
    p = _Parser(
        prog="poisson-nmf",
        description="Bayesian Poisson NMF in PyMC: MAP = KL-NMF, posteriors, ArviZ reports.",
        epilog="DATA: .csv/.tsv/.txt (header and index; also .gz), .mtx (Matrix Market), "
        ".npz (scipy.sparse), .npy, .parquet, .h5ad or a 10x folder. Bad input: one line on "
        "stderr, exit code 2.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_demo(sub)
    _add_fit(sub)
    _add_compare(sub)
    _add_report(sub)
    _add_rank(sub)
    return p


def _add_demo(sub: Any) -> None:
    """Add the ``demo`` sub-command."""
    d = sub.add_parser(
        "demo",
        help="the main job on the bundled digits",
        description="The main job on scikit-learn's bundled 8x8 digits: KL-NMF and the "
        "Poisson/KL identity, the PyMC MAP against KL-NMF, the posterior (nutpie), its "
        "diagnostics and the report folder. The defaults finish in a few minutes on 2 "
        "cores; --rows 0 uses all 1797 images (slow).",
    )
    d.add_argument(
        "--out", default="reports/demo", metavar="DIR", help="report folder (default reports/demo)"
    )
    d.add_argument("--components", type=_components, default=4, metavar="K",
                   help="number of components (default 4)")  # fmt: skip
    d.add_argument("--rows", type=_count, default=200, metavar="N",
                   help="use the first N images (default 200; 0 = all 1797)")  # fmt: skip
    # draws until clean (R-hat <= 1.01 on all 1056 entries needed ~1500 draws per chain
    # with seed 0); 1-2 minutes of sampling on 2 cores
    _sampling_options(d, tune=1000, chains=4, pointwise=200)
    d.set_defaults(command="demo")


def _add_fit(sub: Any) -> None:
    """Add the ``fit`` sub-command."""
    f = sub.add_parser(
        "fit",
        help="sample the posterior of DATA and write its report",
        description="Sample the posterior of V ~ Poisson(WH) with Gamma priors, diagnose it "
        "and write the report folder (with the fit as fit.nc).",
    )
    f.add_argument("data", metavar="DATA", help=_DATA_HELP)
    f.add_argument("--components", "-k", type=_components, required=True, metavar="K",
                   help="number of components, or 'auto': chosen by `rank` over "
                   "1..12 first")  # fmt: skip
    f.add_argument("--priors", default=None, metavar="SPEC",
                   help="Gamma priors: 'a_w,b_w,a_h,b_h' or 'w_shape=1.1,...' "
                   "(default 1,1,1,1)")  # fmt: skip
    f.add_argument(
        "--out", default=None, metavar="DIR", help="report folder (default reports/<DATA name>)"
    )
    f.add_argument("--compare", action="store_true",
                   help="also fit the MAP and KL-NMF: the MAP-versus-KL section")  # fmt: skip
    f.add_argument("--image-shape", type=_image_shape, default=None, metavar="HxW",
                   help="draw components as images of this shape, e.g. 8x8")  # fmt: skip
    f.add_argument("--method", choices=("nuts", "vi"), default="nuts",
                   help="nuts: exact posterior draws (default); vi: a mean-field variational "
                   "approximation, fast on large tables, its intervals too narrow (the report "
                   "says by how much it is off: PSIS k-hat)")  # fmt: skip
    _sampling_options(f, tune=1000, chains=4, pointwise=500)
    f.add_argument("--resume", default=None, metavar="FIT",
                   help="continue the chains of a saved fit (fit.nc of a run stopped at its "
                   "budget) on the same DATA, to --max-draws (or --draws); its priors, "
                   "tuning, chains and seed are used (--priors, --tune, --chains, --seed "
                   "other than the stored run's are refused)")  # fmt: skip
    _data_options(f)
    f.set_defaults(command="fit")


def _add_compare(sub: Any) -> None:
    """Add the ``compare`` sub-command."""
    c = sub.add_parser(
        "compare",
        help="MAP versus KL-NMF on DATA",
        description="Fit KL-NMF and the PyMC MAP from one start and check that they agree "
        "(objective gap after cross-polishing, KKT residuals, the identity).",
    )
    c.add_argument("data", metavar="DATA", help=_DATA_HELP)
    c.add_argument("--components", "-k", type=_components, required=True, metavar="K",
                   help="number of components")  # fmt: skip
    c.add_argument("--priors", default=None, metavar="SPEC",
                   help="'flat' (default) or Gamma priors 'a_w,b_w,a_h,b_h'")  # fmt: skip
    c.add_argument(
        "--seed", type=int, default=0, metavar="S", help="random seed of the start (default 0)"
    )
    _data_options(c)
    c.set_defaults(command="compare")


def _add_report(sub: Any) -> None:
    """Add the ``report`` sub-command."""
    r = sub.add_parser(
        "report",
        help="re-render the report of a saved fit (never refits)",
        description="Re-render the report folder from a fit.nc written by `fit` or `demo`. "
        "A fit written by another version of poisson-nmf is refused.",
    )
    r.add_argument("fit", metavar="FIT", help="a fit.nc file")
    r.add_argument("--out", required=True, metavar="DIR", help="report folder")
    r.set_defaults(command="report")


def _add_rank(sub: Any) -> None:
    """Add the ``rank`` sub-command."""
    k = sub.add_parser(
        "rank",
        help="choose the number of components K",
        description="Score each K of a grid by held-out elpd (cross-validation of the MAP, "
        "or PSIS-LOO of posteriors on small tables), choose K by the one-standard-error "
        "rule and write table.csv, table.md, folds.csv, wins.csv, rank.png, choice.json and "
        "settings.json.",
    )
    k.add_argument("data", metavar="DATA", help=_DATA_HELP)
    k.add_argument("--components", "-k", required=True, metavar="GRID",
                   help="K grid: '2:12' (12 included), '2:12:2' or '2,4,6'")  # fmt: skip
    k.add_argument("--method", choices=("cv", "loo"), default="cv",
                   help="cv: masked-entry cross-validation (default); loo: PSIS-LOO")  # fmt: skip
    k.add_argument("--folds", type=_int_at_least(2), default=5, metavar="N",
                   help="cross-validation folds (default 5)")  # fmt: skip
    k.add_argument(
        "--repeats",
        type=_positive_int,
        default=1,
        metavar="N",
        help="repeat the cross-validation with new folds (stability; default 1)",
    )
    k.add_argument("--restarts", type=_positive_int, default=1, metavar="N",
                   help="random starts per fit (default 1)")  # fmt: skip
    k.add_argument(
        "--priors",
        default=None,
        metavar="SPEC",
        help="Gamma priors of the fits (default 1.1,0.1,1.1,0.1 for cv)",
    )
    k.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="fits at once in this process (threads)")  # fmt: skip
    k.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a Dask scheduler, e.g. tcp://host:8786 (needs poisson-nmf[dask])",
    )
    k.add_argument("--out", default=None, metavar="DIR",
                   help="report folder (default reports/rank-<DATA name>)")  # fmt: skip
    k.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    _data_options(k)
    k.set_defaults(command="rank")
