"""Settling the arguments of a run, its seeds, its memory plan."""

import inspect
import json

import numpy as np
import pytest

from poisson_nmf.sampling.api import sample_posterior
from poisson_nmf.sampling.plan import plan_run_memory, seed_plan, settle_arguments


def _args(V, **over):
    sig = inspect.signature(sample_posterior)
    args = {k: p.default for k, p in sig.parameters.items() if p.default is not p.empty}
    return {**args, "V": V, "n_components": 2, **over}


def test_settled_defaults(small_counts):
    run = settle_arguments(_args(small_counts, draws=50, chains=3))
    assert (run.K, run.draws, run.tune, run.chains, run.rule) == (2, 50, 1000, 3, None)
    assert 1 <= run.cores <= 3 and run.map_kwargs == {} and run.nuts_kwargs == {}
    until = settle_arguments(_args(small_counts, max_draws=1500))  # draws=None: a rule
    assert until.rule is not None and until.draws == until.rule.max_draws == 1500


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"cores": 0}, "cores must be"),
        ({"pointwise_draws": -1}, "pointwise_draws must be"),
        ({"tune": 0}, "tune must be"),
        ({"normalize": "both"}, "normalize must be"),
        ({"sampler": "pymc"}, "draws=None .* needs sampler='nutpie'"),
    ],
)
def test_bad_settings_are_named(small_counts, over, match):
    with pytest.raises(ValueError, match=match):
        settle_arguments(_args(small_counts, **over))


def test_seeds_replay_and_memory_plan(small_counts):
    a, b = seed_plan(7, 3), seed_plan(7, 3)
    assert a.replay == 7 and a.chains == b.chains and len(a.chains) == 3
    assert a.map.random() == b.map.random()
    assert seed_plan(np.random.default_rng(0), 2).replay is None  # a Generator: no replay
    run, mem, entries = plan_run_memory(settle_arguments(_args(small_counts, draws=40)))
    assert entries is None and run.draws == 40
    assert mem.pointwise_draws == 40 * 4  # 4 chains x 40 draws, under the default 500


def test_numpy_integers_are_settled_to_ints():
    # settings from NumPy (np.arange grids) must reach the JSON attrs as plain ints
    args = {name: p.default for name, p in inspect.signature(sample_posterior).parameters.items()}
    args.update(V=np.eye(4, 5) + 1, n_components=np.int64(2), draws=np.int64(30),
                tune=np.int64(40), chains=np.int64(2), pointwise_draws=np.int64(10),
                keep=[np.int64(0), np.int64(1)])  # fmt: skip
    run = settle_arguments(args)
    for val in (run.draws, run.tune, run.chains, run.pointwise_draws, *run.keep):
        assert type(val) is int
    json.dumps([run.draws, run.tune, run.chains, run.pointwise_draws, run.keep])


def test_a_lowered_draw_budget_leaves_room_for_pointwise_draws():
    # all digits, K = 10, draw until clean at the default 4 GB: 4000 draws per chain do
    # not fit; the budget is lowered so that at least POINTWISE_FLOOR pointwise draws
    # (LOO, predictive checks) still fit, instead of squeezing them out (POINTWISE_FLOOR)
    from poisson_nmf import load_digits
    from poisson_nmf.memory import POINTWISE_FLOOR, MemoryBudgetWarning

    V = load_digits()
    V = V[:, V.sum("row") > 0]
    with pytest.warns(MemoryBudgetWarning) as rec:
        run, mem, _ = plan_run_memory(settle_arguments(_args(V, n_components=10)))
    said = [str(w.message) for w in rec]
    assert any("stops at 1560 draws per chain" in m for m in said)
    assert any(f"thinned to {POINTWISE_FLOOR} draws" in m for m in said)
    assert run.draws == run.rule.max_draws == 1560
    assert mem.pointwise_draws == POINTWISE_FLOOR and mem.total <= 4e9


def test_memory_is_planned_for_the_rounded_up_pointwise_draws(small_counts):
    # add_pointwise_groups keeps ceil(20 / 3) = 7 draws per chain: 21 are planned
    run = settle_arguments(_args(small_counts, draws=50, chains=3, pointwise_draws=20))
    assert plan_run_memory(run)[1].pointwise_draws == 21
    run = settle_arguments(_args(small_counts, draws=5, chains=3, pointwise_draws=20))
    assert plan_run_memory(run)[1].pointwise_draws == 15  # at most every draw


def test_one_chain_cannot_sample_until_clean(small_counts):
    # R-hat needs two chains, so the rule could never be met: refused before any work
    with pytest.raises(
        ValueError,
        match=r"^draws=None samples until R-hat and ESS are met, and R-hat needs at least 2 "
        r"chains: pass chains >= 2, or an explicit draws=N$",
    ):
        settle_arguments(_args(small_counts, chains=1))
    assert settle_arguments(_args(small_counts, chains=1, draws=10)).rule is None
