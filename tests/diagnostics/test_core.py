import json

import numpy as np
import pytest
import xarray as xr

import poisson_nmf as pnmf
from poisson_nmf.diagnostics import THRESHOLDS, Threshold, entry_label
from tests._fits import digits_diagnosis, digits_fit, good_fit, short_fit, two_mode_tree
from tests.diagnostics.trees import hand_tree, with_values

SAMPLING = ("r_hat", "ess_bulk", "ess_tail", "divergences", "ebfmi", "modes")


def test_good_run_passes_every_sampling_check():
    # K = 1 with scale-pinning priors is one smooth mode; 4 x 1000 draws put R-hat near
    # 1.003 and ESS in the thousands, far from the thresholds 1.01 and 400, so a correct
    # sampler passes for any seed
    d = pnmf.diagnose(good_fit())
    for name in SAMPLING:
        assert d.check(name).passed, d.check(name)
    assert d.verdict in ("ok", "warn")
    assert not any(c.severity == "fail" and not c.passed for c in d.checks)
    assert d.n_chains == 4 and d.n_draws == 1000
    assert len(d.entries) == 12 + 10  # W (12 x 1) and H (1 x 10)
    assert d.check("ess_bulk").value >= 400


def test_chains_in_different_modes_fail():
    d = pnmf.diagnose(two_mode_tree())
    assert d.verdict == "fail"
    assert not d.check("modes").passed
    assert not d.check("r_hat").passed
    assert d.modes["n_modes"] == 2
    assert any("different modes" in r for r in d.reasons)
    # sampling failures are listed before caveats
    severities = [d.check(n).severity for n in SAMPLING if not d.check(n).passed]
    assert severities[0] == "fail"
    # no pointwise groups: the predictive checks and LOO are reported as not run
    assert d.ppc is None and d.loo is None
    assert d.check("pareto_k").severity == "info"


def test_too_few_draws_fail_on_ess():
    # 2 chains x 20 draws: ArviZ caps ESS at N log10(N) = 64 < 200, so this must fail
    d = pnmf.diagnose(short_fit())
    assert d.verdict == "fail"
    assert not d.check("ess_bulk").passed
    assert not d.check("ess_tail").passed
    assert any("ESS < 200" in r for r in d.reasons)


def test_thresholds_are_the_literature_ones():
    d = digits_diagnosis()
    assert d.check("r_hat").threshold == Threshold("<=", 1.01)
    assert d.check("ess_bulk").threshold == Threshold(">=", 200, "100 per chain")  # 2 chains
    assert d.check("ebfmi").threshold == Threshold(">=", 0.3)
    assert d.check("pareto_k").threshold == Threshold("<=", 0.7)
    assert THRESHOLDS["r_hat"] == 1.01


def test_entries_agree_with_arviz_and_the_posterior():
    import arviz_stats as azs

    idata = digits_fit()
    d = digits_diagnosis()
    e = d.entries
    W = idata["posterior"]["W"]
    rhat = azs.rhat(W.to_dataset(), method="rank")["W"]
    r, k = 7, 1
    row = e[(e["variable"] == "W") & (e["row"] == r) & (e["component"] == k)].iloc[0]
    assert row["r_hat"] == pytest.approx(float(rhat.sel(row=r, component=k)), rel=1e-12)
    assert row["mean"] == pytest.approx(float(W.sel(row=r, component=k).mean()), rel=1e-12)
    assert entry_label(d.entries.iloc[0]) == "W[row 0, k 0]"


def test_ppc_and_loo_numbers():
    d = digits_diagnosis()
    ppc = d.ppc
    assert ppc is not None and 0 <= ppc["coverage"] <= 1 and 0 <= ppc["ppp"] <= 1
    # the p-value is the share of draws whose replicated discrepancy is at least the realised
    disc = d.discrepancy
    assert ppc["ppp"] == pytest.approx(np.mean(disc["replicated"] >= disc["realised"]))
    assert len(disc) == ppc["n_draws"] == 100
    assert ppc["n_entries"] == 60 * 64
    loo = d.loo
    assert loo is not None and loo["n_data_points"] == 60 * 64
    assert sum(loo["k_counts"].values()) == loo["n_k"]
    # more entries than loo_max_points (2000): a fixed subsample (the re-render test in
    # test_report checks that it is the same each time)
    assert loo["subsampled"] and loo["n_k"] == 2000


