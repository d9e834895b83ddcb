"""The report's figures: one function per figure, its caption in :data:`FIGURES`.

Figures are drawn with whatever matplotlib backend is active; when pyplot has not been
imported yet, the non-interactive Agg backend is selected. Every figure is closed after
saving. Numbers come from :func:`poisson_nmf.diagnose` (computed once, with
``arviz_stats``), plots from ``arviz_plots`` (matplotlib backend) and matplotlib.

Factors as images: when the rows or columns of V are pixels of images (``image_shape``,
e.g. ``(8, 8)`` for :func:`poisson_nmf.load_digits`), each component is drawn as an
image (rows of H when the columns are pixels, columns of W when the rows are); without
an image shape, as heatmaps.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..diagnostics import Diagnosis, entry_label
from ..diagnostics.ppc import interval_percent, observed_at

__all__ = ["FIGURES", "draw_figures", "image_axis"]

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
    "(coordinate ascent: it never decreases), and every restart's ELBO where the restarts "
    "were compared (after the screening iterations, where the best was chosen).",
    "map_vs_kl.png": "MAP versus KL-NMF from the same start. Left: the objective along the "
    "iterations of each method, above the better of the two final objectives. Middle and "
    "right: the factors of the two fits, normalised and matched; on the diagonal when both "
    "reach the same optimum.",
}
_DPI = 90
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
    for ax, col in zip(axes, ("r_hat", "ess_bulk", "ess_tail"), strict=True):
        rule = diag.check(col).threshold
        for var, color in (("W", "#4c72b0"), ("H", "#dd8452")):
            x = np.sort(e.loc[e["variable"] == var, col].to_numpy(dtype=float))
            x = x[np.isfinite(x)]
            if x.size:
                ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", color=color,
                        label=f"{var} ({x.size} entries)")  # fmt: skip
        if rule is not None:
            ax.axvline(rule.value, color="k", ls="--", lw=1)
        needs = f" (needs {rule.rule})" if rule is not None else ""
        ax.set_title(f"{col.replace('_', ' ')}{needs}", fontsize=10)
        ax.set_ylabel("share of entries <= x")
        ax.set_ylim(0, 1.02)
    if axes[0].get_legend_handles_labels()[0]:  # none when R-hat is undefined (one chain)
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
    b.set_ylabel("ELBO where compared")
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
    obs = observed_at(idata, pp["V"]).to_dataset()
    if "entry" not in pp.dims and pp.sizes["row"] * pp.sizes["column"] > _ROOTOGRAM_ENTRIES:
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
    nominal = interval_percent(ppc["prob"])
    a1.set_title(f"coverage {ppc['coverage']:.1%} overall (dashed: nominal {nominal})")
    r, p = disc["realised"].to_numpy(), disc["replicated"].to_numpy()
    a2.scatter(r, p, s=8, alpha=0.5, color="#dd8452")
    lo, hi = min(r.min(), p.min()), max(r.max(), p.max())
    a2.plot([lo, hi], [lo, hi], "k--", lw=1)
    a2.set_xlabel("chi-square of the data, X²(y, θ)")
    a2.set_ylabel("chi-square of replicated data, X²(yrep, θ)")
    a2.set_title(f"posterior predictive p = {ppc['ppp']:.3f}")
    fig.tight_layout()
    _save(fig, path)


def image_axis(image_shape: Sequence[int] | None, F: int, N: int) -> str | None:
    """Which side of V (F x N) holds the pixels of ``image_shape``: "column", "row" or None."""
    if not image_shape:
        return None
    size = int(np.prod(image_shape))
    return "column" if size == N else ("row" if size == F else None)


def _fig_factors(
    post: xr.Dataset, image_shape: Sequence[int] | None, h_path: Path, w_path: Path
) -> None:
    """Draw H and W, as images along :func:`image_axis` or as heatmaps."""
    import matplotlib.pyplot as plt

    mean = {v: post[v].mean(("chain", "draw")) for v in ("W", "H")}
    sd = {v: post[v].std(("chain", "draw")) for v in ("W", "H")}
    F, K = mean["W"].shape
    N = mean["H"].shape[1]
    axis = image_axis(image_shape, F, N)
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


def _fig_map_vs_kl(cmp: xr.Dataset, path: Path) -> None:
    import matplotlib.pyplot as plt

    from ..optim.compare import matched_agreement

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


def draw_figures(
    idata: xr.DataTree,
    diag: Diagnosis,
    cmp: xr.Dataset | None,
    image_shape: Sequence[int] | None,
    fig_dir: Path,
    step: Callable[[str], None],
) -> dict[str, str]:
    """Draw every figure whose data the fit has into ``fig_dir``.

    Parameters
    ----------
    idata : xarray.DataTree
    diag : Diagnosis
    cmp : xarray.Dataset or None
        The MAP-versus-KL comparison (:func:`poisson_nmf.io.comparison_to_dataset`).
    image_shape : sequence of int or None
    fig_dir : pathlib.Path
        An existing folder.
    step : callable
        Called with each figure's file name before it is drawn (progress).

    Returns
    -------
    dict
        File name to caption, for the figures drawn.
    """
    _use_agg()
    post = idata["posterior"].to_dataset()
    figures: dict[str, str] = {}

    def fig(names: tuple[str, ...], draw: Callable[[], Any]) -> None:
        step(names[0])
        draw()
        figures.update({n: FIGURES[n] for n in names})

    if idata.attrs.get("approximate", False):  # independent draws: no chains to plot
        if "vi" in idata.attrs:
            fig(("elbo.png",), lambda: _fig_elbo(idata, fig_dir / "elbo.png"))
    else:
        fig(("convergence.png",), lambda: _fig_convergence(diag, fig_dir / "convergence.png"))
    if not idata.attrs.get("approximate", False) and post.sizes["chain"] >= 2:
        # rank plots compare chains: one chain has nothing to compare (R-hat is undefined)
        fig(("rank_worst.png", "trace_worst.png"),
            lambda: _fig_worst(post, diag, fig_dir / "rank_worst.png",
                               fig_dir / "trace_worst.png"))  # fmt: skip
    if "sample_stats" in idata.children and "energy" in idata["sample_stats"]:
        ss = idata["sample_stats"].to_dataset()
        fig(("energy.png",), lambda: _fig_energy(ss, fig_dir / "energy.png"))
    if diag.ppc is not None:
        fig(("ppc_rootogram.png",), lambda: _fig_rootogram(idata, fig_dir / "ppc_rootogram.png"))
        fig(("ppc_checks.png",), lambda: _fig_ppc_checks(diag, fig_dir / "ppc_checks.png"))
    fig(("factors_H.png", "factors_W.png"),
        lambda: _fig_factors(post, image_shape, fig_dir / "factors_H.png",
                             fig_dir / "factors_W.png"))  # fmt: skip
    if diag.elpd is not None:
        fig(("pareto_k.png",), lambda: _fig_pareto(diag, fig_dir / "pareto_k.png"))
    if cmp is not None:
        fig(("map_vs_kl.png",), lambda: _fig_map_vs_kl(cmp, fig_dir / "map_vs_kl.png"))
    return figures
