"""The report's content: one function per section, each returning a list of blocks.

A :class:`Block` is one heading, paragraph, table, figure, verdict box or table of
contents; :mod:`.render` writes the same blocks as Markdown and as HTML. Numbers are
read from the :class:`poisson_nmf.Diagnosis` (its checks' thresholds are records, its
modes a :class:`poisson_nmf.ModeReport`), never parsed back from text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import xarray as xr

from ..diagnostics import Diagnosis, entry_label
from ..diagnostics.ppc import interval_percent
from ..observed import observed_counts
from .formatting import fmt_int, fmt_num

__all__ = ["Block", "content", "settings_of"]

BlockKind = Literal["h1", "h2", "p", "table", "fig", "verdict", "toc"]

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


@dataclass
class Block:
    """One piece of the page.

    Attributes
    ----------
    kind : {"h1", "h2", "p", "table", "fig", "verdict", "toc"}
    text : str
        The heading or paragraph; a figure's file name; the verdict (``"ok"``, ...).
    items : list of str
        The verdict's reasons; a figure's caption (one item).
    header, rows : list
        A table's header and rows of cells (strings).
    anchor : str
        An ``h2``'s anchor, linked from the table of contents.
    links : list of (str, str)
        The table of contents: (anchor, title) pairs.
    """

    kind: BlockKind
    text: str = ""
    items: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    anchor: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)


def _figs(figures: dict[str, str], *names: str) -> list[Block]:
    return [Block("fig", f, items=[figures[f]]) for f in names if f in figures]


def settings_of(idata: xr.DataTree) -> dict:
    """Return the run's settings (``attrs["settings"]``), ``{}`` when absent or unreadable."""
    try:
        return dict(json.loads(idata.attrs.get("settings", "{}")))
    except (TypeError, json.JSONDecodeError):
        return {}


# ---------------------------------------------------------------------------------------
# sections


def _data_text(idata: xr.DataTree) -> str:
    post = idata["posterior"]
    data = f"V: {post.sizes['row']} rows x {post.sizes['column']} columns"
    if "observed_data" not in idata.children:
        return data
    counts = observed_counts(idata)
    nz = counts.nz_values
    share = nz.size / max(counts.n_observed, 1)
    if counts.has_mask:
        return data + (
            f", {int(nz.sum())} counts in all over {counts.n_observed} observed entries, "
            f"{share:.1%} of them non-zero; {counts.missing_rows.size} "
            "entries missing (masked, left out of the likelihood)"
        )
    return data + f", {int(nz.sum())} counts in all, {share:.1%} non-zero"


def run_section(idata: xr.DataTree, diag: Diagnosis) -> list[Block]:
    """Describe the data, model, sampler, normalisation, time and version."""
    from .._version import __version__

    st = settings_of(idata)
    pri = st.get("priors", {})
    K = idata["posterior"].sizes["component"]
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
            f"{fmt_num(vi['elbo'], 8)} after {vi['n_iter']} iterations; {diag.n_draws} "
            f"independent draws from q; seed {st.get('random_seed')}"
        )
    norm = idata.attrs.get("normalize", st.get("normalize", "W"))
    rows = [
        ["data", _data_text(idata)],
        ["model", model],
        ["sampler", sampler],
        ["normalisation", "W: the columns of W sum to one, H carries the scale" if norm == "W"
         else "H: the rows of H sum to one, W carries the scale"],
        ["time", f"sampling {fmt_num(idata.attrs.get('sampling_time_s'), 3)} s, "
                 f"in all {fmt_num(idata.attrs.get('total_time_s'), 3)} s"],
        ["version", f"poisson-nmf {idata.attrs.get('poisson_nmf_version', __version__)}"],
    ]  # fmt: skip
    return [Block("h2", "The run", anchor="run"), Block("table", header=["", ""], rows=rows)]


def _check_rows(diag: Diagnosis) -> list[list[str]]:
    return [
        [c.label, fmt_num(c.value), "-" if c.threshold is None else str(c.threshold),
         c.status, c.detail]
        for c in diag.checks
        if c.name != "pareto_k"
    ]  # fmt: skip


def _worst_table(diag: Diagnosis) -> Block:
    rows = [
        [entry_label(e), fmt_num(e["mean"]), fmt_num(e["sd"]), fmt_num(e["r_hat"]),
         fmt_int(e["ess_bulk"]), fmt_int(e["ess_tail"]), fmt_num(e["mcse_mean"], 2)]
        for _, e in diag.worst_entries(8).iterrows()
    ]  # fmt: skip
    header = ["entry", "mean", "sd", "R-hat", "ESS bulk", "ESS tail", "MCSE mean"]
    return Block("table", header=header, rows=rows)


