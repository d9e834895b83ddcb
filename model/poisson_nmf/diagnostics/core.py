"""The verdict on a fit: :func:`diagnose` validates, tabulates, runs the checks, decides.

The checks, their thresholds and what a failure means are in
:mod:`poisson_nmf.diagnostics`; each check is a function of
:mod:`poisson_nmf.diagnostics.checks`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import check_int, check_real
from ..convergence import entry_table
from ..report.formatting import fmt_num, json_ready
from ..sampling.stopping import budget_advice
from . import checks as ck
from .checks import THRESHOLDS, Check
from .loo import PSIS_MIN_DRAWS, loo_summary
from .ppc import ppc_summary

__all__ = ["Diagnosis", "diagnose", "entry_label"]

Verdict = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Diagnosis:
    """Result of :func:`diagnose`.

    Attributes
    ----------
    verdict : {"ok", "warn", "fail"}
        ``"fail"`` when a sampling check failed, ``"warn"`` when only model-fit checks
        did, ``"ok"`` otherwise (``"info"`` checks, efficiency notices and Pareto k,
        never change it).
    reasons : tuple of str
        The detail of every failed check, sampling checks first.
    checks : tuple of Check
        Every check, passed or not.
    entries : pandas.DataFrame
        One row per entry of W and H: ``variable``, ``row``, ``component``, ``column``
        (absent ones NA), ``mean``, ``sd``, the 90% equal-tailed interval ``eti90_lb``,
        ``eti90_ub``, ``ess_bulk``, ``ess_tail``, ``r_hat``, ``mcse_mean``.
    n_chains, n_draws : int
    ebfmi : list of float
        E-BFMI of each chain.
    modes : dict
        :class:`poisson_nmf.ModeReport` as a dict.
    loo : dict or None
        ``elpd``, ``se``, ``p``, ``n_samples``, ``n_data_points``, ``good_k`` (ArviZ's
        sample-size-dependent k threshold), ``subsampled`` and ``n_k`` (entries with a
        Pareto k) and ``k_counts``, the counts of Pareto k in (-inf, 0.5], (0.5, 0.7],
        (0.7, 1], (1, inf); ``n_parameters`` ((F + N) K) and ``n_constant`` (entries
        with a constant log-likelihood, left out of the counts).
    ppc : dict or None
        ``prob``, ``coverage``, ``coverage_p`` (one-sided binomial p of the coverage),
        ``ppp`` (chi-square; NaN when undefined), ``n_undefined_draws``, ``n_draws``.
    pareto_k : xarray.DataArray or None
        Pareto k per observed entry (dims of the log-likelihood: (row, column) or
        (entry)). Not in :meth:`to_dict`.
    elpd : object or None
        ArviZ's ``ELPDDataLOO`` (for :func:`arviz_plots.plot_khat`). Not in
        :meth:`to_dict`.
    discrepancy : pandas.DataFrame or None
        One row per predictive draw: ``realised`` and ``replicated`` chi-square.
    covered : pandas.DataFrame or None
        Per observed entry: ``observed`` count and whether its interval ``covered`` it.
    mode_report : ModeReport or None
        The object behind :attr:`modes` (None for variational fits and loadings). Not
        in :meth:`to_dict`.
    """

    verdict: Verdict
    reasons: tuple[str, ...]
    checks: tuple[Check, ...]
    entries: pd.DataFrame = field(repr=False)
    n_chains: int
    n_draws: int
    ebfmi: list[float]
    modes: dict
    loo: dict | None
    ppc: dict | None
    pareto_k: Any = field(default=None, repr=False)
    elpd: Any = field(default=None, repr=False)
    discrepancy: pd.DataFrame | None = field(default=None, repr=False)
    covered: pd.DataFrame | None = field(default=None, repr=False)
    mode_report: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the verdict is ``"ok"``."""
        return self.verdict == "ok"

    def check(self, name: str) -> Check:
        """Return the check called ``name``."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check {name!r}; checks are {[c.name for c in self.checks]}")

    def worst_entries(self, n: int = 10) -> pd.DataFrame:
        """Return the ``n`` entries with the largest R-hat (ties: the smallest bulk ESS)."""
        df = self.entries.assign(_ess=self.entries["ess_bulk"].fillna(-np.inf))
        df = df.sort_values(["r_hat", "_ess"], ascending=[False, True], na_position="first")
        return df.drop(columns="_ess").head(n).reset_index(drop=True)

    def to_dict(self, n_worst: int = 10) -> dict:
        """JSON-ready summary (no per-entry arrays beyond the ``n_worst`` entries).

        Each check's ``threshold`` is ``{"op", "value", "note"}`` or None (format 2).
        """
        worst = self.worst_entries(n_worst)
        return json_ready(
            {
                "verdict": self.verdict,
                "reasons": list(self.reasons),
                "checks": [asdict(c) for c in self.checks],
                "thresholds": THRESHOLDS,
                "n_chains": self.n_chains,
                "n_draws": self.n_draws,
                "n_entries": len(self.entries),
                "ebfmi": self.ebfmi,
                "modes": self.modes,
                "loo": self.loo,
                "ppc": self.ppc,
                "worst_entries": worst.astype(object).where(worst.notna(), None).to_dict("records"),
            }
        )

    def __str__(self) -> str:
        lines = [f"verdict: {self.verdict.upper()}"]
        lines += [f"  - {r}" for r in self.reasons]
        for c in self.checks:
            if c.severity == "info" or c.threshold is None:
                lines.append(f"[{'info' if c.passed else c.status}] {c.label}: {c.detail}")
                continue
            mark = "ok  " if c.passed else {"fail": "FAIL", "warn": "warn"}[c.severity]
            lines.append(f"[{mark}] {c.label}: {fmt_num(c.value)} (needs {c.threshold})")
        return "\n".join(lines)


def entry_label(entry: Any) -> str:
    """Name one entry (a row of :attr:`Diagnosis.entries`): ``W[row r, k c]``, ``H[k c, col n]``."""
    if entry["variable"] == "W":
        return f"W[row {entry['row']}, k {entry['component']}]"
    return f"H[k {entry['component']}, col {entry['column']}]"


def verdict_of(checks: list[Check]) -> tuple[Verdict, tuple[str, ...]]:
    """Return the verdict and its reasons: failed sampling checks first, then model-fit caveats."""
    failed = [c for c in checks if not c.passed and c.severity != "info"]
    failed.sort(key=lambda c: {"fail": 0, "warn": 1}[c.severity])
    verdict: Verdict = (
        "fail" if any(c.severity == "fail" for c in failed) else ("warn" if failed else "ok")
    )
    return verdict, tuple(c.detail for c in failed)


# ---------------------------------------------------------------------------------------
# the pieces


def _sample_stat(idata: xr.DataTree, *names: str) -> int | None:
    """Sum of the first of ``names`` in ``sample_stats`` (None when none is there)."""
    ss: Any = idata["sample_stats"] if "sample_stats" in idata.children else {}
    for n in names:
        if n in ss:
            return int(ss[n].sum())
    return None


def _ebfmi(idata: xr.DataTree) -> list[float]:
    """E-BFMI of each chain (NaN where undefined; empty without an ``energy`` statistic)."""
    import arviz_stats as azs

    if "sample_stats" not in idata.children or "energy" not in idata["sample_stats"]:
        return []
    with np.errstate(divide="ignore", invalid="ignore"):  # classified by check_ebfmi
        return [float(v) for v in np.atleast_1d(azs.bfmi(idata["sample_stats"]["energy"]).values)]


def _sampling_checks(
    idata: xr.DataTree, entries: pd.DataFrame, r_hat_max: float, ess_min: float, ebfmi_min: float
) -> tuple[list[Check], list[float], Any]:
    """R-hat, ESS, MCSE, divergences, tree depth, E-BFMI and modes of MCMC draws."""
    from ..sampling.modes import detect_modes

    C, D = idata["posterior"].sizes["chain"], idata["posterior"].sizes["draw"]
    ebfmi = _ebfmi(idata)
    modes = detect_modes(idata)
    checks = ck.convergence_checks(
        entries, C, r_hat_max, ess_min, advice=budget_advice(idata.attrs), n_draws=D
    )
    checks += [
        ck.check_mcse(entries),
        ck.check_divergences(_sample_stat(idata, "diverging"), C * D),
        ck.check_tree_depth(
            _sample_stat(idata, "maxdepth_reached", "reached_max_treedepth"), C * D
        ),
        ck.check_ebfmi(ebfmi, ebfmi_min),
        ck.check_modes(modes.n_modes, modes.labels, C),
    ]
    return checks, ebfmi, modes


def _diagnose_loadings(idata: xr.DataTree, r_hat_max: float, ess_min: float) -> Diagnosis:
    """Diagnose a :func:`poisson_nmf.fit_loadings` tree: R-hat and ESS of H (or none)."""
    post = idata["posterior"].to_dataset()
    C, D = post.sizes["chain"], post.sizes["draw"]
    if idata.attrs.get("point_estimate", False) or C * D == 1:
        H = post["H"].isel(chain=0, draw=0)
        entries = H.to_dataframe().reset_index()[["component", "column", "H"]]
        entries = entries.rename(columns={"H": "mean"}).assign(variable="H", row=None)
        checks = ck.loadings_checks(None, C, r_hat_max, ess_min)
    else:
        entries = entry_table(post, ("H",))
        checks = ck.loadings_checks(entries, C, r_hat_max, ess_min)
    verdict, reasons = verdict_of(checks)
    return Diagnosis(verdict, reasons, tuple(checks), entries, int(C), int(D), [], {}, None, None)


def _pointwise_checks(
    idata: xr.DataTree, ppc_prob: float, pareto_k_max: float, loo_max_points: int
) -> tuple[list[Check], dict[str, Any]]:
    """Run the predictive checks and PSIS-LOO on the thinned pointwise groups, if any."""
    out: dict[str, Any] = dict(ppc=None, discrepancy=None, covered=None, loo=None,
                               pareto_k=None, elpd=None)  # fmt: skip
    checks: list[Check] = []
    if "posterior_predictive" in idata.children and "observed_data" in idata.children:
        out["ppc"], out["discrepancy"], out["covered"] = ppc_summary(idata, ppc_prob)
        checks += [ck.check_ppc_coverage(out["ppc"]), ck.check_ppc_discrepancy(out["ppc"])]
    else:
        checks.append(ck.not_applicable("ppc_coverage", "posterior predictive checks",
                      "no posterior_predictive group (pointwise_draws=0): not "
                      "checked"))  # fmt: skip
    ll = idata["log_likelihood"] if "log_likelihood" in idata.children else None
    n_ll = ll.sizes["chain"] * ll.sizes["draw"] if ll is not None else 0
    if ll is None:
        checks.append(ck.not_applicable("pareto_k", "PSIS-LOO",
                      "no log_likelihood group (pointwise_draws=0, or a variational fit of "
                      "a large V): not computed"))  # fmt: skip
    elif n_ll < PSIS_MIN_DRAWS:
        checks.append(ck.not_applicable("pareto_k", "PSIS-LOO",
                      f"not computed: {n_ll} pointwise draws, PSIS needs at least "
                      f"{PSIS_MIN_DRAWS}"))  # fmt: skip
    else:
        try:
            loo, elpd, k, n_undef = loo_summary(idata, loo_max_points)
        except (ValueError, FloatingPointError) as err:
            # e.g. draws repeated by importance resampling: PSIS cannot fit a tail
            checks.append(ck.not_applicable("pareto_k", "PSIS-LOO",
                          f"not computed: ArviZ's PSIS failed on these draws ({err})"))  # fmt: skip
            return checks, out
        out.update(loo=loo, elpd=elpd, pareto_k=elpd.pareto_k)
        checks.append(ck.check_pareto_k(loo, k, n_undef, pareto_k_max, float(elpd.p)))
    return checks, out


# ---------------------------------------------------------------------------------------
# the public entry point


def diagnose(
    idata: xr.DataTree,
    *,
    r_hat_max: float = THRESHOLDS["r_hat"],
    ess_min_per_chain: float = THRESHOLDS["ess_per_chain"],
    ebfmi_min: float = THRESHOLDS["ebfmi"],
    pareto_k_max: float = THRESHOLDS["pareto_k"],
    ppc_prob: float = THRESHOLDS["ppc_prob"],
    loo_max_points: int = 2000,
) -> Diagnosis:
    """Check a posterior fit against the usual thresholds and give a verdict.

    Parameters
    ----------
    idata : xarray.DataTree
        From :func:`poisson_nmf.sample_posterior` or :func:`poisson_nmf.load_fit`:
        ``posterior`` W (chain, draw, row, component), H (chain, draw, component,
        column); ``sample_stats`` with ``diverging``, ``energy``, ``log_likelihood``
        (and ``maxdepth_reached`` or ``reached_max_treedepth``); optionally the
        pointwise ``log_likelihood`` and ``posterior_predictive`` groups (``V``) and
        ``observed_data``. A tree of loadings given W (:func:`poisson_nmf.fit_loadings`)
        gets its own, fewer checks.
    r_hat_max, ess_min_per_chain, ebfmi_min, pareto_k_max : float
        Thresholds (defaults 1.01, 100, 0.3, 0.7; see :mod:`poisson_nmf.diagnostics`).
    ppc_prob : float
        Mass of the central posterior predictive intervals for the coverage check.
    loo_max_points : int
        With more observed entries than this, PSIS-LOO is estimated from a fixed random
        subsample of this many entries (``arviz_stats.loo_subsample``) and Pareto k is
        known for those entries only; ArviZ's PSIS loops over the entries in Python.

    Returns
    -------
    Diagnosis

    Raises
    ------
    TypeError
        When ``idata`` is not a DataTree.
    TypeError, ValueError
        A threshold that is not a finite number in its range (``r_hat_max`` > 1;
        ``ess_min_per_chain``, ``ebfmi_min``, ``pareto_k_max`` > 0; ``ppc_prob`` in
        (0, 1); ``loo_max_points`` an integer >= 1), named in the message.
    ValueError
        Without a posterior of W and H (or of H alone).
    """
    if not isinstance(idata, xr.DataTree):
        raise TypeError(
            f"idata must be an xarray.DataTree from sample_posterior, fit_loadings or "
            f"load_fit, got {type(idata).__name__}"
        )
    r_hat_max = check_real(r_hat_max, "r_hat_max", 1.0)  # R-hat is 1 at best
    ess_min_per_chain = check_real(ess_min_per_chain, "ess_min_per_chain", 0.0)
    ebfmi_min = check_real(ebfmi_min, "ebfmi_min", 0.0)
    pareto_k_max = check_real(pareto_k_max, "pareto_k_max", 0.0)
    ppc_prob = check_real(ppc_prob, "ppc_prob", 0.0, 1.0)
    loo_max_points = check_int(loo_max_points, "loo_max_points", 1)
    post_vars: Any = idata["posterior"] if "posterior" in idata.children else {}
    if "W" not in post_vars and "H" in post_vars:
        return _diagnose_loadings(idata, r_hat_max, ess_min_per_chain)
    if "W" not in post_vars or "H" not in post_vars:
        raise ValueError("idata must have a posterior group with W and H (from sample_posterior)")
    post = idata["posterior"].to_dataset()
    approximate = bool(idata.attrs.get("approximate", False))
    entries = entry_table(post, diagnostics=not approximate)
    mode_report = None
    if approximate:
        checks, modes = ck.approximation_checks(idata.attrs)
        ebfmi: list[float] = []
    else:
        checks, ebfmi, mode_report = _sampling_checks(
            idata, entries, r_hat_max, ess_min_per_chain, ebfmi_min
        )
        modes = asdict(mode_report)
    more, pointwise = _pointwise_checks(idata, ppc_prob, pareto_k_max, loo_max_points)
    checks += more
    verdict, reasons = verdict_of(checks)
    return Diagnosis(
        verdict=verdict,
        reasons=reasons,
        checks=tuple(checks),
        entries=entries,
        n_chains=int(post.sizes["chain"]),
        n_draws=int(post.sizes["draw"]),
        ebfmi=ebfmi,
        modes=json.loads(json.dumps(modes)),
        mode_report=mode_report,
        **pointwise,
    )
