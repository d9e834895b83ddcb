r"""Diagnostics of a posterior fit: can the draws be trusted, does the model fit.

(The module is ``diagnostics``, not ``diagnose``: a submodule of that name would replace
the function ``poisson_nmf.diagnose`` on the package once imported.)

:func:`diagnose` runs every check on a :func:`poisson_nmf.sample_posterior` DataTree and
returns a :class:`Diagnosis` with a verdict and the reasons for it. Every estimator is
ArviZ's (``arviz_stats``): ``summary`` (rank-normalised split R-hat, bulk and tail ESS,
MCSE), ``bfmi``, ``eti`` and ``loo`` (PSIS-LOO); the posterior predictive p-value is a
mean of indicators over the draws.

Checks, thresholds and what a failure means
-------------------------------------------
Sampling (a failure makes the verdict ``"fail"``: the draws do not represent the
posterior, so no summary of them should be used):

- **R-hat** (rank-normalised, split, the larger of bulk and folded; Vehtari et al. 2021)
  of every entry of W and H at most 1.01.
- **ESS** bulk and tail of every entry at least 100 per chain (Vehtari et al. 2021).
- **Divergences**: none (Betancourt 2017).
- **E-BFMI** of every chain at least 0.3 (Betancourt 2016).
- **Modes**: all chains in one posterior mode (:func:`poisson_nmf.detect_modes`); NMF
  has several local modes, and chains in different ones make every pooled summary
  meaningless even where R-hat happens to be small.

Model fit (a failure makes the verdict ``"warn"``: the draws may be used, with the
caveat stated). Posterior predictive p-values are not uniform under the true model: they
concentrate near 0.5 (Hjort, Dahl & Steinbakk 2006), so a two-sided 5 % rule misfires
in the tail that the concentration does not protect. Each check is therefore one-sided,
towards over-dispersion, the departure that matters for counts, and made to fire on at
most about 5 % of data sets drawn from the model (``benchmarks/false_alarms.py``):

- **Predictive coverage**: the fraction of observed counts inside their central
  ``ppc_prob`` (0.9) posterior predictive interval is at least ``ppc_prob - 0.05``,
  or the shortfall is within binomial noise (one-sided binomial p >= 0.01 for that
  many entries). Discrete predictive intervals cover at least their nominal mass, so
  falling short means the counts vary more than Poisson(WH) allows.
- **Discrepancy**: Pearson's :math:`X^2(y, θ) = \sum (y - λ)^2 / λ`, λ = WH, realised
  against replicated, with the posterior predictive p-value
  :math:`p = \Pr(X^2(y^{rep}, θ) \ge X^2(y, θ))` (Gelman, Meng & Stern 1996) at least
  0.025; a small p says the data are over-dispersed relative to the model. A p near 1
  (under-dispersion) is reported, not warned about: under the true model it happens
  often (in the issue's case, two seeds of four).

Information and efficiency notices (``"info"``: reported, never change the verdict):

- **MCSE** of every posterior mean at most 0.1 posterior sd, and **tree depth** (no
  transition stopped at the sampler's maximum depth): the cost of the run, not a bias.
- **PSIS-LOO Pareto k** of every observed entry at most 0.7 (Vehtari et al. 2024) says
  whether ``elpd_loo`` is reliable, not whether the model fits; it is reported in the
  LOO section with ``p_loo`` against the number of parameters (F + N) K.

Undefined values are classified, never left to a comparison that NaN happens to fail
(:mod:`poisson_nmf.convergence`): entries of W and H constant by construction are left
out of R-hat, ESS and MCSE; entries whose rate is 0 in every draw contribute exactly 0
to the discrepancy (their observed and replicated counts are both 0); log-likelihood
entries constant over the draws are left out of the Pareto k count. A value undefined
otherwise (a chain's E-BFMI of a constant or non-finite energy, a non-finite
discrepancy) is reported as undefined and fails its check.

The predictive checks and LOO use the thinned pointwise groups ``posterior_predictive``
and ``log_likelihood`` (``pointwise_draws`` in :func:`sample_posterior`); without them
those checks are skipped (``"info"``), as is LOO with fewer than 25 pointwise draws
(PSIS fits a generalised Pareto to at least 5 tail weights). R-hat needs at least two
chains: with one, the R-hat check fails.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import binom

from .convergence import entry_table, summarize_convergence
from .memory import CHUNK_BYTES
from .sampling.stopping import budget_advice

__all__ = ["THRESHOLDS", "Check", "Diagnosis", "diagnose", "entry_label"]

Severity = Literal["fail", "warn", "info"]
Verdict = Literal["ok", "warn", "fail"]

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
}
_VARS = ("W", "H")
_LOO_SEED = 315  # fixed: the LOO subsample, and so the report, is reproducible
# ArviZ's PSIS fits the largest min(S / 5, 3 sqrt(S / r_eff)) weights and needs 5 of them
_PSIS_MIN_DRAWS = 25
# one-sided binomial p below which a coverage shortfall is more than chance
_COVERAGE_ALPHA = 0.01


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
    threshold : str
        The rule it is held to, e.g. ``"<= 1.01"``.
    passed : bool
    severity : {"fail", "warn", "info"}
        What a failure means for the verdict (``"info"``: reported only).
    detail : str
        One sentence: what was found and, on failure, what to do.
    """

    name: str
    label: str
    value: float
    threshold: str
    passed: bool
    severity: Severity
    detail: str


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
        """JSON-ready summary (no per-entry arrays beyond the ``n_worst`` entries)."""
        worst = self.worst_entries(n_worst)
        return _json_safe(
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
            if c.severity == "info":
                lines.append(f"[info] {c.label}: {c.detail}")
                continue
            mark = "ok  " if c.passed else {"fail": "FAIL", "warn": "warn"}[c.severity]
            lines.append(f"[{mark}] {c.label}: {_fmt(c.value)} (needs {c.threshold})")
        return "\n".join(lines)


def entry_label(entry: Any) -> str:
    """Name one entry (a row of :attr:`Diagnosis.entries`): ``W[row r, k c]``, ``H[k c, col n]``."""
    if entry["variable"] == "W":
        return f"W[row {entry['row']}, k {entry['component']}]"
    return f"H[k {entry['component']}, col {entry['column']}]"


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if float(x).is_integer() and abs(x) < 1e9:
        return f"{int(x)}"
    return f"{x:.4g}"


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ---------------------------------------------------------------------------------------
# the pieces


def _stat(ss: xr.Dataset, *names: str) -> xr.DataArray | None:
    for n in names:
        if n in ss:
            return ss[n]
    return None


def _observed_at(idata: xr.DataTree, like: xr.DataArray) -> xr.DataArray:
    """Observed counts laid out like a pointwise group (row, column) or (entry)."""
    V = idata["observed_data"].to_dataset()["V"]
    if "entry" in like.dims:
        return V.sel(row=like["row"], column=like["column"])
    return V


def _rates(post: xr.Dataset, c: int, draws: np.ndarray, obs_dims: tuple[str, ...],
           like: xr.DataArray) -> np.ndarray:  # fmt: skip
    """λ = WH for chain c at the given draws, flattened over observed entries (D, n_obs)."""
    W = post["W"].isel(chain=c).sel(draw=draws).transpose("draw", "row", "component").values
    H = post["H"].isel(chain=c).sel(draw=draws).transpose("draw", "component", "column").values
    if obs_dims == ("entry",):
        ri = pd.Index(post["row"].values).get_indexer(like["row"].values)
        ci = pd.Index(post["column"].values).get_indexer(like["column"].values)
        # WH at the listed entries only (a subsample of a large V: never D x F x N)
        lam = np.zeros((W.shape[0], ri.size))
        for k in range(W.shape[-1]):
            lam += W[:, ri, k] * H[:, k, ci]
        return lam
    lam = np.matmul(W, H)  # (D, F, N)
    return lam.reshape(lam.shape[0], -1)


def _ppc(idata: xr.DataTree, prob: float) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    import arviz_stats as azs

    pp = idata["posterior_predictive"]["V"]
    obs_dims = tuple(str(d) for d in pp.dims if d not in ("chain", "draw"))
    pp = pp.transpose("chain", "draw", *obs_dims)
    y = _observed_at(idata, pp).transpose(*obs_dims)
    yv = y.values.astype(np.float64)
    # intervals in chunks along the first entry dim, each within CHUNK_BYTES (ArviZ's
    # quantiles sort a float64 copy): never a float64 copy of the whole group
    S = pp.sizes["chain"] * pp.sizes["draw"]
    per = int(np.prod([pp.sizes[d] for d in obs_dims[1:]], dtype=np.int64))
    step = max(1, CHUNK_BYTES // max(1, 3 * 8 * S * per))
    covered = np.empty(yv.shape, dtype=bool)
    # large sparse fits: every non-zero and a weighted subsample of the zeros (entry dim)
    w = np.asarray(pp["weight"].values, dtype=np.float64) if "weight" in pp.coords else None
    for a in range(0, pp.sizes[obs_dims[0]], step):
        bounds = azs.eti(pp.isel({obs_dims[0]: slice(a, a + step)}), prob=prob)
        lo = bounds.sel(ci_bound="lower").transpose(*obs_dims).values
        hi = bounds.sel(ci_bound="upper").transpose(*obs_dims).values
        covered[a : a + step] = (yv[a : a + step] >= lo) & (yv[a : a + step] <= hi)
    post = idata["posterior"].to_dataset()
    draws = pp["draw"].values
    y_flat = yv.ravel()
    real, rep = [], []
    # rates of a few draws at a time (a dense F x N each), within CHUNK_BYTES
    F, N = post.sizes["row"], post.sizes["column"]
    chunk = max(1, min(32, CHUNK_BYTES // max(1, 4 * 8 * F * N)))
    for c in range(pp.sizes["chain"]):
        for s in range(0, draws.size, chunk):
            d = draws[s : s + chunk]
            lam = _rates(post, c, d, obs_dims, pp)
            yrep = pp.isel(chain=c).sel(draw=d).values.reshape(len(d), -1).astype(np.float64)
            # a rate of exactly 0 has y = y_rep = 0 (Poisson(0) is 0): its term is 0
            pos = lam > 0
            safe = np.where(pos, lam, 1.0)
            tr = np.where(pos, (y_flat - lam) ** 2 / safe, 0.0)
            tp = np.where(pos, (yrep - lam) ** 2 / safe, 0.0)
            real.append(np.sum(tr if w is None else tr * w, axis=1))
            rep.append(np.sum(tp if w is None else tp * w, axis=1))
    t_real, t_rep = np.concatenate(real), np.concatenate(rep)
    fin = np.isfinite(t_real) & np.isfinite(t_rep)
    ppp = float(np.mean(t_rep >= t_real)) if fin.all() else float("nan")
    cov_share = float(covered.mean()) if w is None else float(np.sum(w * covered.ravel()) / w.sum())
    n_cov = int(covered.size) if w is None else int(round(w.sum()))
    # one-sided: P(X <= covered count) for X ~ Binomial(n, prob), n the entries checked
    # (with a zero subsample, those entries, not the more numerous ones they stand for)
    n_chk = int(covered.size)
    cov_p = float(binom.cdf(int(round(cov_share * n_chk)), n_chk, prob)) if n_chk else 1.0
    info = {
        "prob": prob,
        "coverage": cov_share,
        "ppp": ppp,
        "coverage_p": cov_p,
        "n_undefined_draws": int(np.sum(~fin)),
        "discrepancy": "Pearson chi-square sum (y - WH)^2 / WH",
        "realised_mean": float(t_real.mean()),
        "replicated_mean": float(t_rep.mean()),
        "n_draws": int(t_real.size),
        "n_entries": n_cov,
        "n_pointwise_entries": int(covered.size),
        "weighted": w is not None,
    }
    disc = pd.DataFrame({"realised": t_real, "replicated": t_rep})
    cov = pd.DataFrame({"observed": y_flat, "covered": covered.ravel()})
    return info, disc, cov


def _constant_loglik(idata: xr.DataTree) -> np.ndarray:
    """Whether each pointwise log-likelihood entry is one value over all draws (flat)."""
    ll = idata["log_likelihood"].to_dataset()["V"]
    hi = ll.max(("chain", "draw"), skipna=False).values.ravel()
    lo = ll.min(("chain", "draw"), skipna=False).values.ravel()
    return np.asarray((hi - lo) <= 1e-6 * np.maximum(np.abs(hi), 1.0))


def _weighted_loo(idata: xr.DataTree, elpd: Any) -> dict:
    """elpd_loo, its se and p_loo over all observed entries from weighted pointwise ones.

    Large sparse fits keep every non-zero (weight 1) and a random subsample of the zeros
    (weight n_zero / m) (:func:`poisson_nmf.sampling.pointwise.pointwise_entries`). With S the
    entries that have an elpd_i (all of them, or ArviZ's simple random subsample of s of
    the n entries), elpd = (n / s) sum_S w_i elpd_i (Horvitz-Thompson); its se combines
    the usual LOO se over the N_tot represented entries, sqrt(N_tot var_w(elpd_i)),
    with the subsampling se n sqrt((1 - s / n) var(w_i elpd_i) / s); lpd = sum w_i lpd_i
    is exact over the entries, and p_loo = lpd - elpd.
    """
    from scipy.special import logsumexp

    ll = idata["log_likelihood"].to_dataset()["V"]
    w = np.asarray(ll["weight"].values, dtype=np.float64)
    n = w.size
    ei = np.asarray(elpd.elpd_i.values, dtype=np.float64).ravel()
    fin = np.isfinite(ei)
    s = int(fin.sum())
    wf, ef = w[fin], ei[fin]
    total = n / s * float(np.sum(wf * ef))
    n_tot = float(w.sum())
    mean_w = float(np.sum(wf * ef) / np.sum(wf))
    var_w = float(np.sum(wf * (ef - mean_w) ** 2) / np.sum(wf))
    se_sub = n * math.sqrt(max(0.0, 1 - s / n) * np.var(wf * ef, ddof=1) / s) if s > 1 else 0.0
    se = math.sqrt(n_tot * var_w + se_sub**2)
    S = ll.sizes["chain"] * ll.sizes["draw"]
    lpd_i = np.empty(n)
    step = max(1, CHUNK_BYTES // (8 * S))
    for a in range(0, n, step):  # bounded chunks over entries
        part = np.asarray(ll.isel(entry=slice(a, a + step)).values, dtype=np.float64)
        lpd_i[a : a + step] = logsumexp(part.reshape(S, -1), axis=0) - math.log(S)
    return {
        "elpd": total,
        "se": se,
        "p": float(np.sum(w * lpd_i)) - total,
        "n_data_points": int(round(n_tot)),
        "weighted": True,
        "n_pointwise_entries": int(n),
    }


def _loo(idata: xr.DataTree, max_points: int) -> Any:
    import arviz_stats as azs

    ll = idata["log_likelihood"].to_dataset()
    post = idata["posterior"].to_dataset()[list(_VARS)].sel(draw=ll["draw"].values)
    tree = xr.DataTree.from_dict({"posterior": post, "log_likelihood": ll})
    n_obs = int(np.prod([n for d, n in ll["V"].sizes.items() if d not in ("chain", "draw")]))
    with warnings.catch_warnings():
        # ArviZ warns about large Pareto k; here they are a reported check
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        if n_obs <= max_points:
            return azs.loo(tree, pointwise=True, var_name="V")
        # ArviZ's PSIS loops over observations in Python: past max_points,
        # the difference estimator of Magnusson et al. (2019) on a fixed random subsample
        return azs.loo_subsample(
            tree, observations=max_points, pointwise=True, var_name="V", seed=_LOO_SEED
        )


def convergence_checks(
    entries: pd.DataFrame,
    n_chains: int,
    r_hat_max: float,
    ess_min_per_chain: float,
    *,
    what: str = "entries",
    advice: str = "",
) -> list[Check]:
    """Check R-hat and bulk and tail ESS of a per-entry table (see :mod:`.convergence`).

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
    undef_note = (
        f"; {conv.n_undefined} {what} vary but have no finite R-hat or ESS (non-finite draws?)"
        if conv.n_undefined
        else ""
    ) + advice
    checks = [
        Check(
            "r_hat", f"R-hat (rank-normalised), largest over {what}", conv.worst_r_hat,
            f"<= {r_hat_max}", conv.r_hat_ok, "fail",
            "R-hat needs at least 2 chains" if C < 2 else
            f"{conv.n_r_hat_above} of {n_live} {what} have R-hat > {r_hat_max}{const_note}; "
            "run longer or check the modes" + undef_note
            if not conv.r_hat_ok else
            f"all {n_live} {what} have R-hat <= {r_hat_max}{const_note}",
        )
    ]  # fmt: skip
    for kind in ("bulk", "tail"):
        low = getattr(conv, f"n_ess_{kind}_below")
        ok = low == 0 and conv.n_undefined == 0
        checks.append(
            Check(
                f"ess_{kind}", f"ESS {kind}, smallest over {what}",
                getattr(conv, f"min_ess_{kind}"),
                f">= {ess_min:g} ({ess_min_per_chain:g} per chain)", ok, "fail",
                f"{low} of {n_live} {what} have {kind} ESS < {ess_min:g}{const_note}; "
                "draw more" + undef_note if not ok
                else f"all {n_live} {what} have {kind} ESS >= {ess_min:g}{const_note}",
            )
        )  # fmt: skip
    return checks


def _sampling_checks(
    idata: xr.DataTree,
    entries: pd.DataFrame,
    r_hat_max: float,
    ess_min_per_chain: float,
    ebfmi_min: float,
) -> tuple[list[Check], list[float], dict]:
    """R-hat, ESS, MCSE, divergences, tree depth, E-BFMI and modes of MCMC draws."""
    import arviz_stats as azs

    from .sampling.modes import detect_modes

    C, D = idata["posterior"].sizes["chain"], idata["posterior"].sizes["draw"]
    checks: list[Check] = []
    checks += convergence_checks(
        entries, C, r_hat_max, ess_min_per_chain, advice=budget_advice(idata.attrs)
    )
    live = ~entries["constant"].to_numpy(dtype=bool)
    ratio = (entries["mcse_mean"] / entries["sd"]).to_numpy(dtype=float)[live]
    ratio = ratio[np.isfinite(ratio)]
    mc_bad = int(np.sum(ratio > THRESHOLDS["mcse_over_sd"]))
    checks.append(
        Check(
            "mcse", "MCSE of the mean / posterior sd, largest over entries",
            float(ratio.max()) if ratio.size else float("nan"),
            f"<= {THRESHOLDS['mcse_over_sd']}", mc_bad == 0, "info",
            f"efficiency: {mc_bad} entries have a Monte Carlo error above a tenth of their sd"
            " (more draws make it smaller)" if mc_bad
            else "every posterior mean is known to a tenth of its sd",
        )
    )  # fmt: skip

    ss = idata["sample_stats"].to_dataset() if "sample_stats" in idata.children else xr.Dataset()
    div = _stat(ss, "diverging")
    n_div = int(div.sum()) if div is not None else 0
    checks.append(
        Check(
            "divergences", "divergent transitions", float(n_div) if div is not None else np.nan,
            "== 0", div is not None and n_div == 0, "fail",
            "no sampler statistic 'diverging'" if div is None else
            f"{n_div} of {C * D} transitions diverged; raise target_accept "
            "(nuts_kwargs) or check the priors" if n_div else "no divergent transitions",
        )
    )  # fmt: skip
    depth = _stat(ss, "maxdepth_reached", "reached_max_treedepth")
    n_depth = int(depth.sum()) if depth is not None else 0
    checks.append(
        Check(
            "tree_depth", "transitions at the maximum tree depth",
            float(n_depth) if depth is not None else np.nan, "== 0", n_depth == 0, "info",
            "no sampler statistic for the tree depth" if depth is None else
            f"efficiency: {n_depth} of {C * D} transitions hit the maximum tree depth (a "
            "cost, not a bias)" if n_depth else "no transition hit the maximum tree depth",
        )
    )  # fmt: skip
    ebfmi: list[float] = []
    if "energy" in ss:
        with np.errstate(divide="ignore", invalid="ignore"):  # classified below
            ebfmi = [float(v) for v in np.atleast_1d(azs.bfmi(ss["energy"]).values)]
    undef_chains = [c for c, v in enumerate(ebfmi) if not math.isfinite(v)]
    low_chains = [c for c, v in enumerate(ebfmi) if math.isfinite(v) and v < ebfmi_min]
    finite = [v for v in ebfmi if math.isfinite(v)]
    checks.append(
        Check(
            "ebfmi", "E-BFMI, smallest over chains", min(finite) if finite else np.nan,
            f">= {ebfmi_min}", bool(ebfmi) and not low_chains and not undef_chains, "fail",
            "no sampler statistic 'energy'" if not ebfmi else
            "; ".join(
                ([f"chains {low_chains} have E-BFMI < {ebfmi_min}: momentum resampling "
                  "explores the energy poorly"] if low_chains else [])
                + ([f"chains {undef_chains} have an undefined E-BFMI (their energy is "
                    "constant or not finite)"] if undef_chains else [])
            ) if low_chains or undef_chains else "E-BFMI fine in every chain",
        )
    )  # fmt: skip
    modes = asdict(detect_modes(idata))
    checks.append(
        Check(
            "modes", "posterior modes among the chains", float(modes["n_modes"]), "== 1",
            modes["n_modes"] == 1, "fail",
            f"chains sit in {modes['n_modes']} different modes (labels {modes['labels']}); "
            "keep one (select_chains / keep='main') or sample longer"
            if modes["n_modes"] > 1 else f"all {C} chains in one mode",
        )
    )  # fmt: skip

    return checks, ebfmi, modes


_NOT_MCMC = "not applicable: independent draws from a variational approximation"


def _approximation_checks(idata: xr.DataTree) -> tuple[list[Check], list[float], dict]:
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
    """
    vi = json.loads(idata.attrs.get("vi", "{}"))
    checks = [
        Check(name, label, np.nan, "-", True, "info", _NOT_MCMC)
        for name, label in (
            ("r_hat", "R-hat"), ("ess_bulk", "ESS bulk"), ("ess_tail", "ESS tail"),
            ("mcse", "MCSE"), ("divergences", "divergent transitions"),
            ("tree_depth", "tree depth"), ("ebfmi", "E-BFMI"),
        )
    ]  # fmt: skip
    kmax = THRESHOLDS["pareto_k"]
    psis = vi.get("psis")
    if psis is None:
        checks.append(
            Check("vi_khat", "PSIS k-hat of q against the exact posterior", np.nan, "-",
                  True, "info", "not computed (psis_draws=0)")
        )  # fmt: skip
    else:
        k = float(psis["khat"])
        checks.append(
            Check(
                "vi_khat", "PSIS k-hat of q against the exact posterior", k, f"<= {kmax}",
                k <= kmax, "warn",
                f"k-hat {k:.2f} from {psis['n_draws']} draws: q is far from the posterior in "
                "some directions and its intervals are NOT posterior intervals (mean-field "
                "leaves out the coupling of W and H; expected in high dimension); use NUTS "
                "for calibrated intervals" if k > kmax else
                f"k-hat {k:.2f} from {psis['n_draws']} draws: importance sampling from q "
                "is reliable, q is close to the posterior",
            )
        )  # fmt: skip
    restarts = vi.get("restarts", [])
    tv = float(vi.get("restart_max_tv_distance_w", 0.0))
    n_r = len(restarts)
    checks.append(
        Check(
            "modes", "restarts ending in other modes (largest TV distance of W columns)",
            tv, "<= 0.1", tv <= 0.1, "warn",
            f"the {n_r} restarts ended in different places (ELBO spread "
            f"{vi.get('restart_elbo_spread', float('nan')):.1f}, W columns up to {tv:.2f} apart "
            "in total variation): the posterior has several modes and q describes the best "
            "one found" if tv > 0.1 else f"all {n_r} restarts ended in the same place",
        )
    )  # fmt: skip
    conv = bool(vi.get("converged", True))
    checks.append(
        Check(
            "vi_converged", "VI converged by its rule", float(vi.get("n_iter", np.nan)),
            vi.get("convergence_rule", "-"), conv, "warn",
            "converged" if conv else "did not converge: raise max_iter (sample_vi)",
        )
    )  # fmt: skip
    modes = {"n_modes": 1, "labels": [0], "main_chains": [0], "restarts": restarts}
    return checks, [], modes


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
        ``observed_data``.
    r_hat_max, ess_min_per_chain, ebfmi_min, pareto_k_max : float
        Thresholds (defaults 1.01, 100, 0.3, 0.7; see the module docstring).
    ppc_prob : float
        Mass of the central posterior predictive intervals for the coverage check.
    loo_max_points : int
        With more observed entries than this, PSIS-LOO is estimated from a fixed random
        subsample of this many entries (``arviz_stats.loo_subsample``) and Pareto k is
        known for those entries only; ArviZ's PSIS loops over the entries in Python.

    Returns
    -------
    Diagnosis
    """
    if not isinstance(idata, xr.DataTree):
        raise TypeError(
            f"idata must be an xarray.DataTree from sample_posterior, fit_loadings or "
            f"load_fit, got {type(idata).__name__}"
        )
    post_vars: Any = idata["posterior"] if "posterior" in idata.children else {}
    if "W" not in post_vars and "H" in post_vars:
        # loadings of new samples given W (fit_loadings): their own, fewer checks
        from .loadings import diagnose_loadings

        return diagnose_loadings(idata, r_hat_max=r_hat_max, ess_min_per_chain=ess_min_per_chain)
    if "posterior" not in idata.children or any(v not in idata["posterior"] for v in _VARS):
        raise ValueError("idata must have a posterior group with W and H (from sample_posterior)")
    if not 0 < ppc_prob < 1:
        raise ValueError(f"ppc_prob must be in (0, 1), got {ppc_prob}")
    post = idata["posterior"].to_dataset()
    C, D = post.sizes["chain"], post.sizes["draw"]

    entries = entry_table(post, diagnostics=not idata.attrs.get("approximate", False))
    if idata.attrs.get("approximate", False):
        checks, ebfmi, modes = _approximation_checks(idata)
    else:
        checks, ebfmi, modes = _sampling_checks(
            idata, entries, r_hat_max, ess_min_per_chain, ebfmi_min
        )

    ppc = disc = cov = None
    if "posterior_predictive" in idata.children and "observed_data" in idata.children:
        ppc, disc, cov = _ppc(idata, ppc_prob)
        need = ppc_prob - THRESHOLDS["coverage_shortfall"]
        short = ppc["coverage"] < need and ppc["coverage_p"] < _COVERAGE_ALPHA
        checks.append(
            Check(
                "ppc_coverage", f"observed counts inside their {ppc_prob:.0%} predictive interval",
                ppc["coverage"], f">= {need:.2f} (or binomial p >= {_COVERAGE_ALPHA})",
                not short, "warn",
                f"{ppc['coverage']:.1%} of the {ppc['n_entries']} counts fall inside (binomial "
                f"p = {ppc['coverage_p']:.2g}); the data vary more than Poisson(WH) allows"
                if short else f"{ppc['coverage']:.1%} of the {ppc['n_entries']} counts fall "
                "inside",
            )
        )  # fmt: skip
        lo_p = THRESHOLDS["ppp_low"]
        p = ppc["ppp"]
        defined = math.isfinite(p)
        checks.append(
            Check(
                "ppc_discrepancy",
                "posterior predictive p-value of the chi-square discrepancy (over-dispersion)",
                p, f">= {lo_p}", defined and p >= lo_p, "warn",
                f"undefined: {ppc['n_undefined_draws']} draws give a non-finite discrepancy "
                "(non-finite rates)" if not defined else
                f"p = {p:.3f}: the data are over-dispersed relative to Poisson(WH)"
                if p < lo_p else
                f"p = {p:.3f}: no sign of over-dispersion"
                + (" (a p near 1 is common under the model itself: not a warning)"
                   if p > THRESHOLDS["ppp_high"] else ""),
            )
        )  # fmt: skip
    else:
        checks.append(
            Check("ppc_coverage", "posterior predictive checks", np.nan, "-", True, "info",
                  "no posterior_predictive group (pointwise_draws=0): not checked")
        )  # fmt: skip

    loo_info = k = elpd = None
    ll = idata["log_likelihood"] if "log_likelihood" in idata.children else None
    n_ll = ll.sizes["chain"] * ll.sizes["draw"] if ll is not None else 0
    if ll is not None and n_ll < _PSIS_MIN_DRAWS:
        checks.append(
            Check("pareto_k", "PSIS-LOO", np.nan, "-", True, "info",
                  f"not computed: {n_ll} pointwise draws, PSIS needs at least {_PSIS_MIN_DRAWS}")
        )  # fmt: skip
    elif ll is not None:
        elpd = _loo(idata, loo_max_points)
        k = elpd.pareto_k
        kv = np.asarray(k.values, dtype=float).ravel()
        const_ll = _constant_loglik(idata)
        n_const = int(np.sum(const_ll & np.isfinite(kv)))
        # constant log-likelihood: the LOO weights are exact, k is not an estimate;
        # a subsample leaves the other entries NaN, as does an undefined fit of k
        # _loo subsamples past loo_max_points: the entries outside the subsample have no k
        # by design, which is not undefined
        subsampled = kv.size > loo_max_points
        n_undef = 0 if subsampled else int(np.sum(~np.isfinite(kv) & ~const_ll))
        kv = kv[np.isfinite(kv) & ~const_ll]
        edges = [-np.inf, 0.5, 0.7, 1.0, np.inf]
        counts = np.histogram(kv, bins=edges)[0]
        loo_info = {
            "elpd": float(elpd.elpd),
            "se": float(elpd.se),
            "p": float(elpd.p),
            "n_samples": int(elpd.n_samples),
            "n_data_points": int(elpd.n_data_points),
            "good_k": float(elpd.good_k),
            "subsampled": bool(subsampled),
            "n_k": int(kv.size),
            "k_counts": {
                "(-inf, 0.5]": int(counts[0]),
                "(0.5, 0.7]": int(counts[1]),
                "(0.7, 1]": int(counts[2]),
                "(1, inf)": int(counts[3]),
            },
        }
        if "weight" in idata["log_likelihood"].coords:
            loo_info.update(_weighted_loo(idata, elpd))
        n_high = int(np.sum(kv > pareto_k_max))
        sub = "subsampled " if loo_info["subsampled"] else ""
        n_par = (post.sizes["row"] + post.sizes["column"]) * post.sizes["component"]
        loo_info.update(n_parameters=int(n_par), n_constant=n_const)
        notes = (
            f"; {n_const} entries with a constant log-likelihood left out" if n_const else ""
        ) + (f"; {n_undef} entries have no k (undefined)" if n_undef else "")
        p_loo = float(elpd.p)
        p_note = f"; p_loo = {p_loo:.1f} against (F + N) K = {n_par} parameters" + (
            " (more: misspecification or many influential entries)" if p_loo > n_par else ""
        )
        checks.append(
            Check(
                "pareto_k", "PSIS-LOO Pareto k, largest over observed entries",
                float(kv.max()) if kv.size else np.nan, f"<= {pareto_k_max}",
                n_high == 0 and n_undef == 0, "info",
                (f"{n_high} of {kv.size} {sub}entries ({n_high / max(kv.size, 1):.1%}) have "
                 f"k > {pareto_k_max}: elpd_loo is unreliable there (influential entries; "
                 "says nothing about the fit of the model)" if n_high
                 else f"all {kv.size} {sub}entries have k <= {pareto_k_max}")
                + notes + p_note,
            )
        )  # fmt: skip
    else:
        checks.append(
            Check("pareto_k", "PSIS-LOO", np.nan, "-", True, "info",
                  "no log_likelihood group (pointwise_draws=0, or a variational fit of "
                  "a large V): not computed")
        )  # fmt: skip

    failed = [c for c in checks if not c.passed and c.severity != "info"]
    order = {"fail": 0, "warn": 1}
    failed.sort(key=lambda c: order[c.severity])
    verdict: Verdict = (
        "fail" if any(c.severity == "fail" for c in failed) else ("warn" if failed else "ok")
    )
    return Diagnosis(
        verdict=verdict,
        reasons=tuple(c.detail for c in failed),
        checks=tuple(checks),
        entries=entries,
        n_chains=int(C),
        n_draws=int(D),
        ebfmi=ebfmi,
        modes=json.loads(json.dumps(modes)),
        loo=loo_info,
        ppc=ppc,
        pareto_k=k,
        elpd=elpd,
        discrepancy=disc,
        covered=cov,
    )
