"""Divergence-triggered re-adaptation of the final warm-up stage (adaptation.py)."""

import json

import numpy as np
import pytest
import xarray as xr

import poisson_nmf as pnmf
from poisson_nmf.sampling.adaptation import (
    TARGET_ACCEPT_LADDER,
    DivergedAttempt,
    TargetAcceptSchedule,
    count_divergences,
    settle_final_stage,
)

# 8 x 6 counts drawn from the default priors (test_calibration's SBC problem), K = 2:
# 2 chains x 200 draws after 200 tuning steps (one warm-up stage). Whether it diverges
# at nutpie's default target_accept 0.8 depends on the seed, and for one seed on the CPU
# (the float32 kernel rounds differently: 9 divergences at seed 1 on one machine, none on
# another). The integration tests below therefore start the ladder at 0.3: long steps
# that diverged at every seed tried (seeds 1 to 8: 3 to 67 divergences, 2026-12-02),
# then 0.95 and 0.99 (0.95 never diverged where 0.8 did). About 2 s a run.
SMALL = {"tune": 200, "draws": 200, "chains": 2, "pointwise_draws": 0, "random_seed": 1}
LADDER = (0.3, 0.95, 0.99)


@pytest.fixture(scope="module")
def diverging():
    rng = np.random.default_rng(1)
    return rng.poisson(rng.gamma(1.0, 1.0, (8, 2)) @ rng.gamma(1.0, 1.0, (2, 6)))


def _low_first_rung(mp: pytest.MonkeyPatch) -> None:
    mp.setattr("poisson_nmf.sampling.adaptation.TARGET_ACCEPT_LADDER", LADDER)


@pytest.fixture(scope="module")
def escalated(diverging):
    with pytest.MonkeyPatch.context() as mp:  # only for this run: other tests see the default
        _low_first_rung(mp)
        return pnmf.sample_posterior(diverging, 2, **SMALL)


def _run(divs, draws=10, early=False):
    """A fake final stage: attempt i returns chains with divs[i] divergences in chain 0."""
    calls = []

    def run(kw, abort):
        calls.append(dict(kw))
        d = divs[len(calls) - 1]
        if abort and d > 0 and early:
            raise DivergedAttempt(7)
        st = xr.Dataset({"diverging": ("draw", np.arange(draws) < d)})
        calm = xr.Dataset({"diverging": ("draw", np.zeros(draws, bool))})
        return [(np.zeros((draws, 3)), st), (np.zeros((draws, 3)), calm)]

    return run, calls


def test_no_divergence_keeps_the_first_attempt_unchanged():
    run, calls = _run([0])
    sched = TargetAcceptSchedule.from_nuts_kwargs({})
    runs = settle_final_stage(run, {"seed_like": 3}, sched)
    # the first attempt gets the caller's keywords untouched: draws as without the rule
    assert calls == [{"seed_like": 3}]
    assert count_divergences(runs) == 0
    assert sched.to_info() == {
        "target_accept_rule": "escalate_on_divergence",
        "target_accept_schedule": [0.8],
        "target_accept": 0.8,
        "adaptation_attempts": [{"target_accept": 0.8, "divergences": 0, "draws_per_chain": 10}],
    }


def test_escalates_until_no_divergence():
    run, calls = _run([5, 2, 0, 0])
    sched = TargetAcceptSchedule.from_nuts_kwargs({})
    runs = settle_final_stage(run, {}, sched)
    assert [c.get("target_accept") for c in calls] == [None, 0.9, 0.95]
    assert count_divergences(runs) == 0
    info = sched.to_info()
    assert info["target_accept_schedule"] == [0.8, 0.9, 0.95]
    assert [a["divergences"] for a in info["adaptation_attempts"]] == [5, 2, 0]


def test_ladder_end_keeps_the_last_attempt():
    run, calls = _run([3, 3, 3, 1])
    sched = TargetAcceptSchedule.from_nuts_kwargs({})
    runs = settle_final_stage(run, {}, sched)
    assert len(calls) == len(TARGET_ACCEPT_LADDER)
    assert count_divergences(runs) == 1  # reported, as diagnose will
    assert sched.to_info()["target_accept"] == 0.99


