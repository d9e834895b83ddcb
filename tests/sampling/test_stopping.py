"""The stopping rule of sample_posterior (draws=None) and resume."""

import json
import warnings

import numpy as np
import pytest

import poisson_nmf as pnmf
from poisson_nmf.sampling.stopping import StoppingRule
from tests.conftest import named_rng

# tiny and fast: 2 chains of a 10 x 8 table, K = 2, one warm-up stage (tune < 300)
TINY = {"tune": 150, "chains": 2, "pointwise_draws": 0}
NEVER = {"target_ess": 1e9}  # an ESS no run reaches: the rule runs to its budget


@pytest.fixture(scope="module")
def counts():
    rng = named_rng("test_stopping")
    return rng.poisson(rng.gamma(2.0, 1.0, (10, 2)) @ rng.gamma(2.0, 2.0, (2, 8)))


# the runs that must stop clean: two warm-up stages (tune >= 300) learn this table's slow
# direction; with one (TINY) it mixes slowly enough that some seeds, or the same seed on
# another CPU (the float32 kernel rounds differently), reach the 4000-draw budget. With
# tune=400, seeds 1 to 8 stopped clean at 1000 to 2000 draws per chain (2026-12-02).
TUNED = {**TINY, "tune": 400}


@pytest.fixture(scope="module")
def clean(counts):
    return pnmf.sample_posterior(counts, 2, random_seed=4, target_ess=200, **TUNED)


def test_rule_thresholds_are_diagnoses():
    # diagnose fails ESS below 100 per chain: the rule never asks for less
    assert StoppingRule(target_ess=400, chains=8).ess_min == 800
    assert StoppingRule(target_ess=400, chains=2).ess_min == 400
    rule = StoppingRule(max_draws=1200, check_every=500)
    assert rule.checkpoints() == [500, 1000, 1200]
    # a resumed run of 1000 draws is checked only after them
    assert StoppingRule(max_draws=1200, check_every=500, start=1000).checkpoints() == [1200]


def test_stops_when_clean(clean):
    stop = json.loads(clean.attrs["stopping"])
    assert stop["rule"] == "until_clean" and stop["reason"] == "clean"
    d = clean["posterior"].sizes["draw"]
    assert d == stop["draws_per_chain"] and d % 500 == 0 and d < 4000
    assert stop["checks"][-1]["clean"] and not any(c["clean"] for c in stop["checks"][:-1])
    # what stopped clean passes diagnose's sampling checks (one definition of both)
    checks = {c.name: c for c in pnmf.diagnose(clean).checks}
    assert all(checks[k].passed for k in ("r_hat", "ess_bulk", "ess_tail"))
    assert checks["ess_bulk"].value >= 200


def test_same_draws_as_explicit_draws(counts):
    # the kept draws are a prefix of one run: stopping at d keeps exactly draws=d's draws.
    # target_accept is given to both, so that neither redoes its final stage
    # (adaptation.py): a rule's attempt stopped at a divergence past d would be kept by
    # the shorter fixed run, and which attempts diverge depends on the CPU's rounding
    nuts = {"nuts_kwargs": {"target_accept": 0.9}}
    until = pnmf.sample_posterior(counts, 2, random_seed=4, target_ess=200, **nuts, **TUNED)
    d = until["posterior"].sizes["draw"]
    fixed = pnmf.sample_posterior(counts, 2, random_seed=4, draws=d, **nuts, **TUNED)
    np.testing.assert_array_equal(fixed["posterior"]["W"].values, until["posterior"]["W"].values)
    np.testing.assert_array_equal(fixed["posterior"]["H"].values, until["posterior"]["H"].values)
    assert json.loads(fixed.attrs["stopping"]) == {
        "rule": "fixed", "reason": "fixed", "draws_per_chain": d, "resumed_from": None,
    }  # fmt: skip


