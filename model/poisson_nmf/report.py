"""The diagnostic report of a fit: a folder ``reports/<run>/`` a person can open.

:func:`write_report` writes

- ``index.html``: one self-contained page (figures embedded as base64 ``data:`` URIs,
  inline CSS, no script, no remote resource): opens from disk, offline;
- ``report.md``: the same content in Markdown, figures linked from ``figures/``;
- ``diagnostics.json``: the verdict, every check and the run's settings;
- ``figures/*.png``: the figures, made with ``arviz_plots`` (matplotlib backend) and
  matplotlib (see :data:`FIGURES`);
- ``fit.nc``: the fit itself (:func:`poisson_nmf.io.save_fit`), so that
  ``poisson-nmf report fit.nc --out DIR`` re-renders the report without refitting.

Figures are drawn with whatever matplotlib backend is active; when pyplot has not been
imported yet, the non-interactive Agg backend is selected. Every figure is closed after
saving.

Factors as images: when the rows or columns of V are pixels of images (``image_shape``,
e.g. ``(8, 8)`` for :func:`poisson_nmf.load_digits`, whose DataArray carries it in
``attrs``), each component is drawn as an image (rows of H when the columns are pixels,
columns of W when the rows are); without an image shape as heatmaps (one that fits
neither side is refused before anything is written). The image shape is stored in
the fit's ``attrs`` so a re-rendered report draws the same figures.
"""

from __future__ import annotations

import base64
import html
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .diagnostics import Diagnosis, diagnose, entry_label
from .io import comparison_to_dataset
from .io import save_fit as _save_fit

__all__ = ["FIGURES", "write_report"]

# file name -> caption; a figure is left out when its data are absent (see the report)
FIGURES: dict[str, str] = {
    "convergence.png": "R-hat and bulk and tail ESS of every entry of W and H, as the "
    "share of entries at or below each value; dashed lines are the thresholds.",
    "rank_worst.png": "Rank plots of the entries with the largest R-hat: the difference "
    "between each chain's rank ECDF and the uniform one. For well-mixed chains the curves stay "
    "near zero; p is ArviZ's simultaneous test of uniformity (black points leave its band). "
    "With thousands of draws it flags chain differences far smaller than R-hat 1.01 does.",
    "trace_worst.png": "Traces and marginal densities of the same entries, one colour per chain.",
    "energy.png": "Energy: the marginal energy and the energy transition distributions "
    "should overlap (E-BFMI per chain beside it).",
    "ppc_rootogram.png": "Posterior predictive rootogram: how often each count value occurs "
    "in the data (points) and in replicated data (with intervals).",
    "ppc_checks.png": "Left: share of observed counts inside their predictive interval, by "
    "count value. Right: the chi-square discrepancy of the data against that of replicated "
    "data, one point per draw; the p-value is the share above the diagonal.",
    "factors_H.png": "H: posterior mean and sd of each component.",
    "factors_W.png": "W: posterior mean and sd of each component.",
    "pareto_k.png": "PSIS-LOO Pareto k of each observed entry (row-major order: entry "
    "i is row i // N, column i % N); above the line at 0.7 the leave-one-out estimate for "
    "that entry is unreliable.",
    "elbo.png": "Variational fit: the ELBO of the kept restart along its iterations "
    "(coordinate ascent: it never decreases), and every restart's final ELBO.",
    "map_vs_kl.png": "MAP versus KL-NMF from the same start. Left: the objective along the "
    "iterations of each method, above the better of the two final objectives. Middle and "
    "right: the factors of the two fits, normalised and matched; on the diagonal when both "
    "reach the same optimum.",
}
_DPI = 90
_VI_TEXT = (
    "This is a variational fit (method='vi'): independent draws from a mean-field "
    "approximation q(W) q(H), not Markov chains, so R-hat, ESS, divergences and E-BFMI do "
    "not apply. Its own check is PSIS k-hat of q against the exact posterior (Yao et al. "
    "2018): above 0.7 the intervals below are not posterior intervals. Mean-field leaves "
    "out the dependence of W and H (the scale of each component, the exchange of mass "
    "between components), so its intervals are too narrow, most for the entries that "
    "move with others; use method='nuts' for intervals to report. Restarts that end "
    "apart mean several posterior modes, of which q describes one."
)
_N_WORST = 4


def _use_agg() -> None:
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)


def _save_pc(pc: Any, path: Path) -> None:
    _save(pc.get_viz("figure"), path)


# ---------------------------------------------------------------------------------------
# figures