def test_to_dict_is_json():
    d = digits_diagnosis()
    out = json.loads(json.dumps(d.to_dict()))
    assert out["verdict"] == d.verdict
    assert [c["name"] for c in out["checks"]] == [c.name for c in d.checks]
    assert len(out["worst_entries"]) == 10
    assert "verdict:" in str(d)


def test_bad_input():
    with pytest.raises(ValueError, match="posterior group with W and H"):
        pnmf.diagnose(digits_fit()["observed_data"])
    with pytest.raises(ValueError, match="ppc_prob"):
        pnmf.diagnose(digits_fit(), ppc_prob=1.5)


def test_constant_entries_left_out_not_failed():
    # a normalised W with one row is 1 in every draw: R-hat and ESS undefined by construction
    from poisson_nmf.convergence import entry_table, summarize_convergence

    rng = np.random.default_rng(1)
    post = xr.Dataset(
        {
            "W": (("chain", "draw", "row", "component"), np.ones((4, 200, 1, 1))),
            "H": (("chain", "draw", "component", "column"), rng.gamma(50, 0.1, (4, 200, 1, 3))),
        }
    )
    entries = entry_table(post)
    assert entries["constant"].tolist() == [True, False, False, False]
    conv = summarize_convergence(entries, 4, r_hat_max=1.01, ess_min=400)
    assert conv.n_constant == 1 and conv.n_undefined == 0
    assert conv.clean  # independent draws: R-hat ~ 1, ESS ~ 800
    # a varying entry with NaN draws has no defined R-hat or ESS: undefined, which fails
    bad = post.copy()
    bad["H"][0, :, 0, 0] = np.nan
    conv = summarize_convergence(entry_table(bad, intervals=False), 4, r_hat_max=1.01, ess_min=400)
    assert conv.n_undefined >= 1 and not conv.clean


# --- undefined values classified; model-fit warnings that do not cry wolf (issue 18) --


def test_one_row_case_is_not_failed_by_rhat():
    # issue 18, case 3.1: V is one row (1 x 12 Poisson(5)), K = 1. W is 1 in every draw
    # (normalised), so its R-hat is undefined by construction: left out, never a FAIL
    V = np.random.default_rng(0).poisson(5.0, (1, 12))
    # the defaults (4 chains x 1000 draws): the 12 entries of H mix well (R-hat ~1.002)
    idata = pnmf.sample_posterior(V, 1, random_seed=0, pointwise_draws=100)
    d = pnmf.diagnose(idata)
    rh = d.check("r_hat")
    assert rh.passed, rh
    assert rh.detail == "all 12 entries have R-hat <= 1.01 (1 constant by construction, left out)"
    assert d.entries["constant"].sum() == 1
    assert 1.0 <= rh.value <= 1.01  # the largest over the 12 entries of H that vary
    assert not any("R-hat" in r for r in d.reasons)
    assert d.check("ebfmi").passed and np.isfinite(d.check("ebfmi").value)