def test_rule_settings_beside_explicit_draws_are_ignored_with_a_warning(counts):
    # recorded rather than pytest.warns: 20 draws may also warn of divergences or modes,
    # which pytest.warns would raise again (filterwarnings = error)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        fit = pnmf.sample_posterior(counts, 2, draws=20, max_draws=10, max_time=1.0,
                                    random_seed=3, **TINY)  # fmt: skip
    said = [str(w.message) for w in got if w.category is UserWarning]
    assert any(m.startswith("max_draws, max_time only apply with draws=None") for m in said)
    assert fit["posterior"].sizes["draw"] == 20  # neither the budget nor the time cut it
    assert json.loads(fit.attrs["stopping"])["rule"] == "fixed"


def test_stops_at_max_draws_and_says_so(counts):
    tree = pnmf.sample_posterior(counts, 2, random_seed=5, max_draws=120, **NEVER, **TINY)
    stop = json.loads(tree.attrs["stopping"])
    assert stop["reason"] == "max_draws" and stop["draws_per_chain"] == 120
    assert tree["posterior"].sizes["draw"] == 120
    diag = pnmf.diagnose(tree)
    assert "resume" in str(diag)


def test_stops_at_max_time_at_its_next_check(counts):
    # a time budget already spent stops the run at its first check, and says why
    tree = pnmf.sample_posterior(
        counts, 2, random_seed=5, max_draws=1000, max_time=1e-6, **NEVER, **TINY
    )
    stop = json.loads(tree.attrs["stopping"])
    assert (stop["reason"], stop["draws_per_chain"], stop["max_time"]) == ("max_time", 500, 1e-6)


def test_pausing_chains_does_not_change_draws(counts):
    # 3 chains on 1 core: chains wait, paused, for their turn; the draws are the same
    kw = {**TINY, "chains": 3, "max_draws": 80, **NEVER}
    one = pnmf.sample_posterior(counts, 2, random_seed=6, cores=1, **kw)
    three = pnmf.sample_posterior(counts, 2, random_seed=6, cores=3, **kw)
    np.testing.assert_array_equal(one["posterior"]["H"].values, three["posterior"]["H"].values)


def test_sampling_during_checks_does_not_change_draws(counts, clean, monkeypatch):
    # the chains go on during a slow check (scheduling only): the kept draws are the same
    monkeypatch.setattr("poisson_nmf.sampling.stopping.OVERLAP_AFTER_S", -1.0)
    again = pnmf.sample_posterior(counts, 2, random_seed=4, target_ess=200, **TUNED)
    np.testing.assert_array_equal(again["posterior"]["H"].values, clean["posterior"]["H"].values)


def test_resume_continues_a_stopped_run(counts, tmp_path):
    first = pnmf.sample_posterior(counts, 2, random_seed=8, max_draws=60, **NEVER, **TINY)
    path = pnmf.save_fit(first, tmp_path / "fit.nc")
    # settings come from the stored run (its tune, chains, seed), across a netCDF file;
    # giving the stored values again is fine (pnmf.GammaPriors() equals the stored Gamma(1, 1))
    more = pnmf.sample_posterior(
        counts, 2, resume=pnmf.load_fit(path), max_draws=130, pointwise_draws=0, **NEVER,
        tune=150, chains=2, random_seed=8, priors=pnmf.GammaPriors(),
    )  # fmt: skip
    stop = json.loads(more.attrs["stopping"])
    assert stop["resumed_from"] == 60 and stop["draws_per_chain"] == 130
    W = more["posterior"]["W"].values
    np.testing.assert_array_equal(W[:, :60], first["posterior"]["W"].values)
    ss = more["sample_stats"]
    for name in ("log_likelihood", "permutation", "diverging", "step_size_bar"):
        np.testing.assert_array_equal(ss[name].values[:, :60], first["sample_stats"][name].values)
    # the same chains going on, without a warm-up: the stored step size and state
    assert json.loads(more.attrs["sampler"])["resumed_without_warmup"] is True
    state = first["sampler_state"]
    np.testing.assert_array_equal(
        ss["step_size_bar"].values[:, 60:],
        np.repeat(state["step_size"].values[:, None], 70, axis=1),
    )
    np.testing.assert_array_equal(more["sampler_state"]["mass_matrix_std"].values,
                                  state["mass_matrix_std"].values)  # fmt: skip
    # reproducible: the same resume gives the same draws, and a resumed run resumes
    again = pnmf.sample_posterior(counts, 2, resume=first, max_draws=130, pointwise_draws=0,
                                  **NEVER)  # fmt: skip
    np.testing.assert_array_equal(again["posterior"]["W"].values, W)
    third = pnmf.sample_posterior(counts, 2, resume=more, max_draws=150, **NEVER)
    assert third["posterior"].sizes["draw"] == 150
    np.testing.assert_array_equal(third["posterior"]["H"].values[:, :130],
                                  more["posterior"]["H"].values)  # fmt: skip


