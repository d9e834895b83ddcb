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

import argparse
import json
import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .memory import DEFAULT_MAX_MEMORY

__all__ = ["main"]

_PRIOR_NAMES = ("w_shape", "w_rate", "h_shape", "h_rate")


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (and exit code 2, as argparse has)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"poisson-nmf: error: {message} (see `{self.prog} --help`)\n")


# ---------------------------------------------------------------------------------------
# progress


class _Progress:
    """A tqdm bar over the steps of a command, redrawn every second while a step runs."""

    def __init__(self, steps: Sequence[str]) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=len(steps),
            file=sys.stderr,
            disable=None,  # only on a terminal
            bar_format="{desc:<24} {bar:24} {n_fmt}/{total_fmt} [{elapsed}]{postfix}",
            leave=False,
        )
        self._started = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        if not self._bar.disable:
            self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._bar.refresh()

    @property
    def shown(self) -> bool:
        """Whether the bar is drawn (stderr is a terminal)."""
        return not self._bar.disable

    def step(self, label: str) -> None:
        """Finish the current step and start the next."""
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_postfix_str("", refresh=False)
        self._bar.set_description_str(label)

    def detail(self, label: str) -> None:
        """Show what the current step is doing."""
        self._bar.set_postfix_str(label)

    def close(self) -> None:
        self._stop.set()
        if self._started:
            self._bar.update(1)
        self._bar.close()


@contextmanager
def _progress(steps: Sequence[str]) -> Iterator[_Progress]:
    p = _Progress(steps)
    try:
        yield p
    finally:
        p.close()


# ---------------------------------------------------------------------------------------
# input


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


def parse_priors(spec: str | None, *, default: str = "gamma") -> Any:
    """Turn a ``--priors`` value into :class:`poisson_nmf.GammaPriors` or ``None``.

    Parameters
    ----------
    spec : str or None
        ``"flat"``, ``"a_w,b_w,a_h,b_h"`` or ``"name=value,..."`` (names ``w_shape``,
        ``w_rate``, ``h_shape``, ``h_rate``); ``None`` gives the default.
    default : {"gamma", "flat"}
        What ``None`` means: ``GammaPriors()`` or flat priors (``None``).

    Returns
    -------
    GammaPriors or None
    """
    from .priors import GammaPriors

    if spec is None:
        return GammaPriors() if default == "gamma" else None
    s = spec.strip().lower()
    if s == "flat":
        return None
    parts = [p.strip() for p in s.split(",") if p.strip()]
    try:
        if all("=" not in p for p in parts):
            if len(parts) != 4:
                raise ValueError
            values = dict(zip(_PRIOR_NAMES, map(float, parts), strict=True))
        else:
            values = {}
            for p in parts:
                name, _, val = p.partition("=")
                if name.strip() not in _PRIOR_NAMES:
                    raise ValueError
                values[name.strip()] = float(val)
    except ValueError:
        raise ValueError(
            f"--priors {spec!r} is not understood; give 'flat', four numbers "
            "'a_w,b_w,a_h,b_h', or pairs such as 'w_shape=1.1,h_rate=0.5'"
        ) from None
    return GammaPriors(**values)


def _load(path: str, n_components: int, args: argparse.Namespace) -> tuple[Any, int]:
    from .data import as_counts, check_n_components
    from .io import read_counts

    K = check_n_components(n_components)  # before reading: cheap checks first
    V = read_counts(
        path,
        index=not args.no_index,
        transpose=args.transpose,
        duplicates="sum" if args.sum_duplicates else "raise",
    )
    return as_counts(V, missing=args.missing, name=f"DATA {path!r}"), K


# ---------------------------------------------------------------------------------------
# commands


def _print_identity(counts: Any, W: np.ndarray, H: np.ndarray, seed: int) -> bool:
    from .divergence import kl_divergence, loglik_constant, poisson_loglik

    F, N = counts.shape
    K = W.shape[1]
    rng = np.random.default_rng(seed)
    const = loglik_constant(counts)
    print("identity log p(V | WH) + D(V || WH) = constant, checked at the fit and 3 random points:")
    points = [(W, H)] + [
        (rng.gamma(1.0, 1.0, (F, K)), rng.gamma(1.0, 1.0, (K, N))) for _ in range(3)
    ]
    worst = 0.0
    for Wi, Hi in points:
        ll, kl = poisson_loglik(counts, (Wi, Hi)), kl_divergence(counts, (Wi, Hi))
        rel = abs(ll + kl - const) / abs(const)
        worst = max(worst, rel)
        print(f"  loglik {ll:14.4f} + KL {kl:14.4f} = {ll + kl:.6f}   (relative error {rel:.1e})")
    print(f"  constant Σ[v log v - v - log v!] = {const:.6f}")
    if worst > 1e-10:
        print(f"error: the identity fails (relative error {worst:.1e})", file=sys.stderr)
        return False
    print("the maximum-likelihood (W, H) is the KL-minimising (W, H): the identity holds")
    return True


