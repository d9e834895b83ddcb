"""The commands of ``poisson-nmf``: one function per command, calling the library.

Each takes its options as keywords (the names of :mod:`.parser`'s options), prints its
results to standard output and returns the exit code; bad input raises ``ValueError``,
``TypeError`` or ``OSError``, which :func:`poisson_nmf.cli.main` turns into one line.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._validation import DEFAULT_PRIORS
from .progress import StepBar, step_bar

__all__ = ["auto_components", "compare", "demo", "fit", "parse_priors", "rank", "report"]

_PRIOR_NAMES = ("w_shape", "w_rate", "h_shape", "h_rate")


@dataclass(frozen=True, slots=True)
class Reading:
    """How to read DATA (``--missing``, ``--no-index``, ``--transpose``, ``--sum-duplicates``)."""

    missing: str = "raise"
    no_index: bool = False
    transpose: bool = False
    sum_duplicates: bool = False


@dataclass(frozen=True, slots=True)
class Sampling:
    """The posterior run's options (``--draws`` ... ``--seed``, ``--method``, ``--resume``)."""

    draws: int | None
    max_draws: int
    tune: int
    chains: int
    pointwise_draws: int
    max_memory: Any
    seed: int
    method: str = "nuts"
    resume: str | None = None


def parse_priors(spec: str | None, *, default: str = "gamma") -> Any:
    """Turn a ``--priors`` value into :class:`poisson_nmf.GammaPriors` or ``None``.

    Parameters
    ----------
    spec : str or None
        ``"flat"``, ``"a_w,b_w,a_h,b_h"`` or ``"name=value,..."`` (names ``w_shape``,
        ``w_rate``, ``h_shape``, ``h_rate``); ``None`` gives the default.
    default : {"gamma", "flat"}
        What ``None`` means: ``GammaPriors()`` (Gamma(1, 1)) or flat priors (``None``).

    Returns
    -------
    GammaPriors or None
    """
    from ..priors import GammaPriors

    if spec is None:
        return DEFAULT_PRIORS if default == "gamma" else None
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


def _load(path: str, n_components: int, reading: Reading) -> tuple[Any, int]:
    from ..data import as_counts, check_n_components
    from ..io import read_counts

    K = check_n_components(n_components)  # before reading: cheap checks first
    V = read_counts(
        path,
        index=not reading.no_index,
        transpose=reading.transpose,
        duplicates="sum" if reading.sum_duplicates else "raise",
    )
    return as_counts(V, missing=reading.missing, name=f"DATA {path!r}"), K