def test_bad_stopping_arguments(counts, clean):
    with pytest.raises(ValueError, match="target_rhat must be > 1"):
        pnmf.sample_posterior(counts, 2, target_rhat=1.0)
    with pytest.raises(ValueError, match="max_draws must be a positive integer"):
        pnmf.sample_posterior(counts, 2, max_draws=0)
    with pytest.raises(ValueError, match="max_time must be None"):
        pnmf.sample_posterior(counts, 2, max_time=-1)
    with pytest.raises(ValueError, match="needs sampler='nutpie'"):
        pnmf.sample_posterior(counts, 2, sampler="pymc")
    d = clean["posterior"].sizes["draw"]
    with pytest.raises(ValueError, match=f"resume holds {d} draws per chain"):
        pnmf.sample_posterior(counts, 2, resume=clean, max_draws=d)
    with pytest.raises(ValueError, match="V \\(or its mask\\) differs"):
        pnmf.sample_posterior(counts + 1, 2, resume=clean, max_draws=d + 100)
    with pytest.raises(TypeError, match="resume must be a tree"):
        pnmf.sample_posterior(counts, 2, resume={"a": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ({"tune": 50}, r"whose tune=400: drop tune=50 or start a new run \(without resume\)"),
        (
            {"chains": 3, "random_seed": 5},
            r"whose chains=2, random_seed=4: drop chains=3, random_seed=5 or start a new run",
        ),
        (
            {"priors": pnmf.GammaPriors(2, 2, 2, 2)},
            r"whose priors=GammaPriors\(w_shape=1.0, .*\): drop priors=GammaPriors\(w_shape=2,",
        ),
        ({"random_seed": np.random.default_rng(4)}, r"whose random_seed=4: drop random_seed=Gen"),
        ({"jitter": 0.2, "precision": "double"}, r"whose .*: drop precision=.double., jitter=0.2"),
    ],
)
def test_resume_refuses_settings_unlike_the_stored_runs(counts, clean, given, match):
    # refused before anything runs: a user who passes tune=50 believes it is used
    d = clean["posterior"].sizes["draw"]
    with pytest.raises(ValueError, match=r"resume continues the stored run, " + match):
        pnmf.sample_posterior(counts, 2, resume=clean, max_draws=d + 100, **given)
    # an argument equal to its default counts as not given (Python cannot tell them apart)
    with pytest.raises(ValueError, match=f"resume holds {d} draws per chain"):  # the next check
        pnmf.sample_posterior(counts, 2, resume=clean, max_draws=d, chains=4, tune=1000)


