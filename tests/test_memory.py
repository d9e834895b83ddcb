import numpy as np
import pytest

import poisson_nmf as pnmf
from poisson_nmf.memory import (
    CHUNK_BYTES,
    MemoryBudgetWarning,
    format_bytes,
    parse_bytes,
    plan_memory,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4GB", 4 * 10**9), ("512MiB", 512 * 2**20), ("1.5 gb", 1_500_000_000), (2000, 2000),
     (None, None), ("none", None)],
)  # fmt: skip
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["4 parsecs", "-1GB", 0, True, "GB"])
def test_parse_bytes_refuses(bad):
    with pytest.raises(ValueError, match=r"max_memory must be a size such as '4GB'"):
        parse_bytes(bad)


# V 20 x 15 dense, K = 2, 2 chains x 100 draws: data 3 x 300 x 8 = 7200 bytes; posterior
# 4 copies x 2 x 100 x (20 + 15) x 2 x 8 = 448000; 40 bytes per entry and pointwise draw
SMALL = dict(chains=2, draws=100, n_observed=300, nnz=300, dense=True, pointwise_draws=200)
BASE = 7200 + 448000 + CHUNK_BYTES


def test_plan_counts_every_part():
    plan = plan_memory(20, 15, 2, max_memory=None, **SMALL)
    assert (plan.data, plan.posterior, plan.base) == (7200, 448000, BASE)
    assert plan.pointwise_per_draw == 40 * 300 and plan.pointwise_draws == 200
    assert plan.total == BASE + 200 * 12000


def test_plan_thins_then_leaves_out_then_refuses():
    plan = plan_memory(20, 15, 2, max_memory=BASE + 50 * 12000, **SMALL)
    assert plan.pointwise_draws == 50
    # 24 draws would fit, fewer than the 25 PSIS-LOO needs: left out
    assert plan_memory(20, 15, 2, max_memory=BASE + 24 * 12000, **SMALL).pointwise_draws == 0
    with pytest.raises(ValueError, match=r"needs about 67.6 MB before any pointwise group .*"
                       r"past max_memory = 60 MB: raise max_memory \(command line: "
                       r"--max-memory\), or lower draws"):  # fmt: skip
        plan_memory(20, 15, 2, max_memory="60MB", **SMALL)


def test_format_bytes():
    assert format_bytes(1.5e9) == "1.5 GB" and format_bytes(999) == "999 B"
    # three significant digits in the largest unit reached, never an exponent
    assert format_bytes(999_960_000) == "1 GB"  # was "1e+03 MB"
    assert format_bytes(5e12) == "5 TB"  # was "5e+03 GB"
    assert format_bytes(1234) == "1.23 kB" and format_bytes(0) == "0 B"
    assert format_bytes(512 * 2**20) == "537 MB"  # a budget given in MiB, said in MB


def test_sample_posterior_thins_pointwise_groups_to_the_budget():
    V = np.random.default_rng(3).poisson(4.0, (20, 15))
    want = r"of 200 draws would take 2.4 MB .* thinned to 50 draws\. Raise max_memory"
    with pytest.warns(MemoryBudgetWarning, match=want):
        idata = pnmf.sample_posterior(V, 2, draws=100, tune=100, chains=2, random_seed=0,
                                      pointwise_draws=200, max_memory=BASE + 600_000)  # fmt: skip
    ll = idata["log_likelihood"]["V"]
    assert ll.sizes["chain"] * ll.sizes["draw"] == 50


def test_sample_posterior_refuses_before_sampling():
    V = np.random.default_rng(3).poisson(4.0, (20, 15))
    with pytest.raises(ValueError, match=r"raise max_memory \(command line: --max-memory\)"):
        pnmf.sample_posterior(V, 2, draws=100, chains=2, max_memory="1MB")