def test_under_dispersion_is_not_a_warning_over_dispersion_is():
    base = good_fit()
    pp = base["posterior_predictive"]["V"]
    # every replicated count equal to the observed one: p = 1 (under-dispersed)
    same = np.broadcast_to(base["observed_data"]["V"].values, pp.shape).astype(pp.dtype)
    d = pnmf.diagnose(with_values(base, "posterior_predictive", "V", same))
    c = d.check("ppc_discrepancy")
    assert c.value == 1.0 and c.passed
    assert "common under the model itself: not a warning" in c.detail
    # observed counts three times larger than the fit: over-dispersed, both checks warn
    big = base["observed_data"]["V"].values * 3 + 5
    d = pnmf.diagnose(with_values(base, "observed_data", "V", big))
    assert d.check("ppc_discrepancy").value == 0.0 and not d.check("ppc_discrepancy").passed
    assert "over-dispersed relative to Poisson(WH)" in d.check("ppc_discrepancy").detail
    cov = d.check("ppc_coverage")
    assert not cov.passed and d.ppc["coverage_p"] < 0.01 and d.verdict == "warn"


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        (
            {"r_hat_max": 0.5},
            ValueError,
            r"r_hat_max must be a finite number in \(1, infinity\), got 0.5",
        ),
        ({"r_hat_max": 1.0}, ValueError, r"r_hat_max must be .* got 1.0"),
        (
            {"ess_min_per_chain": -1},
            ValueError,
            r"ess_min_per_chain must be .* \(0, infinity\), got -1",
        ),
        (
            {"pareto_k_max": float("nan")},
            ValueError,
            r"pareto_k_max must be a finite number .* got nan",
        ),
        (
            {"ebfmi_min": "0.3"},
            TypeError,
            r"ebfmi_min must be a number in \(0, infinity\), got '0.3'",
        ),
        ({"ppc_prob": 1.0}, ValueError, r"ppc_prob must be a finite number in \(0, 1\), got 1.0"),
        ({"ppc_prob": True}, TypeError, r"ppc_prob must be a number"),
        ({"loo_max_points": 0}, ValueError, r"loo_max_points must be an integer >= 1, got 0"),
        ({"loo_max_points": 2.5}, ValueError, r"loo_max_points must be an integer >= 1"),
    ],
)
def test_thresholds_are_checked_by_name(kw, exc, match):
    tree = hand_tree(C=2, D=30, pointwise=True)
    with pytest.raises(exc, match=match):
        pnmf.diagnose(tree, **kw)
    loadings = xr.DataTree.from_dict({"posterior": tree["posterior"].to_dataset()[["H"]]})
    with pytest.raises(exc, match=match):  # a loadings tree's diagnose checks them too
        pnmf.diagnose(loadings, **kw)


def test_numpy_thresholds_are_numbers():
    tree = hand_tree(C=2, D=30, pointwise=True)
    d = pnmf.diagnose(tree, r_hat_max=np.float64(1.05), loo_max_points=np.int64(100),
                      ess_min_per_chain=np.int64(10))  # fmt: skip
    assert d.check("r_hat").threshold == Threshold("<=", 1.05)
    assert d.check("ess_bulk").threshold.value == 20.0  # 10 per chain x 2 chains


def test_predictive_checks_need_twenty_draws():
    # data far from the fit (3 x the counts): with 20 draws both checks warn; with 3 the
    # same misfit is not judged ("info"), as a 90 % interval of 3 draws is their range
    for D, judged in ((3, False), (20, True)):
        t = hand_tree(C=1, D=D, F=6, N=5, pointwise=True)
        big = t["observed_data"]["V"].values * 3 + 5
        d = pnmf.diagnose(with_values(t, "observed_data", "V", big))
        for name in ("ppc_coverage", "ppc_discrepancy"):
            c = d.check(name)
            assert (c.status == "WARN") if judged else (c.status == "n/a"), (D, c)
        if not judged:
            assert d.check("ppc_coverage").detail == (
                "not computed: 3 predictive draws, a central 90% interval needs at least 20 "
                "(pointwise_draws, draws)"
            )
            assert d.ppc is not None and d.ppc["n_draws"] == 3  # still summarised


def test_efficiency_and_pareto_k_are_information():
    d = pnmf.diagnose(good_fit())
    for name in ("mcse", "tree_depth", "pareto_k"):
        assert d.check(name).severity == "info", name
    k = d.check("pareto_k")
    n_par = (12 + 10) * 1
    assert f"against (F + N) K = {n_par} parameters" in k.detail
    assert d.loo["n_parameters"] == n_par