def test_resume_keeps_the_runs_labels(counts):
    import pandas as pd

    df = pd.DataFrame(counts, index=[f"g{i}" for i in range(10)],
                      columns=[f"s{j}" for j in range(8)])  # fmt: skip
    first = pnmf.sample_posterior(df, 2, random_seed=3, max_draws=30, **NEVER, **TINY)
    # the same counts without labels: the run's labels are kept, not replaced by 0..F-1
    more = pnmf.sample_posterior(counts, 2, resume=first, max_draws=40, **NEVER)
    assert more["posterior"]["row"].values.tolist() == df.index.tolist()
    assert more["observed_data"]["column"].values.tolist() == df.columns.tolist()
    # other labels are refused, naming the first that differs
    other = df.rename(index={"g3": "x3"})
    with pytest.raises(ValueError, match=r"V's row labels differ from the run's \(position 3: "
                       r"'x3', the run has 'g3'\)"):  # fmt: skip
        pnmf.sample_posterior(other, 2, resume=first, max_draws=40)


def test_resume_of_a_variational_fit_says_so(counts):
    vi = pnmf.sample_posterior(counts, 2, method="vi", draws=20, random_seed=0)
    with pytest.raises(ValueError, match=r"a variational fit \(method='vi'\) has no chains"):
        pnmf.sample_posterior(counts, 2, resume=vi, max_draws=100)


def test_resume_of_a_loadings_fit_says_so(counts):
    W = np.random.default_rng(0).dirichlet(np.ones(10), size=2).T
    loadings = pnmf.fit_loadings(counts, W, method="map", random_seed=0)
    with pytest.raises(TypeError, match=r"^resume: a fit_loadings tree \(loadings given W\) "
                       r"cannot be resumed"):  # fmt: skip
        pnmf.sample_posterior(counts, 2, resume=loadings, max_draws=100)


def test_nuts_kwargs_are_stored_as_numbers():
    from poisson_nmf.sampling.stopping import kwargs_record, same_kwargs

    rec = kwargs_record({"target_accept": np.float64(0.85), "max_depth": 8, "x": [1]})
    assert rec == {"target_accept": 0.85, "max_depth": 8, "x": "[1]"}
    assert type(rec["target_accept"]) is float
    assert same_kwargs({"target_accept": 0.85}, {"target_accept": 0.85})
    assert same_kwargs({"target_accept": 0.85}, {"target_accept": "0.85"})  # stored as repr
    assert not same_kwargs({"target_accept": 0.9}, {"target_accept": 0.85})
    assert not same_kwargs(None, {"target_accept": 0.85})


def test_a_run_stores_target_accept_as_a_number(counts):
    tree = pnmf.sample_posterior(counts, 2, draws=20, random_seed=1,
                                 nuts_kwargs={"target_accept": 0.85}, **TINY)  # fmt: skip
    assert json.loads(tree.attrs["settings"])["nuts_kwargs"] == {"target_accept": 0.85}


@pytest.mark.slow
def test_posterior_suite_runs_quick(tmp_path):
    """benchmarks/posterior_suite.py --quick end to end: a row per problem, both samplers."""
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "posterior_suite.py"
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(path), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["problem"] for r in rows] == ["model_12x15", "planted_12x15", "tiny_4x5_k1"]
    # the planted and tiny problems are easy: clean at the quick settings, for both
    for r in rows[1:]:
        assert r["sp_clean"] and r["peer_clean"], r


@pytest.mark.slow
def test_sbc_through_the_stopping_rule(capsys):
    """SBC of sample_posterior at draws=None: the run length depends on the draws.

    Optional stopping makes each run's length depend on its draws, which SBC's rank
    argument does not cover (it assumes a length fixed in advance); a failure here would
    say the rule biases the kept draws enough to be seen in 100 simulations. The
    problem and thresholds are test_calibration's; the rule checks every 500 draws.
    """
    from poisson_nmf.calibration import default_sampler
    from tests.test_calibration import SLOW_SIMS, sbc, show

    sampler = default_sampler(draws=None, tune=300, chains=2, max_draws=2000)
    res = sbc(SLOW_SIMS, sampler, "sbc_rule")
    with capsys.disabled():
        print(show(f"SBC through the stopping rule, {SLOW_SIMS} simulations", res))
    assert res.passed, res.failed


