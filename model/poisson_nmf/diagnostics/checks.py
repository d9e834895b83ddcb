"""One small function per diagnostic check, each returning a :class:`Check` record.

A check holds its threshold as a number and an operator (:class:`Threshold`), never as
a string to be parsed back, and is composed into a verdict by
:func:`poisson_nmf.diagnose`, as PyMC's ``run_convergence_checks`` composes
``warn_divergences`` and ``warn_treedepth``. What each check measures, its threshold
and what a failure means are in :mod:`poisson_nmf.diagnostics`.

Undefined values are classified by each function before any comparison (an undefined
value never passes or fails by way of a NaN comparison): :meth:`Threshold.holds`
refuses a value that is not finite.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..convergence import summarize_convergence
from ..ess_rhat import MIN_DRAWS
from .ppc import interval_percent

__all__ = [
    "PPC_MIN_DRAWS",
    "THRESHOLDS",
    "Check",
    "Severity",
    "Threshold",
    "approximation_checks",
    "check_divergences",
    "check_ebfmi",
    "check_mcse",
    "check_modes",
    "check_pareto_k",
    "check_ppc_coverage",
    "check_ppc_discrepancy",
    "check_tree_depth",
    "convergence_checks",
    "loadings_checks",
    "not_applicable",
    "ppc_min_draws",
]

Severity = Literal["fail", "warn", "info"]
Operator = Literal["<=", ">=", "<", ">", "=="]

THRESHOLDS: dict[str, float] = {
    "r_hat": 1.01,
    "ess_per_chain": 100.0,
    "ebfmi": 0.3,
    "pareto_k": 0.7,
    "mcse_over_sd": 0.1,
    "ppc_prob": 0.9,
    "coverage_shortfall": 0.05,
    "ppp_low": 0.025,
    "ppp_high": 0.975,
    "vi_restart_tv": 0.1,
}
# one-sided binomial p below which a coverage shortfall is more than chance
COVERAGE_ALPHA = 0.01
# Fewest predictive draws for the predictive checks. A central 90 % interval from S draws
# puts 0.05 S draws beyond each end: below 20 that is less than one draw, so the interval
# is the range of a handful of draws (from 1 draw: a point) and misses far more than 10 %
# of counts under the model itself (3 draws: coverage 0.50 on Poisson data). The p-value's
# resolution, 1 / S, is then coarser than 0.05, twice its 0.025 threshold. Wider
# intervals need more: ceil(2 / (1 - ppc_prob)) (one draw beyond each end), at least 20.
PPC_MIN_DRAWS = 20

_OPS = {
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "==": lambda a, b: a == b,
}


@dataclass(frozen=True)
class Threshold:
    """A rule ``value <op> threshold``, e.g. ``Threshold("<=", 1.01)`` for R-hat.

    Attributes
    ----------
    op : {"<=", ">=", "<", ">", "=="}
    value : float
    note : str
        What else the rule allows or means, for a person (``"100 per chain"``).
    """

    op: Operator
    value: float
    note: str = ""

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"op must be one of {sorted(_OPS)}, got {self.op!r}")
        object.__setattr__(self, "value", float(self.value))  # one type in the JSON

    def holds(self, x: float) -> bool:
        """Whether ``x <op> value``; ``False`` for a value that is not finite."""
        return math.isfinite(x) and bool(_OPS[self.op](x, self.value))

    @property
    def rule(self) -> str:
        """The comparison alone, e.g. ``"<= 1.01"``."""
        return f"{self.op} {self.value:g}"

    def __str__(self) -> str:
        return self.rule + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Check:
    """One diagnostic compared with its threshold.

    Attributes
    ----------
    name : str
        Short key (``"r_hat"``, ``"ess_bulk"``, ...).
    label : str
        What was measured, for a person.
    value : float
        The measured value (NaN when it could not be measured).
    threshold : Threshold or None
        The rule it is held to; None when the check does not apply (reported only).
    passed : bool
    severity : {"fail", "warn", "info"}
        What a failure means for the verdict (``"info"``: reported only).
    detail : str
        One sentence: what was found and, on failure, what to do.
    """

    name: str
    label: str
    value: float
    threshold: Threshold | None
    passed: bool
    severity: Severity
    detail: str

    @property
    def status(self) -> str:
        """``"pass"``, ``"FAIL"``, ``"WARN"``, ``"note"`` or ``"n/a"`` (not applicable)."""
        if self.passed:
            return "n/a" if self.threshold is None else "pass"
        return {"fail": "FAIL", "warn": "WARN", "info": "note"}[self.severity]


def not_applicable(name: str, label: str, detail: str) -> Check:
    """Return an ``"info"`` check that does not apply (no threshold, never fails)."""
    return Check(name, label, float("nan"), None, True, "info", detail)


# ---------------------------------------------------------------------------------------
# sampling


def convergence_checks(
    entries: pd.DataFrame,
    n_chains: int,
    r_hat_max: float,
    ess_min_per_chain: float,
    *,
    what: str = "entries",
    advice: str = "",
    n_draws: int | None = None,
) -> list[Check]:
    """Check R-hat and bulk and tail ESS of a per-entry table (see :mod:`..convergence`).

    Parameters
    ----------
    entries : pandas.DataFrame
        From :func:`poisson_nmf.convergence.entry_table`.
    n_chains : int
    r_hat_max, ess_min_per_chain : float
        Thresholds; the ESS threshold is ``ess_min_per_chain * n_chains``.
    what : str
        What the entries are called in the messages (``"entries"``, ``"loadings"``).
    advice : str
        Appended to a failure's detail (e.g. how to resume a run stopped at its budget).
    n_draws : int, optional
        Draws per chain: under 4, R-hat and ESS are undefined, and the details say so.

    Returns
    -------
    list of Check
        ``r_hat``, ``ess_bulk`` and ``ess_tail``, each of severity ``"fail"``.
    """
    C = n_chains
    ess_min = ess_min_per_chain * C
    conv = summarize_convergence(entries, C, r_hat_max=r_hat_max, ess_min=ess_min)
    n_live = len(entries) - conv.n_constant
    const_note = (
        f" ({conv.n_constant} constant by construction, left out)" if conv.n_constant else ""
    )
    few = n_draws is not None and n_draws < MIN_DRAWS
    undef_note = (
        f"; {conv.n_undefined} {what} vary but have no finite R-hat or ESS (non-finite draws?)"
        if conv.n_undefined and not few
        else ""
    ) + advice
    too_few = (
        f"R-hat and ESS need at least {MIN_DRAWS} draws per chain, the run has {n_draws}: "
        "draw more" + advice
    )
    checks = [
        Check(
            "r_hat", f"R-hat (rank-normalised), largest over {what}", conv.worst_r_hat,
            Threshold("<=", r_hat_max), conv.r_hat_ok, "fail",
            "R-hat needs at least 2 chains" if C < 2 else too_few if few else
            f"{conv.n_r_hat_above} of {n_live} {what} have R-hat > {r_hat_max}{const_note}; "
            "run longer or check the modes" + undef_note
            if not conv.r_hat_ok else
            f"all {n_live} {what} have R-hat <= {r_hat_max}{const_note}",
        )
    ]  # fmt: skip
    ess_rule = Threshold(">=", ess_min, f"{ess_min_per_chain:g} per chain")
    for kind in ("bulk", "tail"):
        low = getattr(conv, f"n_ess_{kind}_below")
        ok = low == 0 and conv.n_undefined == 0
        checks.append(
            Check(
                f"ess_{kind}", f"ESS {kind}, smallest over {what}",
                getattr(conv, f"min_ess_{kind}"), ess_rule, ok, "fail",
                too_few if few else
                f"{low} of {n_live} {what} have {kind} ESS < {ess_min:g}{const_note}; "
                "draw more" + undef_note if not ok
                else f"all {n_live} {what} have {kind} ESS >= {ess_min:g}{const_note}",
            )
        )  # fmt: skip
    return checks


def check_mcse(entries: pd.DataFrame) -> Check:
    """MCSE of each posterior mean against a tenth of its sd (``"info"``: a cost)."""
    rule = Threshold("<=", THRESHOLDS["mcse_over_sd"])
    live = ~entries["constant"].to_numpy(dtype=bool)
    ratio = (entries["mcse_mean"] / entries["sd"]).to_numpy(dtype=float)[live]
    ratio = ratio[np.isfinite(ratio)]
    n_bad = int(np.sum(ratio > rule.value))
    return Check(
        "mcse", "MCSE of the mean / posterior sd, largest over entries",
        float(ratio.max()) if ratio.size else float("nan"), rule, n_bad == 0, "info",
        f"efficiency: {n_bad} entries have a Monte Carlo error above a tenth of their sd"
        " (more draws make it smaller)" if n_bad
        else "every posterior mean is known to a tenth of its sd",
    )  # fmt: skip


def check_divergences(n_divergent: int | None, n_transitions: int) -> Check:
    """No divergent transition (``n_divergent`` None: the statistic is missing, a failure)."""
    found = n_divergent is not None
    n = n_divergent or 0
    return Check(
        "divergences", "divergent transitions", float(n) if found else float("nan"),
        Threshold("==", 0), found and n == 0, "fail",
        "no sampler statistic 'diverging'" if not found else
        f"{n} of {n_transitions} transitions diverged; raise target_accept "
        "(nuts_kwargs) or check the priors" if n else "no divergent transitions",
    )  # fmt: skip


def check_tree_depth(n_at_max: int | None, n_transitions: int) -> Check:
    """Transitions stopped at the maximum tree depth (``"info"``: a cost, not a bias)."""
    found = n_at_max is not None
    n = n_at_max or 0
    return Check(
        "tree_depth", "transitions at the maximum tree depth",
        float(n) if found else float("nan"), Threshold("==", 0), n == 0, "info",
        "no sampler statistic for the tree depth" if not found else
        f"efficiency: {n} of {n_transitions} transitions hit the maximum tree depth (a "
        "cost, not a bias)" if n else "no transition hit the maximum tree depth",
    )  # fmt: skip


def check_ebfmi(ebfmi: list[float], ebfmi_min: float) -> Check:
    """E-BFMI of every chain at least ``ebfmi_min``; an undefined one (NaN) fails, named."""
    undef = [c for c, v in enumerate(ebfmi) if not math.isfinite(v)]
    low = [c for c, v in enumerate(ebfmi) if math.isfinite(v) and v < ebfmi_min]
    finite = [v for v in ebfmi if math.isfinite(v)]
    parts = (
        [f"chains {low} have E-BFMI < {ebfmi_min}: momentum resampling explores the energy "
         "poorly"] if low else []
    ) + (
        [f"chains {undef} have an undefined E-BFMI (their energy is constant or not finite)"]
        if undef else []
    )  # fmt: skip
    return Check(
        "ebfmi", "E-BFMI, smallest over chains", min(finite) if finite else float("nan"),
        Threshold(">=", ebfmi_min), bool(ebfmi) and not parts, "fail",
        "no sampler statistic 'energy'" if not ebfmi
        else "; ".join(parts) if parts else "E-BFMI fine in every chain",
    )  # fmt: skip


def check_modes(n_modes: int, labels: list[int], n_chains: int) -> Check:
    """All chains in one posterior mode (:func:`poisson_nmf.detect_modes`)."""
    return Check(
        "modes", "posterior modes among the chains", float(n_modes), Threshold("==", 1),
        n_modes == 1, "fail",
        f"chains sit in {n_modes} different modes (labels {labels}); keep one "
        "(select_chains / keep='main') or sample longer"
        if n_modes > 1 else f"all {n_chains} chains in one mode",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# model fit


def ppc_min_draws(prob: float) -> int:
    """Fewest predictive draws for a central ``prob`` interval: one draw beyond each end."""
    return max(PPC_MIN_DRAWS, math.ceil(round(2 / (1 - prob), 9)))


def _too_few_draws(name: str, label: str, n_draws: int, need: int, what: str) -> Check | None:
    """Return the "info" check of a predictive check given fewer than ``need`` draws, or None."""
    if n_draws >= need:
        return None
    return not_applicable(name, label, f"not computed: {n_draws} predictive draws, {what} "
                          f"needs at least {need} (pointwise_draws, draws)")  # fmt: skip


def check_ppc_coverage(ppc: dict) -> Check:
    """Share of counts inside their central predictive interval (one-sided, ``"warn"``).

    ``ppc`` is :func:`poisson_nmf.diagnostics.ppc.ppc_summary`'s dict: ``prob``,
    ``coverage``, ``coverage_p``, ``n_entries`` and ``n_draws``. With fewer than
    :func:`ppc_min_draws` draws the check is not computed (``"info"``).
    """
    prob = ppc["prob"]
    pct = interval_percent(prob)
    few = _too_few_draws("ppc_coverage", f"observed counts inside their {pct} predictive "
                         "interval", ppc["n_draws"], ppc_min_draws(prob),
                         f"a central {pct} interval")  # fmt: skip
    if few is not None:
        return few
    need = prob - THRESHOLDS["coverage_shortfall"]
    short = ppc["coverage"] < need and ppc["coverage_p"] < COVERAGE_ALPHA
    inside = f"{ppc['coverage']:.1%} of the {ppc['n_entries']} counts fall inside"
    return Check(
        "ppc_coverage", f"observed counts inside their {pct} predictive interval",
        ppc["coverage"], Threshold(">=", need, f"or binomial p >= {COVERAGE_ALPHA}"),
        not short, "warn",
        f"{inside} (binomial p = {ppc['coverage_p']:.2g}); the data vary more than "
        "Poisson(WH) allows" if short else inside,
    )  # fmt: skip


def check_ppc_discrepancy(ppc: dict) -> Check:
    """Posterior predictive p-value of the chi-square discrepancy (one-sided, ``"warn"``).

    An undefined p (non-finite rates in some draw) fails; a p near 1 (under-dispersion)
    passes with a note; fewer than :data:`PPC_MIN_DRAWS` draws: not computed (``"info"``).
    """
    few = _too_few_draws("ppc_discrepancy", "posterior predictive p-value of the chi-square "
                         "discrepancy (over-dispersion)", ppc["n_draws"], PPC_MIN_DRAWS,
                         "a posterior predictive p-value")  # fmt: skip
    if few is not None:
        return few
    rule = Threshold(">=", THRESHOLDS["ppp_low"])
    p = ppc["ppp"]
    defined = math.isfinite(p)
    return Check(
        "ppc_discrepancy",
        "posterior predictive p-value of the chi-square discrepancy (over-dispersion)",
        p, rule, defined and rule.holds(p), "warn",
        f"undefined: {ppc['n_undefined_draws']} draws give a non-finite discrepancy "
        "(non-finite rates)" if not defined else
        f"p = {p:.3f}: the data are over-dispersed relative to Poisson(WH)"
        if not rule.holds(p) else
        f"p = {p:.3f}: no sign of over-dispersion"
        + (" (a p near 1 is common under the model itself: not a warning)"
           if p > THRESHOLDS["ppp_high"] else ""),
    )  # fmt: skip


def check_pareto_k(
    loo: dict, k: np.ndarray, n_undefined: int, pareto_k_max: float, p_loo: float
) -> Check:
    """PSIS-LOO Pareto k of the observed entries (``"info"``: whether elpd_loo is reliable).

    Parameters
    ----------
    loo : dict
        :func:`poisson_nmf.diagnostics.loo.loo_summary`'s dict (``subsampled``,
        ``n_parameters``, ``n_constant``).
    k : numpy.ndarray
        The defined Pareto k (constant log-likelihood entries left out).
    n_undefined : int
        Entries without a k that should have one (a failed fit of the tail).
    pareto_k_max : float
    p_loo : float
        ArviZ's p_loo over the entries that have one.
    """
    n_high = int(np.sum(k > pareto_k_max))
    sub = "subsampled " if loo["subsampled"] else ""
    n_const, n_par = loo["n_constant"], loo["n_parameters"]
    notes = (f"; {n_const} entries with a constant log-likelihood left out" if n_const else "") + (
        f"; {n_undefined} entries have no k (undefined)" if n_undefined else ""
    )
    p_note = f"; p_loo = {p_loo:.1f} against (F + N) K = {n_par} parameters" + (
        " (more: misspecification or many influential entries)" if p_loo > n_par else ""
    )
    return Check(
        "pareto_k", "PSIS-LOO Pareto k, largest over observed entries",
        float(k.max()) if k.size else float("nan"), Threshold("<=", pareto_k_max),
        n_high == 0 and n_undefined == 0, "info",
        (f"{n_high} of {k.size} {sub}entries ({n_high / max(k.size, 1):.1%}) have "
         f"k > {pareto_k_max}: elpd_loo is unreliable there (influential entries; "
         "says nothing about the fit of the model)" if n_high
         else f"all {k.size} {sub}entries have k <= {pareto_k_max}")
        + notes + p_note,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# variational fits and loadings


_NOT_MCMC = "not applicable: independent draws from a variational approximation"
_MCMC_ONLY = (
    ("r_hat", "R-hat"), ("ess_bulk", "ESS bulk"), ("ess_tail", "ESS tail"), ("mcse", "MCSE"),
    ("divergences", "divergent transitions"), ("tree_depth", "tree depth"), ("ebfmi", "E-BFMI"),
)  # fmt: skip


def approximation_checks(attrs: Any) -> tuple[list[Check], dict]:
    """Check a variational fit (``attrs["approximate"]``): PSIS k-hat and restarts.

    R-hat, ESS, MCSE, divergences, tree depth and E-BFMI describe Markov chains and say
    nothing about independent draws from q: they are ``"info"``. What is checked:

    - **PSIS k-hat** of q against the exact posterior (Yao et al. 2018), from
      ``attrs["vi"]["psis"]``: above ``THRESHOLDS["pareto_k"]`` (0.7) the intervals are
      not posterior intervals (expected for mean-field in high dimension): ``"warn"``.
    - **Restarts**: the best restart's aligned W columns against the others' (largest
      total-variation distance); restarts in different places are different modes, of
      which q describes one: ``"warn"`` above 0.1.
    - **Convergence** of the best restart by its own rule: ``"warn"`` if not.

    Returns
    -------
    checks : list of Check
    modes : dict
        One mode, with the restarts (for :attr:`Diagnosis.modes`).
    """
    vi = json.loads(attrs.get("vi", "{}"))
    checks = [not_applicable(name, label, _NOT_MCMC) for name, label in _MCMC_ONLY]
    k_rule = Threshold("<=", THRESHOLDS["pareto_k"])
    psis = vi.get("psis")
    label = "PSIS k-hat of q against the exact posterior"
    if psis is None:
        checks.append(not_applicable("vi_khat", label, "not computed (psis_draws=0)"))
    else:
        k = float(psis["khat"])
        ok = k_rule.holds(k)
        checks.append(
            Check(
                "vi_khat", label, k, k_rule, ok, "warn",
                f"k-hat {k:.2f} from {psis['n_draws']} draws: importance sampling from q "
                "is reliable, q is close to the posterior" if ok else
                f"k-hat {k:.2f} from {psis['n_draws']} draws: q is far from the posterior in "
                "some directions and its intervals are NOT posterior intervals (mean-field "
                "leaves out the coupling of W and H; expected in high dimension); use NUTS "
                "for calibrated intervals",
            )
        )  # fmt: skip
    restarts = vi.get("restarts", [])
    tv = float(vi.get("restart_max_tv_distance_w", 0.0))
    tv_rule = Threshold("<=", THRESHOLDS["vi_restart_tv"])
    checks.append(
        Check(
            "modes", "restarts ending in other modes (largest TV distance of W columns)",
            tv, tv_rule, tv_rule.holds(tv), "warn",
            f"all {len(restarts)} restarts agree where they were compared "
            f"({vi.get('restart_rule', 'at the end')})" if tv_rule.holds(tv) else
            f"the {len(restarts)} restarts disagree where they were compared (ELBO spread "
            f"{vi.get('restart_elbo_spread', float('nan')):.1f}, W columns up to {tv:.2f} apart "
            "in total variation; the screened restarts stop early, so part of the gap may "
            "close with more iterations): the posterior may have several modes and q "
            "describes the best one found",
        )
    )  # fmt: skip
    conv = bool(vi.get("converged", True))
    rule = vi.get("convergence_rule", "its rule")
    checks.append(
        Check(
            "vi_converged", f"VI converged by its rule ({rule}); value: iterations",
            float(vi.get("n_iter", np.nan)), None, conv, "warn",
            "converged" if conv else "did not converge: raise max_iter (sample_vi)",
        )
    )  # fmt: skip
    return checks, {"n_modes": 1, "labels": [0], "main_chains": [0], "restarts": restarts}


def loadings_checks(
    entries: pd.DataFrame | None, n_chains: int, r_hat_max: float, ess_min_per_chain: float
) -> list[Check]:
    """Return the checks of a :func:`poisson_nmf.fit_loadings` tree (W given).

    R-hat and bulk and tail ESS of every loading; the NUTS-only checks, the modes of W
    and the predictive checks do not apply. ``entries`` None: a point estimate (MAP
    given W), on which no sampling check applies.
    """
    if entries is None:
        checks = [
            not_applicable("point_estimate", "sampling checks",
                           "a point estimate (MAP given W): no draws, sampling checks do not "
                           "apply")
        ]  # fmt: skip
    else:
        na = "not applicable to the sampler of loadings given W (not NUTS: its own steps)"
        checks = convergence_checks(entries, n_chains, r_hat_max, ess_min_per_chain,
                                    what="loadings")  # fmt: skip
        checks += [
            not_applicable(n, n.replace("_", " "), na)
            for n in ("divergences", "tree_depth", "ebfmi")
        ]
    return checks + [
        not_applicable("modes", "posterior modes",
                       "W is given: with prior shapes >= 1 each column's posterior is "
                       "log-concave in H (one mode); no mode check is made"),
        not_applicable("ppc_coverage", "posterior predictive checks",
                       "not computed for loadings given W"),
    ]  # fmt: skip