def sampling_section(idata: xr.DataTree, diag: Diagnosis, figures: dict[str, str]) -> list[Block]:
    """List every check against its threshold, the modes, E-BFMI, the slowest entries."""
    B = [
        Block("h2", "Sampling diagnostics", anchor="sampling"),
        Block(
            "p",
            "Every check compared with its threshold. A FAIL (R-hat, ESS, divergences, "
            "E-BFMI, modes) means the draws do not represent the posterior; a WARN is a "
            "caveat on the fit of the model (one-sided: over-dispersion); a note (MCSE, "
            "tree depth) is the cost of the run, never a caveat on the draws. "
            "Thresholds: R-hat 1.01 and ESS 100 per chain (Vehtari et al. 2021), E-BFMI "
            "0.3 (Betancourt 2016). Pareto k is in the PSIS-LOO section.",
        ),
        Block(
            "table", header=["check", "value", "needs", "status", "detail"], rows=_check_rows(diag)
        ),  # fmt: skip
    ]
    approximate = bool(idata.attrs.get("approximate", False))
    if approximate:
        B.append(Block("p", _VI_TEXT))
    elif diag.mode_report is not None:
        B.append(Block("p", f"Modes: {diag.mode_report}."))
    if diag.ebfmi:
        B.append(
            Block("p", "E-BFMI per chain: " + ", ".join(fmt_num(v, 3) for v in diag.ebfmi) + ".")
        )
    if not approximate:  # R-hat and ESS describe Markov chains
        B += [Block("p", "The entries with the largest R-hat:"), _worst_table(diag)]
    return B + _figs(
        figures, "convergence.png", "rank_worst.png", "trace_worst.png", "energy.png", "elbo.png"
    )


def ppc_section(diag: Diagnosis, figures: dict[str, str]) -> list[Block]:
    """Report the coverage and the discrepancy, with their figures."""
    B = [Block("h2", "Posterior predictive checks", anchor="ppc")]
    p = diag.ppc
    if p is None:
        return B + [
            Block("p", "Not available: the fit has no posterior_predictive group "
                       "(sampled with pointwise_draws=0).")
        ]  # fmt: skip
    which = (
        f"every non-zero count and a fixed random subsample of the zeros "
        f"({p['n_pointwise_entries']} entries, weighted to stand for all "
        f"{p['n_entries']} observed counts)"
        if p.get("weighted")
        else f"all {p['n_entries']} observed counts"
    )
    B.append(
        Block(
            "p",
            f"From {p['n_draws']} predictive draws of {which}: {p['coverage']:.1%} of the "
            f"counts lie inside their central {interval_percent(p['prob'])} predictive "
            "interval; the "
            f"chi-square discrepancy of the data averages {fmt_num(p['realised_mean'])} "
            f"against {fmt_num(p['replicated_mean'])} for replicated data (posterior "
            f"predictive p = {p['ppp']:.3f}).",
        )
    )
    skipped = [c.detail for c in diag.checks
               if c.name in ("ppc_coverage", "ppc_discrepancy") and c.status == "n/a"]  # fmt: skip
    if skipped:  # too few predictive draws: the figures show them, no check judges them
        B.append(Block("p", "The checks of these figures: " + "; ".join(skipped) + "."))
    return B + _figs(figures, "ppc_rootogram.png", "ppc_checks.png")


def loo_section(diag: Diagnosis, figures: dict[str, str]) -> list[Block]:
    """Report elpd_loo, p_loo and the Pareto k counts (information, never a verdict)."""
    B = [Block("h2", "PSIS-LOO", anchor="loo")]
    lo = diag.loo
    if lo is None:
        why = next((c.detail for c in diag.checks if c.name == "pareto_k"), None)
        return B + [Block("p", f"Not available: {why or 'the fit has no log_likelihood group'}.")]
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
    kc = diag.check("pareto_k")
    B += [
        Block(
            "p",
            f"Leave-one-entry-out, {how}, from {lo['n_samples']} draws: "
            f"elpd_loo = {fmt_num(lo['elpd'], 6)} (se {fmt_num(lo['se'], 3)}), "
            f"p_loo = {fmt_num(lo['p'], 4)}. Each row of W belongs to one row of V, "
            "so single entries are often influential; large Pareto k say that "
            "elpd_loo is unreliable, not that the sampler failed.",
        ),
        Block("p", f"Pareto k ({kc.status}, information): {kc.detail}."),
    ]
    n_par = lo["n_parameters"]
    if lo["p"] > n_par:
        B.append(
            Block(
                "p",
                f"p_loo ({fmt_num(lo['p'], 4)}) exceeds the number of parameters "
                f"(F + N) K = {n_par}: a sign of misspecification or of many "
                "influential entries (Vehtari, Gelman & Gabry 2017).",
            )
        )
    rows = [[k, str(v)] for k, v in lo["k_counts"].items()]
    B.append(Block("table", header=["Pareto k", "entries"], rows=rows))
    return B + _figs(figures, "pareto_k.png")