def _monitor_of_factors(F, K, N, rule, normalize, seed):
    """A ConvergenceMonitor whose draws of x are W's entries then H's, as they are."""
    from poisson_nmf.sampling.stopping import ConvergenceMonitor

    rng = np.random.default_rng(seed)
    W_ref, H_ref = rng.gamma(5.0, 1.0, (F, K)), rng.gamma(5.0, 1.0, (K, N))
    W_ref /= W_ref.sum(0)

    def unpack(x):
        return x[:, : F * K].reshape(-1, F, K), x[:, F * K :].reshape(-1, K, N)

    return ConvergenceMonitor(rule, unpack, W_ref, H_ref, normalize), rng


def _blocks_near_reference(mon, rng, chains, d):
    """Per chain, d independent draws of x (W's entries then H's) about 14 % around the
    monitor's reference (Gamma(50, 1/50) factors)."""
    W, H = mon.W_ref, mon.H_ref
    return [
        np.concatenate([(W * rng.gamma(50.0, 1 / 50.0, (d, *W.shape))).reshape(d, -1),
                        (H * rng.gamma(50.0, 1 / 50.0, (d, *H.shape))).reshape(d, -1)], axis=1)
        for _ in range(chains)
    ]  # fmt: skip


def test_checks_screen_the_worst_entries_first_with_the_same_decision():
    # a monitor fed independent draws of 30 x 3 W and 3 x 20 H (150 entries), one entry of
    # H shifted in chain 0 so that it never mixes: each check after the first computes
    # only the suspects (the worst at the previous check) and stops at the failing one;
    # the decision is the one of computing every entry
    from poisson_nmf.sampling.stopping import MIN_SUSPECTS

    F, K, N = 30, 3, 20
    rule = StoppingRule(chains=2, target_ess=100, max_draws=1000, check_every=250)
    mon, rng = _monitor_of_factors(F, K, N, rule, "W", seed=0)
    W_ref, H_ref = mon.W_ref, mon.H_ref
    for d in (250, 500):
        blocks = []
        for c in range(2):
            W = W_ref * rng.gamma(200.0, 1 / 200.0, (250, F, K))  # ~7 % sd, independent
            H = H_ref * rng.gamma(200.0, 1 / 200.0, (250, K, N))
            H[:, 1, 4] *= 1.5 if c == 0 else 1.0  # one entry whose chains disagree
            blocks.append(np.concatenate([W.reshape(250, -1), H.reshape(250, -1)], axis=1))
        assert not mon(blocks, d)
    first, second = mon.checks
    assert first["entries_checked"] == F * K + K * N and not first["clean"]
    assert second["entries_checked"] == MIN_SUSPECTS and not second["clean"]
    # the screened check found the failing entry: its worst R-hat is the whole run's
    summary, _ = rule.assess(mon.draws())
    assert not summary.clean and second["worst_r_hat"] == pytest.approx(summary.worst_r_hat)


def test_monitor_keeps_draws_in_one_array_and_checks_them_in_place():
    # the draws are kept in order in one array planned for max_draws per chain; a check
    # reads a view of it (no stacked copy), and blocks beyond the plan still fit
    F, K, N = 4, 2, 3
    rule = StoppingRule(chains=2, target_ess=10, max_draws=20, check_every=10)
    mon, rng = _monitor_of_factors(F, K, N, rule, "H", seed=1)
    sent = []
    for d in (10, 20, 30):  # the third block goes past max_draws
        blocks = _blocks_near_reference(mon, rng, chains=2, d=10)
        sent.append(blocks)
        mon.add(blocks)
        assert mon.draws().shape == (2, d, F * K + K * N)
    x = mon.draws()
    assert np.shares_memory(x, mon._x)
    # normalize="H" with the reference's order kept: the kept draws are the blocks' own
    # W scaled by H's row sums; check the order of draws and chains through H's entries
    for c in range(2):
        H = np.concatenate([b[c][:, F * K :].reshape(-1, K, N) for b in sent])
        np.testing.assert_allclose(x[c, :, F * K :].reshape(-1, K, N).sum(2), 1.0)
        np.testing.assert_allclose(
            x[c, :, F * K :].reshape(-1, K, N), H / H.sum(2, keepdims=True), rtol=1e-12
        )
    np.testing.assert_array_equal(mon.draws(np.array([1, 5])), x[:, :, [1, 5]])
    mon.release()
    with pytest.raises(RuntimeError, match="no draws"):
        mon.draws()