def _fig_convergence(diag: Diagnosis, path: Path) -> None:
    # the numbers diagnose() computed with arviz_stats, not a second computation
    import matplotlib.pyplot as plt

    e = diag.entries
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    limits = {
        "r_hat": diag.check("r_hat").threshold,
        "ess_bulk": diag.check("ess_bulk").threshold,
        "ess_tail": diag.check("ess_tail").threshold,
    }
    for ax, (col, rule) in zip(axes, limits.items(), strict=True):
        for var, color in (("W", "#4c72b0"), ("H", "#dd8452")):
            x = np.sort(e.loc[e["variable"] == var, col].to_numpy(dtype=float))
            x = x[np.isfinite(x)]
            if x.size:
                ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", color=color,
                        label=f"{var} ({x.size} entries)")  # fmt: skip
        ax.axvline(float(rule.split()[1]), color="k", ls="--", lw=1)
        ax.set_title(f"{col.replace('_', ' ')} (needs {rule.split('(')[0].strip()})", fontsize=10)
        ax.set_ylabel("share of entries <= x")
        ax.set_ylim(0, 1.02)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, path)


def _fig_elbo(idata: xr.DataTree, path: Path) -> None:
    import matplotlib.pyplot as plt

    vi = json.loads(idata.attrs["vi"])
    trace = np.asarray(vi["elbo_trace"], dtype=float)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    it = np.arange(trace.size)
    a.plot(it[1:], trace[1:], color="#4c72b0")  # the random start is far below
    a.set_xlabel("iteration")
    a.set_ylabel("ELBO")
    a.set_title(f"kept restart: {vi['n_iter']} iterations", fontsize=10)
    finals = [r["elbo"] for r in vi["restarts"]]
    b.plot(range(len(finals)), finals, "o", color="#dd8452")
    b.set_xlabel("restart")
    b.set_ylabel("final ELBO")
    b.set_xticks(range(len(finals)))
    b.set_title(f"restarts (spread {vi['restart_elbo_spread']:.1f})", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _worst_dataset(post: xr.Dataset, diag: Diagnosis) -> xr.Dataset:
    out = {}
    for _, e in diag.worst_entries(_N_WORST).iterrows():
        dims = ("row", "component") if e["variable"] == "W" else ("component", "column")
        out[entry_label(e)] = post[e["variable"]].sel({d: e[d] for d in dims}, drop=True)
    return xr.Dataset(out)


def _fig_worst(post: xr.Dataset, diag: Diagnosis, rank_path: Path, trace_path: Path) -> None:
    import arviz_plots as azp

    tree = xr.DataTree.from_dict({"posterior": _worst_dataset(post, diag)})
    n = len(tree["posterior"].data_vars)
    pc = azp.plot_rank(tree, backend="matplotlib", figure_kwargs={"figsize": (3.2 * n, 3)})
    _save_pc(pc, rank_path)
    pc = azp.plot_trace_dist(tree, backend="matplotlib", figure_kwargs={"figsize": (11, 2.2 * n)})
    _save_pc(pc, trace_path)


def _fig_energy(ss: xr.Dataset, path: Path) -> None:
    import arviz_plots as azp

    tree = xr.DataTree.from_dict({"sample_stats": ss[["energy"]]})
    pc = azp.plot_energy(tree, backend="matplotlib", figure_kwargs={"figsize": (7, 3.5)})
    _save_pc(pc, path)


# the rootogram's histogram of counts reads at most this many entries (a fixed subsample)
_ROOTOGRAM_ENTRIES = 100_000
_ROOTOGRAM_SEED = 2718


def _flat_entries(ds: xr.Dataset) -> xr.Dataset:
    dims = [d for d in ("row", "column") if d in ds.dims]
    if len(dims) == 2:
        ds = ds.stack(entry=("row", "column"))
    return ds.drop_vars([c for c in ds.coords if c not in ("chain", "draw")])


def _fig_rootogram(idata: xr.DataTree, path: Path) -> None:
    import arviz_plots as azp

    pp = idata["posterior_predictive"].to_dataset()[["V"]]
    obs = idata["observed_data"].to_dataset()[["V"]]
    if "entry" in pp.dims:
        obs = obs.sel(row=pp["row"], column=pp["column"])
    elif pp.sizes["row"] * pp.sizes["column"] > _ROOTOGRAM_ENTRIES:
        # a fixed random subsample of entries, picked without stacking the whole group
        rng = np.random.default_rng(_ROOTOGRAM_SEED)
        flat = rng.choice(pp.sizes["row"] * pp.sizes["column"], _ROOTOGRAM_ENTRIES, replace=False)
        ri, ci = np.unravel_index(np.sort(flat), (pp.sizes["row"], pp.sizes["column"]))
        pick = {"row": xr.DataArray(ri, dims="entry"), "column": xr.DataArray(ci, dims="entry")}
        pp, obs = pp.isel(pick), obs.isel(pick)
    tree = xr.DataTree.from_dict(
        {"posterior_predictive": _flat_entries(pp), "observed_data": _flat_entries(obs)}
    )
    pc = azp.plot_ppc_rootogram(tree, backend="matplotlib", figure_kwargs={"figsize": (8, 3.5)})
    _save_pc(pc, path)


def _fig_ppc_checks(diag: Diagnosis, path: Path) -> None:
    import matplotlib.pyplot as plt

    cov, disc, ppc = diag.covered, diag.discrepancy, diag.ppc
    assert cov is not None and disc is not None and ppc is not None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    y = cov["observed"].to_numpy()
    values = np.unique(y)
    if values.size > 30:  # many distinct counts: geometric bins
        edges = np.unique(np.geomspace(1, y.max() + 1, 25).astype(int))
        edges = np.concatenate([[0], edges])
        which = np.digitize(y, edges) - 1
        labels = [
            f"{lo}-{hi - 1}" if hi - 1 > lo else f"{lo}"
            for lo, hi in zip(edges, edges[1:], strict=False)
        ]
    else:
        which = np.searchsorted(values, y)
        labels = [f"{int(v)}" for v in values]
    share = np.array([cov["covered"].to_numpy()[which == i].mean() for i in range(len(labels))])
    n = np.bincount(which, minlength=len(labels))
    keep = n > 0
    xs = np.arange(int(keep.sum()))
    a1.bar(xs, share[keep], color="#4c72b0")
    a1.axhline(ppc["prob"], color="k", ls="--", lw=1)
    a1.set_xticks(
        xs,
        [lab for lab, k in zip(labels, keep, strict=True) if k],
        rotation=90 if xs.size > 20 else 0,
    )
    a1.set_ylim(0, 1.02)
    a1.set_xlabel("observed count")
    a1.set_ylabel("share inside interval")
    a1.set_title(f"coverage {ppc['coverage']:.1%} overall (dashed: nominal {ppc['prob']:.0%})")
    r, p = disc["realised"].to_numpy(), disc["replicated"].to_numpy()
    a2.scatter(r, p, s=8, alpha=0.5, color="#dd8452")
    lo, hi = min(r.min(), p.min()), max(r.max(), p.max())
    a2.plot([lo, hi], [lo, hi], "k--", lw=1)
    a2.set_xlabel("chi-square of the data, X²(y, θ)")
    a2.set_ylabel("chi-square of replicated data, X²(yrep, θ)")
    a2.set_title(f"posterior predictive p = {ppc['ppp']:.3f}")
    fig.tight_layout()
    _save(fig, path)


def _image_axis(image_shape: Sequence[int] | None, F: int, N: int) -> str | None:
    if not image_shape:
        return None
    size = int(np.prod(image_shape))
    return "column" if size == N else ("row" if size == F else None)


def _fig_factors(
    post: xr.Dataset, image_shape: Sequence[int] | None, h_path: Path, w_path: Path
) -> str | None:
    """Draw H and W; returns the image axis ("column", "row" or None for heatmaps)."""
    import matplotlib.pyplot as plt

    mean = {v: post[v].mean(("chain", "draw")) for v in ("W", "H")}
    sd = {v: post[v].std(("chain", "draw")) for v in ("W", "H")}
    F, K = mean["W"].shape
    N = mean["H"].shape[1]
    axis = _image_axis(image_shape, F, N)
    for var, path in (("H", h_path), ("W", w_path)):
        m = mean[var].transpose("component", ...).values  # (K, len)
        s = sd[var].transpose("component", ...).values
        as_image = (axis == "column" and var == "H") or (axis == "row" and var == "W")
        if as_image:
            assert image_shape is not None
            shape = tuple(int(i) for i in image_shape)
            fig, axes = plt.subplots(2, K, figsize=(1.5 * K + 1.5, 3.6), squeeze=False)
            for row, arr, name in ((0, m, "mean"), (1, s, "sd")):
                vmax = float(arr.max()) or 1.0
                for k in range(K):
                    ax = axes[row, k]
                    im = ax.imshow(arr[k].reshape(shape), cmap="viridis", vmin=0, vmax=vmax)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if row == 0:
                        ax.set_title(f"k = {k}", fontsize=9)
                axes[row, 0].set_ylabel(name)
                fig.colorbar(im, ax=axes[row, :].tolist(), shrink=0.8, pad=0.01)
        else:
            fig, axes = plt.subplots(2, 1, figsize=(11, 1.6 + 0.6 * K), squeeze=False, sharex=True)
            other = "column" if var == "H" else "row"
            for row, arr, name in ((0, m, "mean"), (1, s, "sd")):
                ax = axes[row, 0]
                im = ax.imshow(arr, aspect="auto", cmap="viridis", interpolation="nearest")
                ax.set_ylabel(f"{name}\ncomponent")
                ax.set_yticks(range(K))
                fig.colorbar(im, ax=ax, pad=0.01)
            axes[1, 0].set_xlabel(other)
        fig.suptitle(f"{var}: posterior mean (top) and sd (bottom)", fontsize=11)
        _save(fig, path)
    return axis


def _fig_pareto(diag: Diagnosis, path: Path) -> None:
    import arviz_plots as azp

    pc = azp.plot_khat(
        diag.elpd,
        hline_values=[0.7],
        visuals={"hlines": {}},
        backend="matplotlib",
        figure_kwargs={"figsize": (9, 3.5)},
    )
    _save_pc(pc, path)


def _fig_map_vs_kl(cmp: xr.Dataset, image_shape: Sequence[int] | None, path: Path) -> None:
    import matplotlib.pyplot as plt

    from .optim.compare import matched_agreement

    W1, H1 = cmp["W_kl"].values, cmp["H_kl"].values
    W2, H2 = cmp["W_map"].values, cmp["H_map"].values
    _, _, perm = matched_agreement(W1, H1, W2, H2)
    s1, s2 = W1.sum(0), W2[:, perm].sum(0)
    s1, s2 = np.where(s1 > 0, s1, 1.0), np.where(s2 > 0, s2, 1.0)
    W1n, W2n = W1 / s1, W2[:, perm] / s2
    H1n, H2n = H1 * s1[:, None], H2[perm] * s2[:, None]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    best = min(cmp.attrs["kl_objective"], cmp.attrs["map_objective"])
    for name, color in (("kl", "#4c72b0"), ("map", "#dd8452")):
        h = cmp[f"history_{name}"].values
        gap = np.maximum(h - best, 1e-16 * abs(best))
        axes[0].semilogy(
            np.arange(1, h.size + 1),
            gap,
            color=color,
            label="KL-NMF" if name == "kl" else "PyMC MAP",
        )
    axes[0].set_xscale("log")
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("objective - best final objective")
    axes[0].legend(fontsize=8)
    for ax, a, b, name in ((axes[1], W1n, W2n, "W (columns sum to 1)"), (axes[2], H1n, H2n, "H")):
        ax.scatter(a.ravel(), b.ravel(), s=6, alpha=0.5)
        lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel(f"KL-NMF {name}")
        ax.set_ylabel(f"PyMC MAP {name}")
    fig.tight_layout()
    _save(fig, path)


# ---------------------------------------------------------------------------------------
# content: one list of blocks, rendered as Markdown and as HTML


@dataclass
class _Block:
    kind: str  # h1, h2, p, ul, table, fig, pre, verdict
    text: str = ""
    items: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    anchor: str = ""


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, int | np.integer):
        return f"{int(x)}"
    x = float(x)
    if not np.isfinite(x):
        return "n/a"
    if x.is_integer() and abs(x) < 1e9:
        return f"{int(x)}"
    return f"{x:.{digits}g}"