def _sample_and_report(
    counts: Any,
    K: int,
    priors: Any,
    args: argparse.Namespace,
    bar: _Progress,
    cmp: Any = None,
    image_shape: Sequence[int] | None = None,
) -> tuple[Any, Path]:
    from .io import load_fit, save_fit
    from .sample import sample_posterior

    bar.step("posterior")
    if getattr(args, "method", "nuts") == "vi":
        from .stopping import MAX_DRAWS

        nuts_only = [
            opt
            for opt, is_set in (
                ("--resume", getattr(args, "resume", None) is not None),
                ("--max-draws", args.max_draws != MAX_DRAWS),
                ("--tune", args.tune != 1000),
                ("--chains", args.chains != 4),
            )
            if is_set
        ]
        if nuts_only:
            raise ValueError(
                f"{', '.join(nuts_only)}: only for --method nuts (a variational fit has no "
                "chains to tune, continue or stop); leave them out with --method vi"
            )
        bar.detail("mean-field variational approximation")
        # --draws unset leaves VI its own default (sample_vi); --tune and --chains
        # other than their defaults are refused there (NUTS only)
        idata = sample_posterior(
            counts, K, priors=priors, method="vi", draws=args.draws, tune=args.tune,
            chains=args.chains, random_seed=args.seed, pointwise_draws=args.pointwise_draws,
        )  # fmt: skip
    else:
        resume = getattr(args, "resume", None)
        if resume is not None:
            bar.detail(f"continuing {resume}'s chains")
            resume = load_fit(resume)
        elif args.draws is None:
            bar.detail(f"{args.chains} chains x {args.tune} + up to {args.max_draws} steps")
        else:
            bar.detail(f"{args.chains} chains x {args.tune} + {args.draws} steps")
        idata = sample_posterior(
            counts,
            K,
            priors=priors,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            max_draws=args.max_draws,
            resume=resume,
            random_seed=args.seed,
            pointwise_draws=args.pointwise_draws,
            max_memory=args.max_memory,
            progress=bar.detail if bar.shown else False,
        )
    # the fit is saved before anything else can fail: diagnostics and the report can
    # always be made again from it (`poisson-nmf report`)
    bar.detail("saving fit.nc")
    if image_shape is not None:
        idata.attrs["image_shape"] = json.dumps(list(image_shape))
    out = Path(args.out)
    save_fit(idata, out / "fit.nc", comparison=cmp)
    bar.step("diagnostics")
    return _diagnose_and_report(idata, args, bar, cmp, image_shape)


def _diagnose_and_report(
    idata: Any,
    args: argparse.Namespace,
    bar: _Progress,
    cmp: Any = None,
    image_shape: Sequence[int] | None = None,
) -> tuple[Any, Path]:
    from .diagnostics import diagnose
    from .report import write_report

    out = Path(args.out)
    diag = diagnose(idata)
    bar.step("report")
    write_report(
        idata,
        out,
        diagnosis=diag,
        comparison=cmp,
        image_shape=image_shape,
        save_fit=False,
        progress=bar.detail,
    )
    return diag, out