def test_attempt_stopped_at_first_divergence_is_recorded():
    # every attempt but the last may stop early; the last one always runs to its end
    run, calls = _run([2, 2, 2, 2], early=True)
    sched = TargetAcceptSchedule.from_nuts_kwargs({})
    runs = settle_final_stage(run, {}, sched)
    att = sched.to_info()["adaptation_attempts"]
    assert [a.get("stopped_at_first_divergence", False) for a in att] == [True] * 3 + [False]
    assert att[0] == {
        "target_accept": 0.8, "divergences": 1, "draws_per_chain": 7,
        "stopped_at_first_divergence": True,
    }  # fmt: skip
    assert count_divergences(runs) == 2 and runs[0][0].shape == (10, 3)


def test_user_target_accept_is_not_escalated():
    run, calls = _run([4, 0])
    sched = TargetAcceptSchedule.from_nuts_kwargs({"target_accept": 0.85})
    runs = settle_final_stage(run, {"target_accept": 0.85}, sched)
    assert calls == [{"target_accept": 0.85}]
    assert count_divergences(runs) == 4
    assert sched.to_info()["target_accept_rule"] == "user"
    assert sched.to_info()["target_accept_schedule"] == [0.85]


def test_bad_schedules():
    with pytest.raises(TypeError, match="target_accept"):
        TargetAcceptSchedule.from_nuts_kwargs({"target_accept": "high"})
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        TargetAcceptSchedule((0.8, 1.0))
    with pytest.raises(ValueError, match="increase"):
        TargetAcceptSchedule((0.9, 0.8))


def test_diverging_table_ends_with_zero_divergences(escalated):
    assert int(escalated["sample_stats"]["diverging"].sum()) == 0
    info = json.loads(escalated.attrs["sampler"])
    assert info["target_accept_rule"] == "escalate_on_divergence"
    # it did diverge at the first rung: the rule, not luck, removed them
    assert info["target_accept_schedule"][0] == LADDER[0]
    assert info["adaptation_attempts"][0]["divergences"] > 0
    assert info["adaptation_attempts"][-1]["divergences"] == 0
    assert info["target_accept"] == info["target_accept_schedule"][-1] > LADDER[0]


def test_kept_attempt_is_the_run_at_its_target_accept(diverging, escalated):
    # the kept draws are exactly those of a run asked for at that target_accept (same
    # stage-1 end, coordinates and chain seeds): nothing of the discarded runs enters
    ta = json.loads(escalated.attrs["sampler"])["target_accept"]
    direct = pnmf.sample_posterior(diverging, 2, nuts_kwargs={"target_accept": ta}, **SMALL)
    np.testing.assert_array_equal(escalated["posterior"]["W"], direct["posterior"]["W"])
    np.testing.assert_array_equal(escalated["posterior"]["H"], direct["posterior"]["H"])
    assert json.loads(direct.attrs["sampler"])["target_accept_rule"] == "user"


def test_stopping_rule_records_the_kept_attempt_only(diverging, monkeypatch):
    _low_first_rung(monkeypatch)
    tree = pnmf.sample_posterior(
        diverging, 2, max_draws=200, target_ess=100, **{**SMALL, "draws": None}
    )
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    stop = json.loads(tree.attrs["stopping"])
    info = json.loads(tree.attrs["sampler"])
    assert len(info["adaptation_attempts"]) > 1
    # a discarded attempt under the rule stops at its first diverging kept draw
    assert all(a["stopped_at_first_divergence"] for a in info["adaptation_attempts"][:-1])
    # the monitor was emptied between attempts: its checks are the kept run's
    assert stop["draws_per_chain"] == tree["posterior"].sizes["draw"]
    assert [c["draws"] for c in stop["checks"]] == [200]


def test_a_ladder_starting_elsewhere_passes_its_first_value():
    # nutpie's default (0.8) first: the caller's keywords as they are (draws as without
    # the rule); any other first value must be passed, or nutpie would run at 0.8
    assert TargetAcceptSchedule((0.8, 0.9)).kwargs(0, {"a": 1}) == {"a": 1}
    assert TargetAcceptSchedule((0.3, 0.95)).kwargs(0, {"a": 1}) == {"a": 1, "target_accept": 0.3}
    assert TargetAcceptSchedule((0.3, 0.95)).kwargs(1, {}) == {"target_accept": 0.95}