def _int(x: Any) -> str:
    return f"{float(x):.0f}" if x is not None and np.isfinite(float(x)) else "n/a"


def _status(c: Any) -> str:
    if c.threshold == "-":
        return "n/a"
    if c.passed:
        return "pass"
    return {"fail": "FAIL", "warn": "WARN", "info": "note"}[c.severity]


def _settings(idata: xr.DataTree) -> dict:
    try:
        return dict(json.loads(idata.attrs.get("settings", "{}")))
    except (TypeError, json.JSONDecodeError):
        return {}


def _content(
    idata: xr.DataTree,
    diag: Diagnosis,
    figures: dict[str, str],
    cmp: xr.Dataset | None,
    title: str,
    image_axis: str | None,
) -> list[_Block]:
    from ._version import __version__
    from .sampling.modes import ModeReport

    st = _settings(idata)
    V = idata["observed_data"]["V"] if "observed_data" in idata.children else None
    post = idata["posterior"]
    F, N = post.sizes["row"], post.sizes["column"]
    K = post.sizes["component"]
    B: list[_Block] = [_Block("h1", title)]
    B.append(_Block("verdict", diag.verdict, items=list(diag.reasons)))
    sections = [
        ("run", "The run"),
        ("sampling", "Sampling diagnostics"),
        ("ppc", "Posterior predictive checks"),
        ("loo", "PSIS-LOO"),
        ("factors", "The factors"),
    ]
    if cmp is not None:
        sections.append(("map-vs-kl", "MAP versus KL-NMF"))
    B.append(_Block("toc", items=[f"{a}|{t}" for a, t in sections]))

    # the run
    B.append(_Block("h2", "The run", anchor="run"))
    pri = st.get("priors", {})
    data = f"V: {F} rows x {N} columns"
    if V is not None:
        if "mask" in idata["observed_data"]:
            od = idata["observed_data"].to_dataset()
            obs = ~np.asarray(od["mask"].values, dtype=bool)
            vv = np.asarray(od["V"].values)[obs]
            data += (
                f", {int(vv.sum())} counts in all over {obs.sum()} observed entries, "
                f"{float((vv > 0).mean()):.1%} of them non-zero; {int((~obs).sum())} "
                "entries missing (masked, left out of the likelihood)"
            )
        else:
            data += f", {int(V.sum())} counts in all, {float((V > 0).mean()):.1%} non-zero"
    gamma = "Gamma({}, {})".format
    model = (
        f"V ~ Poisson(WH), K = {K}; W ~ {gamma(pri.get('w_shape', '?'), pri.get('w_rate', '?'))}"
        f", H ~ {gamma(pri.get('h_shape', '?'), pri.get('h_rate', '?'))} (shape, rate)"
    )
    sampler = (
        f"{st.get('sampler', '?')} NUTS: {diag.n_chains} chains x {diag.n_draws} draws after "
        f"{st.get('tune', '?')} tuning steps; start {st.get('init', '?')}, "
        f"seed {st.get('random_seed')}"
    )
    if idata.attrs.get("approximate", False) and "vi" in idata.attrs:
        vi = json.loads(idata.attrs["vi"])
        sampler = (
            f"mean-field VI: {len(vi['restarts'])} restarts, the best ELBO "
            f"{_num(vi['elbo'], 8)} after {vi['n_iter']} iterations; {diag.n_draws} "
            f"independent draws from q; seed {st.get('random_seed')}"
        )
    norm = idata.attrs.get("normalize", st.get("normalize", "W"))
    norm_text = (
        "W: the columns of W sum to one, H carries the scale"
        if norm == "W"
        else "H: the rows of H sum to one, W carries the scale"
    )
    times = (
        f"sampling {_num(idata.attrs.get('sampling_time_s'), 3)} s, "
        f"in all {_num(idata.attrs.get('total_time_s'), 3)} s"
    )
    version = f"poisson-nmf {idata.attrs.get('poisson_nmf_version', __version__)}"
    rows = [
        ["data", data],
        ["model", model],
        ["sampler", sampler],
        ["normalisation", norm_text],
        ["time", times],
        ["version", version],
    ]
    B.append(_Block("table", header=["", ""], rows=rows))

    # sampling
    B.append(_Block("h2", "Sampling diagnostics", anchor="sampling"))
    B.append(
        _Block(
            "p",
            "Every check compared with its threshold. A FAIL (R-hat, ESS, divergences, "
            "E-BFMI, modes) means the draws do not represent the posterior; a WARN is a "
            "caveat on the fit of the model (one-sided: over-dispersion); a note (MCSE, "
            "tree depth) is the cost of the run, never a caveat on the draws. "
            "Thresholds: R-hat 1.01 and ESS 100 per chain (Vehtari et al. 2021), E-BFMI "
            "0.3 (Betancourt 2016). Pareto k is in the PSIS-LOO section.",
        )
    )
    B.append(
        _Block(
            "table",
            header=["check", "value", "needs", "status", "detail"],
            rows=[
                [c.label, _num(c.value), c.threshold, _status(c), c.detail]
                for c in diag.checks
                if c.name != "pareto_k"
            ],
        )
    )
    approximate = bool(idata.attrs.get("approximate", False))
    if approximate:
        B.append(_Block("p", _VI_TEXT))
    else:
        B.append(_Block("p", "Modes: " + str(ModeReport(**diag.modes)) + "."))
    if diag.ebfmi:
        B.append(
            _Block("p", "E-BFMI per chain: " + ", ".join(_num(v, 3) for v in diag.ebfmi) + ".")
        )
    if not approximate:  # R-hat and ESS describe Markov chains
        worst = diag.worst_entries(8)
        B.append(_Block("p", "The entries with the largest R-hat:"))
        B.append(
            _Block(
                "table",
                header=["entry", "mean", "sd", "R-hat", "ESS bulk", "ESS tail", "MCSE mean"],
                rows=[
                    [
                        entry_label(e),
                        _num(e["mean"]),
                        _num(e["sd"]),
                        _num(e["r_hat"]),
                        _int(e["ess_bulk"]),
                        _int(e["ess_tail"]),
                        _num(e["mcse_mean"], 2),
                    ]
                    for _, e in worst.iterrows()
                ],
            )
        )
    for f in ("convergence.png", "rank_worst.png", "trace_worst.png", "energy.png", "elbo.png"):
        if f in figures:
            B.append(_Block("fig", f, items=[figures[f]]))

    # posterior predictive
    B.append(_Block("h2", "Posterior predictive checks", anchor="ppc"))
    if diag.ppc is None:
        B.append(
            _Block(
                "p",
                "Not available: the fit has no posterior_predictive group "
                "(sampled with pointwise_draws=0).",
            )
        )
    else:
        p = diag.ppc
        B.append(
            _Block(
                "p",
                f"From {p['n_draws']} predictive draws of "
                + (
                    f"every non-zero count and a fixed random subsample of the zeros "
                    f"({p['n_pointwise_entries']} entries, weighted to stand for all "
                    f"{p['n_entries']} observed counts)"
                    if p.get("weighted")
                    else f"all {p['n_entries']} observed counts"
                )
                + f": {p['coverage']:.1%} of the counts lie inside their "
                f"central {p['prob']:.0%} predictive interval; the chi-square "
                f"discrepancy of the data averages {_num(p['realised_mean'])} against "
                f"{_num(p['replicated_mean'])} for replicated data (posterior "
                f"predictive p = {p['ppp']:.3f}).",
            )
        )
        for f in ("ppc_rootogram.png", "ppc_checks.png"):
            if f in figures:
                B.append(_Block("fig", f, items=[figures[f]]))

    # LOO
    B.append(_Block("h2", "PSIS-LOO", anchor="loo"))
    if diag.loo is None:
        B.append(_Block("p", "Not available: the fit has no log_likelihood group."))
    else:
        lo = diag.loo
        how = (
            f"on a fixed random subsample of {lo['n_k']} of the {lo['n_data_points']} "
            "observed entries (ArviZ's loo_subsample)"
            if lo["subsampled"]
            else f"over all {lo['n_data_points']} observed entries"
        )
        if lo.get("weighted"):
            how += (
                f"; the {lo['n_pointwise_entries']} entries are every non-zero and a weighted "
                "subsample of the zeros, so elpd_loo and its se estimate the sum over all "
                "observed entries (Horvitz-Thompson)"
            )
        B.append(
            _Block(
                "p",
                f"Leave-one-entry-out, {how}, from {lo['n_samples']} draws: "
                f"elpd_loo = {_num(lo['elpd'], 6)} (se {_num(lo['se'], 3)}), "
                f"p_loo = {_num(lo['p'], 4)}. Each row of W belongs to one row of V, "
                "so single entries are often influential; large Pareto k say that "
                "elpd_loo is unreliable, not that the sampler failed.",
            )
        )
        kc = diag.check("pareto_k")
        B.append(_Block("p", f"Pareto k ({_status(kc)}, information): {kc.detail}."))
        n_par = (F + N) * K
        if lo["p"] > n_par:
            B.append(
                _Block(
                    "p",
                    f"p_loo ({_num(lo['p'], 4)}) exceeds the number of parameters "
                    f"(F + N) K = {n_par}: a sign of misspecification or of many "
                    "influential entries (Vehtari, Gelman & Gabry 2017).",
                )
            )
        B.append(
            _Block(
                "table",
                header=["Pareto k", "entries"],
                rows=[[k, str(v)] for k, v in lo["k_counts"].items()],
            )
        )
        if "pareto_k.png" in figures:
            B.append(_Block("fig", "pareto_k.png", items=[figures["pareto_k.png"]]))

    # factors
    B.append(_Block("h2", "The factors", anchor="factors"))
    how = {
        "column": "each row of H drawn as an image (the columns of V are pixels)",
        "row": "each column of W drawn as an image (the rows of V are pixels)",
        None: "heatmaps (no image shape given)",
    }[image_axis]
    B.append(
        _Block(
            "p",
            f"Posterior mean and sd of W (rows x components) and H "
            "(components x columns), aligned across chains and draws; "
            f"{how}.",
        )
    )
    for f in ("factors_H.png", "factors_W.png"):
        if f in figures:
            B.append(_Block("fig", f, items=[figures[f]]))

    # MAP versus KL
    if cmp is not None:
        a = cmp.attrs
        B.append(_Block("h2", "MAP versus KL-NMF", anchor="map-vs-kl"))
        B.append(
            _Block(
                "p",
                "The claim: the PyMC MAP under flat priors is the KL-NMF solution "
                "(with Gamma priors, the penalised KL solution). Both are fitted from "
                "one start; each solution is then polished by the other method, which "
                "must not move it (objective gap), and must be a KKT point of the "
                "other's objective.",
            )
        )
        B.append(_Block("p", _claim_sentence(a)))
        rows = [
            ["KL-NMF objective", _num(a["kl_objective"], 10), f"{a['kl_n_iter']} iterations"],
            ["PyMC MAP objective", _num(a["map_objective"], 10), f"{a['map_n_iter']} iterations"],
            ["same optimum", "yes" if a["same_optimum"] else "no", "relative difference <= 1e-6"],
            ["objective gap after cross-polishing", _num(a["objective_gap"], 3), "relative"],
            ["KKT residual, KL under MAP", _num(a["kkt_kl_under_map"], 3), "relative"],
            ["KKT residual, MAP under KL", _num(a["kkt_map_under_kl"], 3), "relative"],
            ["identity logp + objective = constant", _num(a["identity_error"], 3), "relative"],
            ["matched factors, max |dW|", _num(a["w_agreement"], 3), "W columns sum to one"],
            ["matched factors, rel. dH", _num(a["h_agreement"], 3), ""],
        ]
        B.append(_Block("table", header=["quantity", "value", "note"], rows=rows))
        if "map_vs_kl.png" in figures:
            B.append(_Block("fig", "map_vs_kl.png", items=[figures["map_vs_kl.png"]]))
    B.append(
        _Block(
            "p",
            "Files: index.html, report.md, diagnostics.json, fit.nc and "
            "figures/. Re-render with `poisson-nmf report fit.nc --out DIR`.",
        )
    )
    return B