def test_monitor_starts_small_when_the_planned_array_is_refused(monkeypatch):
    # a huge max_draws (max_memory=None) whose array the system refuses: the monitor
    # starts at two checks' worth and doubles, holding the same draws in order
    import poisson_nmf.sampling.stopping as stopping

    F, K, N = 4, 2, 3
    rule = StoppingRule(chains=2, target_ess=10, max_draws=10**9, check_every=10)
    mon, rng = _monitor_of_factors(F, K, N, rule, "W", seed=2)
    real_empty = np.empty

    def empty(shape, dtype=float):
        if shape[1] > 10**6:
            raise MemoryError("refused")
        return real_empty(shape, dtype=dtype)

    monkeypatch.setattr(stopping.np, "empty", empty)
    sent = []
    for _ in range(5):
        blocks = _blocks_near_reference(mon, rng, chains=2, d=10)
        sent.append(blocks)
        mon.add(blocks)
    assert mon._x.shape[1] == 80  # 20, then 40, then 80
    x = mon.draws()
    assert x.shape == (2, 50, F * K + K * N)
    # H's entries come through the W normalisation scaled per draw; W's columns sum to 1
    np.testing.assert_allclose(x[:, :, : F * K].reshape(2, 50, F, K).sum(2), 1.0)
    first_H = sent[0][1][:, F * K :].reshape(-1, K, N)
    first_W = sent[0][1][:, : F * K].reshape(-1, F, K)
    np.testing.assert_allclose(
        x[1, :10, F * K :].reshape(-1, K, N), first_H * first_W.sum(1)[:, :, None], rtol=1e-12
    )


def _with_state(tree, **changes):
    """``tree`` with some variables of its sampler_state replaced."""
    import xarray as xr

    groups = {k: v.to_dataset() for k, v in tree.children.items()}
    groups["sampler_state"] = groups["sampler_state"].assign(
        {k: (groups["sampler_state"][k].dims, v) for k, v in changes.items()}
    )
    out = xr.DataTree.from_dict(groups)
    out.attrs = dict(tree.attrs)
    return out


def test_resume_refuses_a_state_that_is_not_the_chains_own(counts, clean):
    d = clean["posterior"].sizes["draw"]
    more = {"max_draws": d + 500}
    # sliced after sampling: the stored state is where draw d - 1 is, not draw 99
    with pytest.raises(ValueError, match="chain 0's stored state is not where its last"):
        pnmf.sample_posterior(counts, 2, resume=clean.isel(draw=slice(0, 100)), **more)
    st = clean["sampler_state"]
    bad = {
        "step_size": (np.zeros(2), "'step_size' must be positive"),
        "mass_matrix_std": (np.full(st["mass_matrix_std"].shape, np.inf), "is not finite"),
    }
    for name, (value, match) in bad.items():
        with pytest.raises(ValueError, match=match):
            pnmf.sample_posterior(counts, 2, resume=_with_state(clean, **{name: value}), **more)
    # a nutpie fit without the group (made before it was stored) cannot be continued
    old = clean.copy()
    del old["sampler_state"]
    with pytest.raises(ValueError, match="holds no sampler_state"):
        pnmf.sample_posterior(counts, 2, resume=old, **more)