def _print_identity(counts: Any, W: np.ndarray, H: np.ndarray, seed: int) -> bool:
    from ..divergence import kl_divergence, loglik_constant, poisson_loglik

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
    run: Sampling,
    out: Path,
    bar: StepBar,
    cmp: Any = None,
    image_shape: Any = None,
) -> tuple[Any, Path]:
    from ..io import load_fit, save_fit
    from ..sampling.api import sample_posterior

    bar.step("posterior")
    if run.method == "vi":
        from ..sampling.stopping import MAX_DRAWS

        nuts_only = [
            opt
            for opt, is_set in (
                ("--resume", run.resume is not None),
                ("--max-draws", run.max_draws != MAX_DRAWS),
                ("--tune", run.tune != 1000),
                ("--chains", run.chains != 4),
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
            counts, K, priors=priors, method="vi", draws=run.draws, tune=run.tune,
            chains=run.chains, random_seed=run.seed, pointwise_draws=run.pointwise_draws,
        )  # fmt: skip
    else:
        resume: Any = run.resume
        settings: dict[str, Any] = dict(
            priors=priors, tune=run.tune, chains=run.chains, random_seed=run.seed
        )
        if resume is not None:
            bar.detail(f"continuing {resume}'s chains")
            resume = load_fit(resume)
            _check_resume_options(resume, settings)
            _check_resume_budget(resume, run)
            settings = {}  # the stored run's are used
        elif run.draws is None and run.chains < 2:
            raise ValueError(
                "without --draws the run samples until R-hat and ESS are met, and R-hat "
                "needs at least 2 chains: pass --chains 2 or more, or --draws N"
            )
        elif run.draws is None:
            bar.detail(f"{run.chains} chains x {run.tune} + up to {run.max_draws} steps")
        else:
            bar.detail(f"{run.chains} chains x {run.tune} + {run.draws} steps")
        idata = sample_posterior(
            counts,
            K,
            draws=run.draws,
            max_draws=run.max_draws,
            resume=resume,
            pointwise_draws=run.pointwise_draws,
            max_memory=run.max_memory,
            progress=bar.detail if bar.shown else False,
            **settings,
        )
    # the fit is saved before anything else can fail: diagnostics and the report can
    # always be made again from it (`poisson-nmf report`)
    bar.detail("saving fit.nc")
    if image_shape is not None:
        idata.attrs["image_shape"] = json.dumps(list(image_shape))
    save_fit(idata, out / "fit.nc", comparison=cmp)
    bar.step("diagnostics")
    return _diagnose_and_report(idata, out, bar, cmp, image_shape)


# the options --resume takes from the stored run: their names and defaults
_RESUMED_OPTIONS = {"priors": ("--priors", DEFAULT_PRIORS), "tune": ("--tune", 1000),
                    "chains": ("--chains", 4), "random_seed": ("--seed", 0)}  # fmt: skip


def _check_resume_budget(tree: Any, run: Sampling) -> None:
    """Refuse --draws / --max-draws not above the draws the resumed run holds (by option)."""
    if "posterior" not in tree.children or "chain" not in tree["posterior"].sizes:
        return  # not a run of chains: sample_posterior says what it is
    held = int(tree["posterior"].sizes["draw"])
    opt, asked = ("--max-draws", run.max_draws) if run.draws is None else ("--draws", run.draws)
    if asked <= held:
        raise ValueError(
            f"--resume holds {held} draws per chain: pass a larger {opt} (now {asked}) "
            "to continue it"
        )


def _check_resume_options(tree: Any, settings: dict[str, Any]) -> None:
    """Refuse --priors, --tune, --chains, --seed given with --resume unlike the stored run's.

    An option at its default counts as not given (argparse cannot tell them apart).
    """
    from .._validation import at_default
    from ..sampling.stopping import resume_conflicts

    given = {n: v for n, v in settings.items() if not at_default(v, _RESUMED_OPTIONS[n][1])}
    bad = resume_conflicts(tree, given)
    if bad:
        show = [(_RESUMED_OPTIONS[n][0], _option_text(s), _option_text(g)) for n, s, g in bad]
        raise ValueError(
            "--resume continues the stored run, whose "
            + ", ".join(f"{opt} is {s}" for opt, s, _ in show)
            + ": drop "
            + ", ".join(f"{opt} {g}" for opt, _, g in show)
            + " or start a new run (without --resume)"
        )


def _option_text(value: Any) -> str:
    """Return a setting as the command line writes it (Gamma priors: ``a_w,b_w,a_h,b_h``)."""
    from ..priors import GammaPriors

    if isinstance(value, GammaPriors):
        parts = [np.asarray(getattr(value, n)) for n in _PRIOR_NAMES]
        if all(p.ndim == 0 for p in parts):
            return ",".join(f"{float(p):g}" for p in parts)
        return "(array priors)"
    return str(value)


def _diagnose_and_report(
    idata: Any, out: Path, bar: StepBar, cmp: Any = None, image_shape: Any = None
) -> tuple[Any, Path]:
    from ..diagnostics import diagnose
    from ..report import write_report

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


def demo(
    *, out: str, components: Any, rows: int, draws: int | None, max_draws: int, tune: int,
    chains: int, pointwise_draws: int, max_memory: Any, seed: int,
) -> int:  # fmt: skip
    """``poisson-nmf demo``: KL-NMF, MAP versus KL, the posterior and its report on the digits."""
    from ..data import ZeroRowsColumnsWarning, as_counts, check_n_components
    from ..datasets import load_digits
    from ..optim.compare import compare_map_kl
    from ..optim.kl import kl_nmf

    K = check_n_components(components)
    run = Sampling(draws, max_draws, tune, chains, pointwise_draws, max_memory, seed)
    digits = load_digits()
    V = digits[:rows] if rows else digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroRowsColumnsWarning)  # said in the data line
        counts = as_counts(V)
    n_zero = int((np.asarray(V.sum("row")) == 0).sum())
    F, N = counts.shape
    steps = ["KL-NMF", "MAP versus KL", "posterior", "diagnostics", "report"]
    t0 = time.perf_counter()
    with step_bar(steps) as bar:
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
        res = kl_nmf(counts, K, random_seed=seed)
        print(
            f"KL-NMF, K = {K}: D(V || WH) = {res.objective:.2f} after {res.n_iter} iterations "
            f"({time.perf_counter() - t:.1f} s, converged: {res.converged})"
        )
        if not _print_identity(counts, res.W, res.H, seed):
            return 1
        bar.step("MAP versus KL")
        t = time.perf_counter()
        cmp = compare_map_kl(counts, K, random_seed=seed)
        print(f"MAP versus KL from one start ({time.perf_counter() - t:.1f} s):")
        print("  " + cmp.summary().replace("\n", "\n  "))
        diag, out_dir = _sample_and_report(
            counts, K, DEFAULT_PRIORS, run, Path(out), bar, cmp=cmp,
            image_shape=digits.attrs["image_shape"],
        )  # fmt: skip
    print(
        f"posterior: {diag.n_chains} chains x {diag.n_draws} draws, Gamma(1, 1) priors; "
        f"whole job {time.perf_counter() - t0:.0f} s"
    )
    print(diag)
    print(f"report: {out_dir / 'index.html'}")
    return 0