def factors_section(image_axis: str | None, figures: dict[str, str]) -> list[Block]:
    """Show the posterior mean and sd of W and H."""
    how = {
        "column": "each row of H drawn as an image (the columns of V are pixels)",
        "row": "each column of W drawn as an image (the rows of V are pixels)",
        None: "heatmaps (no image shape given)",
    }[image_axis]
    text = (
        "Posterior mean and sd of W (rows x components) and H (components x columns), "
        f"aligned across chains and draws; {how}."
    )
    return [Block("h2", "The factors", anchor="factors"), Block("p", text)] + _figs(
        figures, "factors_H.png", "factors_W.png"
    )


def claim_sentence(a: Any) -> str:
    """Say in one sentence what a MAP-versus-KL comparison shows, from its numbers (attrs)."""
    gap = float(a["objective_gap"])
    verdict = (
        f"Each solution stays put under the other method (gap {gap:.2g} <= 1e-6): the claim "
        "holds here."
        if gap <= 1e-6
        else f"Cross-polishing moved a solution by {gap:.2g} (> 1e-6): the claim is not "
        "confirmed by this run; one of the fits had not converged."
    )
    if a["same_optimum"]:
        return f"Both fits reached the same optimum. {verdict}"
    lower = "PyMC MAP" if a["map_objective"] < a["kl_objective"] else "KL-NMF"
    diff = abs(float(a["map_objective"]) - float(a["kl_objective"]))
    return (
        "From the same start the two optimisers ended in different local optima of NMF "
        f"({lower} lower by {diff:.4g}); that is the non-convexity of NMF, not a "
        f"difference between the objectives. {verdict}"
    )


def comparison_section(cmp: xr.Dataset, figures: dict[str, str]) -> list[Block]:
    """Compare MAP and KL-NMF: the objectives, the cross-polishing gap, KKT residuals."""
    a = cmp.attrs
    rows = [
        ["KL-NMF objective", fmt_num(a["kl_objective"], 10), f"{a['kl_n_iter']} iterations"],
        ["PyMC MAP objective", fmt_num(a["map_objective"], 10), f"{a['map_n_iter']} iterations"],
        ["same optimum", "yes" if a["same_optimum"] else "no", "relative difference <= 1e-6"],
        ["objective gap after cross-polishing", fmt_num(a["objective_gap"], 3), "relative"],
        ["KKT residual, KL under MAP", fmt_num(a["kkt_kl_under_map"], 3), "relative"],
        ["KKT residual, MAP under KL", fmt_num(a["kkt_map_under_kl"], 3), "relative"],
        ["identity logp + objective = constant", fmt_num(a["identity_error"], 3), "relative"],
        ["matched factors, max |dW|", fmt_num(a["w_agreement"], 3), "W columns sum to one"],
        ["matched factors, rel. dH", fmt_num(a["h_agreement"], 3), ""],
    ]
    return [
        Block("h2", "MAP versus KL-NMF", anchor="map-vs-kl"),
        Block(
            "p",
            "The claim: the PyMC MAP under flat priors is the KL-NMF solution "
            "(with Gamma priors, the penalised KL solution). Both are fitted from "
            "one start; each solution is then polished by the other method, which "
            "must not move it (objective gap), and must be a KKT point of the "
            "other's objective.",
        ),
        Block("p", claim_sentence(a)),
        Block("table", header=["quantity", "value", "note"], rows=rows),
    ] + _figs(figures, "map_vs_kl.png")


# ---------------------------------------------------------------------------------------
# the page


def content(
    idata: xr.DataTree,
    diag: Diagnosis,
    figures: dict[str, str],
    cmp: xr.Dataset | None,
    title: str,
    image_axis: str | None,
) -> list[Block]:
    """Return every block of the page: title, verdict, contents, the sections, files.

    Parameters
    ----------
    idata : xarray.DataTree
    diag : Diagnosis
    figures : dict
        File name to caption, of the figures drawn (others are left out).
    cmp : xarray.Dataset or None
        The MAP-versus-KL comparison; its section only when given.
    title : str
    image_axis : {"column", "row", None}
        Which side of V is pixels (:func:`poisson_nmf.report.figures.image_axis`).
    """
    sections = [
        run_section(idata, diag),
        sampling_section(idata, diag, figures),
        ppc_section(diag, figures),
        loo_section(diag, figures),
        factors_section(image_axis, figures),
    ]
    if cmp is not None:
        sections.append(comparison_section(cmp, figures))
    toc = [(s[0].anchor, s[0].text) for s in sections]
    B = [
        Block("h1", title),
        Block("verdict", diag.verdict, items=list(diag.reasons)),
        Block("toc", links=toc),
    ]
    for s in sections:
        B += s
    B.append(
        Block(
            "p",
            "Files: index.html, report.md, diagnostics.json, fit.nc and "
            "figures/. Re-render with `poisson-nmf report fit.nc --out DIR`.",
        )
    )
    return B