def _claim_sentence(a: Any) -> str:
    """One sentence on what this comparison shows, from its numbers."""
    gap = float(a["objective_gap"])
    held = gap <= 1e-6
    verdict = (
        f"Each solution stays put under the other method (gap {gap:.2g} <= 1e-6): the claim "
        "holds here."
        if held
        else f"Cross-polishing moved a solution by {gap:.2g} (> 1e-6): the claim is not "
        "confirmed by this run; one of the fits had not converged."
    )
    if a["same_optimum"]:
        where = "Both fits reached the same optimum."
    else:
        lower = "PyMC MAP" if a["map_objective"] < a["kl_objective"] else "KL-NMF"
        diff = abs(float(a["map_objective"]) - float(a["kl_objective"]))
        where = (
            "From the same start the two optimisers ended in different local optima of NMF "
            f"({lower} lower by {diff:.4g}); that is the non-convexity of NMF, not a "
            "difference between the objectives."
        )
    return f"{where} {verdict}"


_VERDICT_TEXT = {
    "ok": "OK: every check passed.",
    "warn": "WARN: the draws can be used, with the caveats below.",
    "fail": "FAIL: do not use these draws; the reasons are below.",
}


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _to_markdown(blocks: list[_Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}")
        elif b.kind == "h2":
            out.append(f"## {b.text}")
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "verdict":
            out.append(f"**Verdict: {_VERDICT_TEXT[b.text]}**")
            if b.items:
                out.append("\n".join(f"- {r}" for r in b.items))
        elif b.kind == "toc":
            out.append(" · ".join(f"[{t}](#{a})" for a, t in (i.split("|") for i in b.items)))
        elif b.kind == "table":
            lines = [
                "| " + " | ".join(_md_cell(h) for h in b.header) + " |",
                "|" + "---|" * len(b.header),
            ]
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]
            out.append("\n".join(lines))
        elif b.kind == "fig":
            out.append(f"![{b.text}](figures/{b.text})\n\n*{b.items[0]}*")
    return "\n\n".join(out) + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #222; background: #fafafa; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em 2em 3em; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.4em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.fail td { background: #fde8e8; } tr.warn td { background: #fff6e0; }