def test_undefined_ebfmi_is_named():
    base = good_fit()
    e = base["sample_stats"]["energy"].values.copy()
    e[0] = 7.0  # constant energy in chain 0: E-BFMI is 0 / 0
    d = pnmf.diagnose(with_values(base, "sample_stats", "energy", e))
    c = d.check("ebfmi")
    assert not c.passed and c.severity == "fail"
    assert "chains [0] have an undefined E-BFMI" in c.detail
    assert np.isfinite(c.value)  # the smallest finite one, chains 1-3


def test_zero_rates_contribute_zero_to_the_discrepancy():
    base = good_fit()
    W = base["posterior"]["W"].values.copy()
    W[..., 0, :] = 0.0  # row 0's rate is 0 in every draw
    t = with_values(base, "posterior", "W", W)
    obs = base["observed_data"]["V"].values.copy()
    obs[0] = 0
    t = with_values(t, "observed_data", "V", obs)
    pp = base["posterior_predictive"]["V"].values.copy()
    pp[..., 0, :] = 0
    t = with_values(t, "posterior_predictive", "V", pp)
    d = pnmf.diagnose(t)
    assert np.isfinite(d.ppc["ppp"]) and d.ppc["n_undefined_draws"] == 0


def _sparse_case():
    import scipy.sparse as sp

    rng = np.random.default_rng(7)
    return sp.csr_array(rng.poisson(0.15, (40, 30)) * rng.poisson(6.0, (40, 30)))


def test_zero_subsample_of_large_sparse_input(monkeypatch):
    # the layout of large sparse fits, on a small one (thresholds lowered): every
    # non-zero with weight 1 and m = max(nnz, 50) zeros with weight n_zero / m
    from poisson_nmf.sampling import pointwise as smp

    V = _sparse_case()
    counts = pnmf.as_counts(V)
    assert smp.pointwise_entries(counts) is None  # 1200 entries: the full layout
    monkeypatch.setattr(smp, "ZERO_SUBSAMPLE_ABOVE", 100)
    monkeypatch.setattr(smp, "ZERO_SUBSAMPLE_MIN", 50)
    r, c, w = smp.pointwise_entries(counts)
    nnz = counts.nz_values.size
    n_zero = 1200 - nnz
    m = max(nnz, 50)
    assert r.size == nnz + m and w.sum() == pytest.approx(1200)
    assert (w[:nnz] == 1).all() and np.allclose(w[nnz:], n_zero / m)
    assert (V.toarray()[r[nnz:], c[nnz:]] == 0).all()  # the subsample holds zeros only
    assert len(set(zip(r.tolist(), c.tolist(), strict=True))) == r.size  # no repeats
    r2, c2, _ = smp.pointwise_entries(counts)
    assert (r2 == r).all() and (c2 == c).all()  # a fixed seed


@pytest.mark.slow
def test_weighted_checks_estimate_the_full_ones(monkeypatch):
    from poisson_nmf.sampling import pointwise as smp

    V = _sparse_case()
    kw = dict(draws=150, tune=150, chains=2, random_seed=3, pointwise_draws=100)
    full = pnmf.diagnose(pnmf.sample_posterior(V, 2, **kw))
    monkeypatch.setattr(smp, "ZERO_SUBSAMPLE_ABOVE", 100)
    monkeypatch.setattr(smp, "ZERO_SUBSAMPLE_MIN", 50)
    idata = pnmf.sample_posterior(V, 2, **kw)
    ll = idata["log_likelihood"]["V"]
    assert ll.dims == ("chain", "draw", "entry") and "weight" in ll.coords
    d = pnmf.diagnose(idata)
    assert d.ppc["weighted"] and d.ppc["n_entries"] == 1200
    assert d.loo["weighted"] and d.loo["n_data_points"] == 1200
    # same draws (same seed): the weighted estimate of elpd_loo over all 1200 entries
    # agrees with the full one within its se (the zero stratum is a sample)
    assert abs(d.loo["elpd"] - full.loo["elpd"]) < d.loo["se"]
    assert abs(d.ppc["coverage"] - full.ppc["coverage"]) < 0.05


def test_diagnose_refuses_what_is_not_a_tree():
    with pytest.raises(TypeError, match="idata must be an xarray.DataTree"):
        pnmf.diagnose(np.ones(3))