def fit(
    *, data: str, components: Any, priors: str | None, out: str | None, compare: bool,
    image_shape: Any, method: str, draws: int | None, max_draws: int, tune: int,
    chains: int, pointwise_draws: int, max_memory: Any, seed: int, resume: str | None,
    missing: str, no_index: bool, transpose: bool, sum_duplicates: bool,
) -> int:  # fmt: skip
    """``poisson-nmf fit``: sample the posterior of DATA, diagnose it, write the report."""
    gamma = parse_priors(priors, default="gamma")
    if gamma is None:
        raise ValueError(
            "--priors flat gives an improper posterior (the scale of each component is "
            "unbounded); give Gamma priors, e.g. --priors 1,1,1,1"
        )
    reading = Reading(missing, no_index, transpose, sum_duplicates)
    run = Sampling(
        draws, max_draws, tune, chains, pointwise_draws, max_memory, seed, method, resume
    )
    auto = components == "auto"
    counts, K = _load(data, 1 if auto else components, reading)
    if auto:
        K = auto_components(counts, seed)
    out_dir = Path(out) if out is not None else Path("reports") / Path(data).name.split(".")[0]
    steps = (["MAP versus KL"] if compare else []) + ["posterior", "diagnostics", "report"]
    cmp = None
    with step_bar(steps) as bar:
        if compare:
            from ..optim.compare import compare_map_kl

            bar.step("MAP versus KL")
            cmp = compare_map_kl(counts, K, priors=gamma, random_seed=seed)
        diag, out_dir = _sample_and_report(counts, K, gamma, run, out_dir, bar, cmp, image_shape)
    print(diag)
    print(f"report: {out_dir / 'index.html'}")
    return 0


def compare(
    *, data: str, components: Any, priors: str | None, seed: int, missing: str,
    no_index: bool, transpose: bool, sum_duplicates: bool,
) -> int:  # fmt: skip
    """``poisson-nmf compare``: fit KL-NMF and the PyMC MAP from one start, print the check."""
    from ..optim.compare import compare_map_kl

    prior = parse_priors(priors, default="flat")
    counts, K = _load(data, components, Reading(missing, no_index, transpose, sum_duplicates))
    with step_bar(["MAP versus KL"]) as bar:
        bar.step("MAP versus KL")
        cmp = compare_map_kl(counts, K, priors=prior, random_seed=seed)
    F, N = counts.shape
    kind = "flat priors (KL-NMF)" if prior is None else "Gamma priors (penalised KL)"
    print(f"MAP versus KL: V is {F} x {N}, K = {K}, {kind}, seed {seed}")
    print(cmp.summary())
    return 0


def auto_components(counts: Any, seed: int) -> int:
    """``fit --components auto``: K by cross-validation over the default grid."""
    from ..rank import DEFAULT_GRID, select_rank

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


def rank(
    *, data: str, components: str, method: Literal["cv", "loo"], folds: int, repeats: int,
    restarts: int, priors: str | None, workers: int | None, scheduler: str | None,
    out: str | None, seed: int, missing: str, no_index: bool, transpose: bool, sum_duplicates: bool,
) -> int:  # fmt: skip
    """``poisson-nmf rank``: score a grid of K and write the choice with its tables."""
    from concurrent.futures import ThreadPoolExecutor

    from ..parallel import connect_scheduler
    from ..rank import parse_components, select_rank

    ks = parse_components(components)  # cheap checks first, nothing written yet
    gamma = parse_priors(priors, default="gamma") if priors else None
    if priors and gamma is None:
        raise ValueError("--priors flat: a held-out count can get rate 0; give Gamma priors")
    if workers is not None and scheduler is not None:
        raise ValueError("give --workers or --scheduler, not both")
    counts = _load(data, 1, Reading(missing, no_index, transpose, sum_duplicates))[0]
    out_dir = Path(out or Path("reports") / f"rank-{Path(data).name.split('.')[0]}")
    client = connect_scheduler(scheduler) if scheduler else None
    pool = ThreadPoolExecutor(workers) if workers and workers > 1 else None
    try:
        with step_bar(["rank"]) as bar:
            bar.step(f"rank ({method})")
            sel = select_rank(counts, ks, method=method, folds=folds,
                              executor=client or pool, random_seed=seed, priors=gamma,
                              n_repeats=repeats, n_restarts=restarts,
                              progress=bar.detail if bar.shown else False)  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()
        if client is not None:
            client.close()
    _write_rank(sel, out_dir, {"data": str(data), "workers": workers, "scheduler": scheduler})
    print(sel.summary())
    print(f"report: {out_dir}")
    return 0


def _write_rank(sel: Any, out: Path, extra: dict[str, Any]) -> None:
    """Write the rank folder beside its target, then move it: never half a report."""
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
        settings = {**sel.settings, **extra}
        (tmp / "settings.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def report(*, fit: str, out: str) -> int:
    """``poisson-nmf report``: re-render the report of a saved fit (never refits)."""
    from ..io import load_fit
    from ..report import write_report

    src, out_dir = Path(fit), Path(out)
    tree = load_fit(src)
    with step_bar(["report"]) as bar:
        bar.step("report")
        write_report(tree, out_dir, save_fit=False, progress=bar.detail)
    dest = out_dir / "fit.nc"
    if not (dest.exists() and dest.resolve() == src.resolve()):
        shutil.copyfile(src, dest)
    print(f"report: {out_dir / 'index.html'}")
    return 0