.verdict { padding: 0.8em 1.2em; border-radius: 6px; margin: 1em 0; }
.verdict.ok { background: #e6f4ea; border: 1px solid #7cc48f; }
.verdict.warn { background: #fff6e0; border: 1px solid #e0b050; }
.verdict.fail { background: #fde8e8; border: 1px solid #e07070; }
.verdict p { margin: 0 0 0.3em; font-weight: 600; } .verdict ul { margin: 0.3em 0 0; }
nav { font-size: 0.9em; } nav a { margin-right: 1em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #555; max-width: 900px; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _html_text(s: str) -> str:
    # `code` spans, as in the Markdown
    parts = html.escape(s).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _is_num(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _to_html(blocks: list[_Block], fig_dir: Path) -> str:
    out: list[str] = []
    title = next((b.text for b in blocks if b.kind == "h1"), "report")
    for b in blocks:
        if b.kind == "h1":
            out.append(f"<h1>{_html_text(b.text)}</h1>")
        elif b.kind == "h2":
            out.append(f'<h2 id="{b.anchor}">{_html_text(b.text)}</h2>')
        elif b.kind == "p":
            out.append(f"<p>{_html_text(b.text)}</p>")
        elif b.kind == "verdict":
            items = "".join(f"<li>{_html_text(r)}</li>" for r in b.items)
            out.append(
                f'<div class="verdict {b.text}"><p>Verdict: {_html_text(_VERDICT_TEXT[b.text])}'
                f"</p>{f'<ul>{items}</ul>' if items else ''}</div>"
            )
        elif b.kind == "toc":
            links = "".join(
                f'<a href="#{a}">{_html_text(t)}</a>' for a, t in (i.split("|") for i in b.items)
            )
            out.append(f"<nav>{links}</nav>")
        elif b.kind == "table":
            head = "".join(f"<th>{_html_text(h)}</th>" for h in b.header) if any(b.header) else ""
            body = []
            for r in b.rows:
                cls = ""
                if "FAIL" in r or "WARN" in r:
                    cls = ' class="fail"' if "FAIL" in r else ' class="warn"'
                cells = "".join(
                    f'<td class="num">{_html_text(c)}</td>'
                    if _is_num(c)
                    else f"<td>{_html_text(c)}</td>"
                    for c in r
                )
                body.append(f"<tr{cls}>{cells}</tr>")
            out.append(
                "<table>"
                + (f"<thead><tr>{head}</tr></thead>" if head else "")
                + f"<tbody>{''.join(body)}</tbody></table>"
            )
        elif b.kind == "fig":
            data = base64.b64encode((fig_dir / b.text).read_bytes()).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.text)}">'
                f"<figcaption>{_html_text(b.items[0])}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body><main>\n"
        + "\n".join(out)
        + "\n</main></body>\n</html>\n"
    )


# ---------------------------------------------------------------------------------------
# the public entry point


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
    _use_agg()
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
    fig_dir.mkdir(parents=True, exist_ok=True)
    step = progress or (lambda label: None)
    cmp: xr.Dataset | None = None
    if comparison is not None:
        cmp = (
            comparison if isinstance(comparison, xr.Dataset) else comparison_to_dataset(comparison)
        )
    elif "map_vs_kl" in idata.children:
        cmp = idata["map_vs_kl"].to_dataset()
    post = idata["posterior"].to_dataset()
    if cmp is not None:
        want = (post.sizes["row"], post.sizes["column"], post.sizes["component"])
        got = (cmp.sizes["row"], cmp.sizes["column"], cmp.sizes["component"])
        if got != want:
            raise ValueError(
                f"the comparison is of a {got[0]} x {got[1]} matrix with K = {got[2]}, the "
                f"fit of a {want[0]} x {want[1]} matrix with K = {want[2]}; compare the same "
                "data and K"
            )
    if diagnosis is None:
        step("diagnostics")
        diagnosis = diagnose(idata)
    diag = diagnosis
    figures: dict[str, str] = {}

    def fig(name: str, draw: Callable[[], Any]) -> Any:
        step(name)
        result = draw()
        figures[name] = FIGURES[name]
        return result

    if idata.attrs.get("approximate", False):  # independent draws: no chains to plot
        if "vi" in idata.attrs:
            fig("elbo.png", lambda: _fig_elbo(idata, fig_dir / "elbo.png"))
    else:
        fig("convergence.png", lambda: _fig_convergence(diag, fig_dir / "convergence.png"))
        step("rank_worst.png")
        _fig_worst(post, diag, fig_dir / "rank_worst.png", fig_dir / "trace_worst.png")
        figures["rank_worst.png"] = FIGURES["rank_worst.png"]
        figures["trace_worst.png"] = FIGURES["trace_worst.png"]
    if "sample_stats" in idata.children and "energy" in idata["sample_stats"]:
        ss = idata["sample_stats"].to_dataset()
        fig("energy.png", lambda: _fig_energy(ss, fig_dir / "energy.png"))
    if diag.ppc is not None:
        fig("ppc_rootogram.png", lambda: _fig_rootogram(idata, fig_dir / "ppc_rootogram.png"))
        fig("ppc_checks.png", lambda: _fig_ppc_checks(diag, fig_dir / "ppc_checks.png"))
    step("factors_H.png")
    axis = _fig_factors(post, shape, fig_dir / "factors_H.png", fig_dir / "factors_W.png")
    figures["factors_H.png"] = FIGURES["factors_H.png"]
    figures["factors_W.png"] = FIGURES["factors_W.png"]
    if diag.elpd is not None:
        fig("pareto_k.png", lambda: _fig_pareto(diag, fig_dir / "pareto_k.png"))
    if cmp is not None:
        fig("map_vs_kl.png", lambda: _fig_map_vs_kl(cmp, shape, fig_dir / "map_vs_kl.png"))

    step("pages")
    title = title or f"poisson-nmf report: {out.resolve().name}"
    blocks = _content(idata, diag, figures, cmp, title, axis)
    (out / "report.md").write_text(_to_markdown(blocks), encoding="utf-8")
    (out / "index.html").write_text(_to_html(blocks, fig_dir), encoding="utf-8")
    info = {
        "diagnosis": diag.to_dict(),
        "settings": _settings(idata),
        "attrs": {k: v for k, v in idata.attrs.items() if k not in ("settings", "modes")},
        "image_shape": shape,
        "map_vs_kl": None if cmp is None else dict(cmp.attrs),
        "figures": sorted(figures),
    }
    (out / "diagnostics.json").write_text(json.dumps(_json_ready(info), indent=2), encoding="utf-8")
    if save_fit:
        step("fit.nc")
        tree = idata.copy()
        if shape is not None:
            tree.attrs = {**tree.attrs, "image_shape": json.dumps(shape)}
        _save_fit(tree, out / "fit.nc", comparison=cmp)
    return out


def _json_ready(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_ready(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_ready(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x
