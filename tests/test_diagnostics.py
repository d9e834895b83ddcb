import json

import numpy as np
import pytest
import xarray as xr

import poisson_nmf as pnmf
from poisson_nmf.diagnostics import THRESHOLDS, entry_label
from tests._fits import digits_diagnosis, digits_fit, good_fit, short_fit, two_mode_tree

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
    assert d.check("r_hat").threshold == "<= 1.01"
    assert d.check("ess_bulk").threshold.startswith(">= 200")  # 100 per chain, 2 chains
    assert d.check("ebfmi").threshold == ">= 0.3"
    assert d.check("pareto_k").threshold == "<= 0.7"
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