def _demo(args: argparse.Namespace) -> int:
    from .data import ZeroRowsColumnsWarning, as_counts, check_n_components
    from .datasets import load_digits
    from .optim.compare import compare_map_kl
    from .optim.kl import kl_nmf
    from .priors import GammaPriors

    K = check_n_components(args.components)
    digits = load_digits()
    V = digits[: args.rows] if args.rows else digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroRowsColumnsWarning)  # said in the data line
        counts = as_counts(V)
    n_zero = int((np.asarray(V.sum("row")) == 0).sum())
    F, N = counts.shape
    steps = ["KL-NMF", "MAP versus KL", "posterior", "diagnostics", "report"]
    t0 = time.perf_counter()
    with _progress(steps) as bar:
        print(f"data: {digits.attrs['description']}")
        print(
            f"      V is {F} x {N} counts (0..{int(V.max())}), "
            f"{counts.nz_values.size / (F * N):.1%} non-zero, total {counts.total:.0f}"
            + (
                f" (the first {F} of {digits.sizes['row']} images)"
                if F < digits.sizes["row"]
                else ""
            )
        )
        print(f"      {n_zero} pixel columns are zero in every image here; they are kept")
        bar.step("KL-NMF")
        t = time.perf_counter()
        res = kl_nmf(counts, K, random_seed=args.seed)
        print(
            f"KL-NMF, K = {K}: D(V || WH) = {res.objective:.2f} after {res.n_iter} iterations "
            f"({time.perf_counter() - t:.1f} s, converged: {res.converged})"
        )
        if not _print_identity(counts, res.W, res.H, args.seed):
            return 1
        bar.step("MAP versus KL")
        t = time.perf_counter()
        cmp = compare_map_kl(counts, K, random_seed=args.seed)
        print(f"MAP versus KL from one start ({time.perf_counter() - t:.1f} s):")
        print("  " + cmp.summary().replace("\n", "\n  "))
        priors = GammaPriors()
        diag, out = _sample_and_report(
            counts, K, priors, args, bar, cmp=cmp, image_shape=digits.attrs["image_shape"]
        )
    print(
        f"posterior: {diag.n_chains} chains x {diag.n_draws} draws, Gamma(1, 1) priors; "
        f"whole job {time.perf_counter() - t0:.0f} s"
    )
    print(diag)
    print(f"report: {out / 'index.html'}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    priors = parse_priors(args.priors, default="gamma")
    if priors is None:
        raise ValueError(
            "--priors flat gives an improper posterior (the scale of each component is "
            "unbounded); give Gamma priors, e.g. --priors 1,1,1,1"
        )
    auto = args.components == "auto"
    counts, K = _load(args.data, 1 if auto else args.components, args)
    if auto:
        K = _auto_components(counts, args.seed)
    if args.out is None:
        args.out = str(Path("reports") / Path(args.data).name.split(".")[0])
    steps = (["MAP versus KL"] if args.compare else []) + ["posterior", "diagnostics", "report"]
    cmp = None
    with _progress(steps) as bar:
        if args.compare:
            from .optim.compare import compare_map_kl

            bar.step("MAP versus KL")
            cmp = compare_map_kl(counts, K, priors=priors, random_seed=args.seed)
        diag, out = _sample_and_report(counts, K, priors, args, bar, cmp, args.image_shape)
    print(diag)
    print(f"report: {out / 'index.html'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .optim.compare import compare_map_kl

    priors = parse_priors(args.priors, default="flat")
    counts, K = _load(args.data, args.components, args)
    with _progress(["MAP versus KL"]) as bar:
        bar.step("MAP versus KL")
        cmp = compare_map_kl(counts, K, priors=priors, random_seed=args.seed)
    F, N = counts.shape
    kind = "flat priors (KL-NMF)" if priors is None else "Gamma priors (penalised KL)"
    print(f"MAP versus KL: V is {F} x {N}, K = {K}, {kind}, seed {args.seed}")
    print(cmp.summary())
    return 0


def _auto_components(counts: Any, seed: int) -> int:
    """``fit --components auto``: K by cross-validation over the default grid."""
    from .rank import DEFAULT_GRID, select_rank

    F, N = counts.shape
    # the grid stops where (F + N) K would reach half the observed entries
    grid = [k for k in DEFAULT_GRID if (F + N) * k * 2 <= counts.n_observed]
    if len(grid) < 2:
        raise ValueError(
            f"--components auto: V ({F} x {N}) is too small to choose K from data; give K"
        )
    sel = select_rank(counts, grid, random_seed=seed)
    print(sel.summary())
    return sel.best


def _markdown(table: Any) -> str:
    cols = list(table.columns)
    fmt = [("{:d}" if str(table[c].dtype).startswith("int") else "{:.2f}") for c in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(f.format(v) for f, v in zip(fmt, row, strict=True)) + " |")
    return "\n".join(lines) + "\n"


def _rank(args: argparse.Namespace) -> int:
    import json
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    from .parallel import connect_scheduler
    from .rank import parse_components, select_rank

    ks = parse_components(args.components)  # cheap checks first, nothing written yet
    priors = parse_priors(args.priors, default="gamma") if args.priors else None
    if args.priors and priors is None:
        raise ValueError("--priors flat: a held-out count can get rate 0; give Gamma priors")
    if args.workers is not None and args.scheduler is not None:
        raise ValueError("give --workers or --scheduler, not both")
    counts = _load(args.data, 1, args)[0]
    out = Path(args.out or Path("reports") / f"rank-{Path(args.data).name.split('.')[0]}")
    client = connect_scheduler(args.scheduler) if args.scheduler else None
    pool = ThreadPoolExecutor(args.workers) if args.workers and args.workers > 1 else None
    try:
        with _progress(["rank"]) as bar:
            bar.step(f"rank ({args.method})")
            sel = select_rank(counts, ks, method=args.method, folds=args.folds,
                              executor=client or pool, random_seed=args.seed, priors=priors,
                              n_repeats=args.repeats, n_restarts=args.restarts,
                              progress=bar.detail if bar.shown else False)  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()
        if client is not None:
            client.close()
    # written to a folder beside the target, then moved: never half a report
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        sel.table.to_csv(tmp / "table.csv", index=False)
        sel.folds.to_csv(tmp / "folds.csv", index=False)
        sel.wins.to_csv(tmp / "wins.csv", index=False)
        (tmp / "table.md").write_text(_markdown(sel.table))
        import matplotlib.pyplot as plt

        ax = sel.plot()
        ax.figure.savefig(tmp / "rank.png", dpi=120, bbox_inches="tight")
        plt.close(ax.figure)
        choice = {"best": sel.best, "rule": sel.rule, "rule_text": sel.rule_text,
                  "stability": sel.stability, "elapsed_s": sel.elapsed_s}  # fmt: skip
        (tmp / "choice.json").write_text(json.dumps(choice, indent=2) + "\n")
        settings = {**sel.settings, "data": str(args.data), "workers": args.workers,
                    "scheduler": args.scheduler}  # fmt: skip
        (tmp / "settings.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(sel.summary())
    print(f"report: {out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .io import load_fit
    from .report import write_report

    src = Path(args.fit)
    tree = load_fit(src)
    out = Path(args.out)
    with _progress(["report"]) as bar:
        bar.step("report")
        write_report(tree, out, save_fit=False, progress=bar.detail)
    dest = out / "fit.nc"
    if not (dest.exists() and dest.resolve() == src.resolve()):
        shutil.copyfile(src, dest)
    print(f"report: {out / 'index.html'}")
    return 0


# ---------------------------------------------------------------------------------------
# the parser


def _sampling_options(p: argparse.ArgumentParser, tune: int, chains: int,
                      pointwise: int) -> None:  # fmt: skip
    from .stopping import MAX_DRAWS

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


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="poisson-nmf",
        description="Bayesian Poisson NMF in PyMC: MAP = KL-NMF, posteriors, ArviZ reports.",
        epilog="DATA: .csv/.tsv/.txt (header and index; also .gz), .mtx (Matrix Market), "
        ".npz (scipy.sparse), .npy, .parquet, .h5ad or a 10x folder. Bad input: one line on "
        "stderr, exit code 2.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
    d.set_defaults(func=_demo)

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
                   "tuning, chains and seed are used")  # fmt: skip
    _data_options(f)
    f.set_defaults(func=_fit)

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
    c.set_defaults(func=_compare)

    r = sub.add_parser(
        "report",
        help="re-render the report of a saved fit (never refits)",
        description="Re-render the report folder from a fit.nc written by `fit` or `demo`. "
        "A fit written by another version of poisson-nmf is refused.",
    )
    r.add_argument("fit", metavar="FIT", help="a fit.nc file")
    r.add_argument("--out", required=True, metavar="DIR", help="report folder")
    r.set_defaults(func=_report)

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
    k.set_defaults(func=_rank)
    return p


def _show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    text = " ".join(str(message).split())
    print(f"poisson-nmf: warning: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    from . import exceptions

    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed)
        return e.code if isinstance(e.code, int) else 2
    func: Callable[[argparse.Namespace], int] = args.func
    with warnings.catch_warnings():
        # the package's own warnings, one line each; third-party noise stays out
        warnings.simplefilter("ignore")
        for name in exceptions.__all__:
            cat = getattr(exceptions, name)
            if issubclass(cat, Warning):
                warnings.filterwarnings("always", category=cat)
        # plain UserWarnings the package raises (select_rank's parameter count, ...)
        warnings.filterwarnings("always", category=UserWarning, module=r"poisson_nmf(\.|$)")
        warnings.filterwarnings("always", message=".*chains sit in")
        warnings.showwarning = _show_warning
        try:
            return int(func(args))
        except (ValueError, TypeError, OSError) as e:
            raw = str(e)
            if isinstance(e, OSError) and e.strerror and e.filename is not None:
                raw = f"{e.strerror}: {e.filename}"  # not "[Errno 20] ... PosixPath(...)"
            text = " ".join(raw.split())
            print(f"poisson-nmf: error: {text}", file=sys.stderr)
            return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
