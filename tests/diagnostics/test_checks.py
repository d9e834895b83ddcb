"""Each check on its own, and diagnose on hand-built trees (NumPy draws, no sampling)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import poisson_nmf as pnmf
from poisson_nmf.diagnostics import Check, Threshold, convergence_checks
from poisson_nmf.diagnostics import checks as ck
from poisson_nmf.diagnostics.ppc import interval_percent
from tests.diagnostics.trees import hand_tree, with_values

NAN = float("nan")


# --- the record ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, x, expected",
    [("<=", 1.01, True), ("<=", 1.02, False), (">=", 0.3, True), (">=", 0.29, False),
     ("<", 1.0, False), (">", 1.0, False), ("==", 0.0, True), ("==", 1.0, False)],
)  # fmt: skip
def test_threshold_compares_numbers(op, x, expected):
    value = {"<=": 1.01, ">=": 0.3, "<": 1.0, ">": 1.0, "==": 0.0}[op]
    assert Threshold(op, value).holds(x) is expected


def test_threshold_never_holds_for_an_undefined_value():
    for op in ("<=", ">=", "<", ">", "=="):
        t = Threshold(op, 1.0)
        assert not t.holds(NAN) and not t.holds(math.inf) and not t.holds(-math.inf)


def test_threshold_text_and_bad_operator():
    assert str(Threshold("<=", 1.01)) == "<= 1.01"
    t = Threshold(">=", 400.0, "100 per chain")
    assert t.rule == ">= 400" and str(t) == ">= 400 (100 per chain)"
    with pytest.raises(ValueError, match="op must be one of"):
        Threshold("=<", 1.0)  # type: ignore[arg-type]


def test_status_of_a_check():
    rule = Threshold("<=", 1.0)
    assert Check("a", "a", 0.5, rule, True, "fail", "").status == "pass"
    assert Check("a", "a", 2.0, rule, False, "fail", "").status == "FAIL"
    assert Check("a", "a", 2.0, rule, False, "warn", "").status == "WARN"
    assert Check("a", "a", 2.0, rule, False, "info", "").status == "note"
    assert ck.not_applicable("a", "a", "why").status == "n/a"
    assert ck.not_applicable("a", "a", "why").threshold is None


# --- one function per check ---------------------------------------------------------


def _entries(r_hat, ess_bulk, ess_tail, constant, mcse=None, sd=None) -> pd.DataFrame:
    n = len(r_hat)
    return pd.DataFrame(
        {
            "r_hat": r_hat,
            "ess_bulk": ess_bulk,
            "ess_tail": ess_tail,
            "constant": constant,
            "mcse_mean": mcse if mcse is not None else [0.01] * n,
            "sd": sd if sd is not None else [1.0] * n,
        }
    )


def test_convergence_checks_classify_constant_and_undefined_entries():
    # entry 0 constant by construction (NaN everywhere): left out; entry 2 varies with
    # a NaN R-hat: undefined, which fails R-hat and both ESS checks
    e = _entries([NAN, 1.001, NAN, 1.02], [NAN, 900, 800, 150], [NAN, 700, 900, 900],
                 [True, False, False, False])  # fmt: skip
    r, b, t = convergence_checks(e, 4, 1.01, 100)
    assert (r.name, b.name, t.name) == ("r_hat", "ess_bulk", "ess_tail")
    assert r.threshold == Threshold("<=", 1.01)
    assert b.threshold == t.threshold == Threshold(">=", 400, "100 per chain")
    assert r.value == 1.02 and not r.passed and r.severity == "fail"
    assert "1 of 3 entries have R-hat > 1.01 (1 constant by construction, left out)" in r.detail
    assert "1 entries vary but have no finite R-hat or ESS" in r.detail
    assert b.value == 150 and not b.passed and not t.passed  # t: the undefined entry
    e_ok = _entries([NAN, 1.001], [NAN, 900], [NAN, 700], [True, False])
    assert all(c.passed for c in convergence_checks(e_ok, 4, 1.01, 100))


def test_r_hat_needs_two_chains():
    r = convergence_checks(_entries([NAN], [500], [500], [False]), 1, 1.01, 100)[0]
    assert not r.passed and r.detail == "R-hat needs at least 2 chains"


def test_fewer_than_four_draws_are_named_as_the_cause():
    # R-hat and ESS are NaN under 4 draws per chain: not "non-finite draws?"
    e = _entries([NAN, NAN], [NAN, NAN], [NAN, NAN], [False, False])
    checks = convergence_checks(e, 2, 1.01, 100, n_draws=3)
    for c in checks:
        assert not c.passed
        assert c.detail == "R-hat and ESS need at least 4 draws per chain, the run has 3: draw more"
    assert "non-finite draws?" in convergence_checks(e, 2, 1.01, 100, n_draws=4)[0].detail


def test_mcse_is_information():
    e = _entries([1.0] * 3, [900] * 3, [900] * 3, [False] * 3, mcse=[0.5, 0.01, NAN])
    c = ck.check_mcse(e)
    assert c.severity == "info" and not c.passed and c.value == 0.5
    assert c.threshold == Threshold("<=", 0.1)
    assert c.detail.startswith("efficiency: 1 entries")


def test_divergences_and_tree_depth():
    assert ck.check_divergences(0, 800).passed
    c = ck.check_divergences(3, 800)
    assert not c.passed and c.value == 3 and c.detail.startswith("3 of 800 transitions diverged")
    missing = ck.check_divergences(None, 800)
    assert (
        not missing.passed
        and math.isnan(missing.value)
        and "no sampler statistic" in missing.detail
    )
    d = ck.check_tree_depth(5, 800)
    assert not d.passed and d.severity == "info" and "5 of 800" in d.detail
    assert ck.check_tree_depth(None, 800).passed  # no statistic: nothing to report


def test_ebfmi_names_low_and_undefined_chains():
    c = ck.check_ebfmi([NAN, 0.1, 0.9], 0.3)
    assert not c.passed and c.value == 0.1  # the smallest defined one
    assert "chains [1] have E-BFMI < 0.3" in c.detail
    assert "chains [0] have an undefined E-BFMI" in c.detail
    assert ck.check_ebfmi([0.9, 1.2], 0.3).passed
    none = ck.check_ebfmi([], 0.3)
    assert not none.passed and none.detail == "no sampler statistic 'energy'"


def test_modes():
    assert ck.check_modes(1, [0, 0, 0, 0], 4).detail == "all 4 chains in one mode"
    c = ck.check_modes(2, [0, 0, 1, 1], 4)
    assert not c.passed and c.threshold == Threshold("==", 1) and "2 different modes" in c.detail


def _ppc(**kw):
    return {"prob": 0.9, "coverage": 0.9, "coverage_p": 0.5, "n_entries": 100, "ppp": 0.5,
            "n_undefined_draws": 0, "n_draws": 400} | kw  # fmt: skip


def test_predictive_checks_from_too_few_draws_are_not_computed():
    # 3 draws of Poisson data: coverage 0.5, p = 0 (newcomer's finding 19): no warning
    few = _ppc(coverage=0.5, coverage_p=1e-190, ppp=0.0, n_draws=3)
    for c in (ck.check_ppc_coverage(few), ck.check_ppc_discrepancy(few)):
        assert c.passed and c.severity == "info" and c.status == "n/a"
        assert c.detail.startswith("not computed: 3 predictive draws")
    assert "a central 90% interval needs at least 20" in ck.check_ppc_coverage(few).detail
    assert "p-value needs at least 20" in ck.check_ppc_discrepancy(few).detail
    # 20 draws: one beyond each end of a 90 % interval; a 99 % one needs 200
    assert ck.ppc_min_draws(0.9) == 20 and ck.ppc_min_draws(0.99) == 200
    assert ck.ppc_min_draws(0.5) == ck.PPC_MIN_DRAWS == 20
    at = _ppc(coverage=0.5, coverage_p=1e-190, ppp=0.0, n_draws=20)
    assert not ck.check_ppc_coverage(at).passed and not ck.check_ppc_discrepancy(at).passed
    wide = ck.check_ppc_coverage(_ppc(prob=0.99, coverage=0.99, n_draws=100))
    assert wide.status == "n/a" and "needs at least 200" in wide.detail
    # a 99.5 % interval is not written "100%"
    c = ck.check_ppc_coverage(_ppc(prob=0.995, coverage=0.99, n_draws=100))
    assert "a central 99.5% interval needs at least 400" in c.detail
    assert c.label == "observed counts inside their 99.5% predictive interval"
    assert [interval_percent(p) for p in (0.9, 0.995, 1e-9)] == ["90%", "99.5%", "1e-07%"]


def test_coverage_shortfall_beyond_chance_warns():
    c = ck.check_ppc_coverage(_ppc(coverage=0.8, coverage_p=0.001))
    assert not c.passed and c.severity == "warn"
    assert c.threshold == Threshold(">=", 0.9 - 0.05, "or binomial p >= 0.01")
    assert ck.check_ppc_coverage(_ppc(coverage=0.8, coverage_p=0.2)).passed  # chance


def test_discrepancy_is_one_sided_and_undefined_fails():
    assert not ck.check_ppc_discrepancy(_ppc(ppp=0.01)).passed
    high = ck.check_ppc_discrepancy(_ppc(ppp=0.99))
    assert high.passed and "not a warning" in high.detail
    undef = ck.check_ppc_discrepancy(_ppc(ppp=NAN, n_undefined_draws=2))
    assert not undef.passed and undef.detail.startswith("undefined: 2 draws")


def test_pareto_k_is_information():
    loo = {"subsampled": False, "n_constant": 1, "n_parameters": 20}
    c = ck.check_pareto_k(loo, np.array([0.2, 0.8, 0.3]), 0, 0.7, p_loo=25.0)
    assert c.severity == "info" and not c.passed and c.value == 0.8
    assert "1 of 3 entries (33.3%) have k > 0.7" in c.detail
    assert "1 entries with a constant log-likelihood left out" in c.detail
    assert "(more: misspecification" in c.detail  # p_loo 25 > 20 parameters


def test_approximation_checks_of_a_variational_fit():
    vi = {"psis": {"khat": 0.9, "n_draws": 500}, "restarts": [{}, {}],
          "restart_max_tv_distance_w": 0.02, "converged": False, "n_iter": 300,
          "convergence_rule": "relative ELBO increase < tol"}  # fmt: skip
    checks, modes = ck.approximation_checks({"vi": json.dumps(vi)})
    by = {c.name: c for c in checks}
    assert by["r_hat"].status == "n/a" and by["ebfmi"].threshold is None
    assert not by["vi_khat"].passed and by["vi_khat"].severity == "warn"
    assert by["modes"].passed and by["modes"].threshold == Threshold("<=", 0.1)
    assert not by["vi_converged"].passed and by["vi_converged"].status == "WARN"
    assert modes["n_modes"] == 1
    checks, _ = ck.approximation_checks({"vi": json.dumps({"restarts": []})})
    assert {c.name: c for c in checks}["vi_khat"].detail == "not computed (psis_draws=0)"


# --- diagnose on hand-built trees ---------------------------------------------------


def test_independent_draws_pass_every_sampling_check():
    d = pnmf.diagnose(hand_tree())
    for name in ("r_hat", "ess_bulk", "ess_tail", "divergences", "ebfmi", "modes"):
        assert d.check(name).passed, d.check(name)
    assert d.verdict == "ok" and d.reasons == ()
    assert d.mode_report is not None and d.mode_report.n_modes == d.modes["n_modes"] == 1
    assert d.check("ppc_coverage").status == "n/a" and d.check("pareto_k").status == "n/a"
    # the record survives JSON: thresholds as numbers with an operator
    out = json.loads(json.dumps(d.to_dict()))
    by = {c["name"]: c for c in out["checks"]}
    assert by["r_hat"]["threshold"] == {"op": "<=", "value": 1.01, "note": ""}
    assert by["divergences"]["threshold"] == {"op": "==", "value": 0.0, "note": ""}
    assert type(by["divergences"]["threshold"]["value"]) is float  # one type in the schema
    assert by["pareto_k"]["threshold"] is None


def test_divergences_fail_the_verdict_first():
    t = hand_tree()
    div = np.zeros((4, 200), dtype=bool)
    div[1, 5] = True
    t = with_values(t, "sample_stats", "diverging", div)
    d = pnmf.diagnose(t)
    assert d.verdict == "fail" and d.reasons[0].startswith("1 of 800 transitions diverged")


def test_constant_energy_is_an_undefined_ebfmi():
    t = hand_tree()
    e = t["sample_stats"]["energy"].values.copy()
    e[2] = 3.0
    d = pnmf.diagnose(with_values(t, "sample_stats", "energy", e))
    c = d.check("ebfmi")
    assert not c.passed and "chains [2] have an undefined E-BFMI" in c.detail
    assert math.isnan(d.ebfmi[2]) and d.verdict == "fail"


def test_predictive_checks_on_a_hand_built_tree():
    d = pnmf.diagnose(hand_tree(pointwise=True))
    assert d.ppc is not None and d.ppc["n_draws"] == 800 and d.ppc["n_entries"] == 12
    # replicated data from the model itself: no over-dispersion warning
    assert d.check("ppc_discrepancy").passed and d.check("ppc_coverage").passed


def test_loadings_tree_gets_its_own_checks():
    t = hand_tree()
    tree = xr.DataTree.from_dict({"posterior": t["posterior"].to_dataset()[["H"]]})
    d = pnmf.diagnose(tree)
    names = [c.name for c in d.checks]
    assert names[:3] == ["r_hat", "ess_bulk", "ess_tail"] and d.verdict == "ok"
    assert d.check("divergences").status == "n/a" and len(d.entries) == 2 * 4
    point = xr.DataTree.from_dict({"posterior": t["posterior"].to_dataset()[["H"]].isel(
        chain=[0], draw=[0])})  # fmt: skip
    d = pnmf.diagnose(point)
    assert d.check("point_estimate").status == "n/a" and d.verdict == "ok"


def test_repeated_draws_leave_psis_loo_out_instead_of_crashing():
    # importance-resampled draws can repeat one draw so often that PSIS has no tail to
    # fit (ArviZ raises): diagnose says LOO was not computed, and why
    t = hand_tree(pointwise=True)
    ll = np.full((4, 200, 3, 4), -2.0)  # every draw the same: no tail at all
    coords = {"row": np.arange(3), "column": np.arange(4)}
    t["log_likelihood"] = xr.DataTree(
        xr.Dataset({"V": (("chain", "draw", "row", "column"), ll)}, coords=coords)
    )
    d = pnmf.diagnose(t)
    k = d.check("pareto_k")
    assert k.threshold is None and "PSIS failed" in k.detail, k.detail
    assert d.verdict != "fail"
