"""The warm-up: its schedule (a pure function), learning the long directions."""

import json

import numpy as np
import pytest

from poisson_nmf.sampling.api import sample_posterior
from poisson_nmf.sampling.coordinates import Coords
from poisson_nmf.sampling.warmup import (
    Stage,
    learn_long_directions,
    top_right_singular,
    warmup_schedule,
)
from tests.conftest import named_rng


def test_learn_long_directions_finds_a_planted_direction():
    """Warm-up draws with one direction 40 times the variance of the others: the
    learned map finds it (and its variance), and white noise alone gives rank 0."""
    rng = named_rng("test_learn_long_directions")
    n, m = 300, 800
    base = Coords(10, 20, np.ones(10), np.ones(n), np.zeros((n, 0)), np.zeros(0))
    u = rng.standard_normal(n)
    u /= np.linalg.norm(u)
    sd = rng.uniform(0.5, 2.0, n)
    draws = rng.standard_normal((m, n)) + np.sqrt(40.0 - 1.0) * rng.standard_normal((m, 1)) * u
    learned = learn_long_directions(base, [draws[: m // 2] * sd, draws[m // 2 :] * sd])
    assert learned.c.size == 1
    assert abs(float(learned.U[:, 0] @ u)) > 0.9

    # in the learned coordinates the draws are white: their largest sample variance is
    # back at the noise level (Marchenko-Pastur edge (1 + sqrt(n / m))^2 = 2.6; 30 before)
    def top_variance(y):
        return float(np.linalg.svd(y - y.mean(axis=0), compute_uv=False)[0] ** 2 / m)

    x = draws * sd
    assert top_variance(x / x.std(axis=0)) > 25.0
    assert top_variance(learned.to_y(x)) < 1.3 * (1 + np.sqrt(n / m)) ** 2
    noise = learn_long_directions(base, [rng.standard_normal((m, n))])
    assert noise.c.size == 0


@pytest.mark.parametrize("shape", [(40, 120), (120, 40)])
def test_top_right_singular_matches_svd(shape):
    """The Gram-matrix shortcut gives NumPy's leading singular values and vectors (up
    to sign), whichever side of A is shorter."""
    rng = named_rng("test_top_right_singular")
    A = rng.standard_normal(shape) * np.linspace(1.0, 4.0, shape[1])
    ev, Vt = top_right_singular(A, 7)
    _, s, vt = np.linalg.svd(A, full_matrices=False)
    np.testing.assert_allclose(ev, s[:7] ** 2, rtol=1e-10)
    # distinct singular values: each vector is determined up to its sign
    np.testing.assert_allclose(np.abs(np.sum(Vt * vt[:7], axis=1)), 1.0, rtol=1e-8)
    assert top_right_singular(A, 0)[1].shape == (0, shape[1])


def test_two_stage_warmup_is_reproducible_and_reported(small_counts):
    """tune >= 300 learns long directions in a first warm-up stage; the run stays
    reproducible with a seed (also with three chains on two cores) and says what it
    learned."""
    kw = {"draws": 40, "tune": 300, "chains": 3, "cores": 2, "random_seed": 5}
    tree = sample_posterior(small_counts, 2, **kw)
    info = json.loads(tree.attrs["sampler"])
    assert info["warmup_stage1"] == {"tune": 75, "draws": 150}
    assert 0 <= info["long_directions"] <= 32 and len(info["ridge_beta"]) == 2
    assert tree["posterior"].sizes["draw"] == 40
    # a progress callable sees both stages add up to every iteration, and changes nothing
    lines: list[str] = []
    again = sample_posterior(small_counts, 2, progress=lines.append, **kw)
    np.testing.assert_array_equal(again["posterior"]["W"].values, tree["posterior"]["W"].values)
    n_div = int(tree["sample_stats"]["diverging"].sum())
    done = [int(line.split()[1].split("/")[0]) for line in lines if line.startswith("sampling")]
    assert done == sorted(done) and done[-1] == 3 * 340
    assert lines[:2] == [
        "loading the compiled sampler (compiling it on the first run)",
        "MAP starting point",
    ]
    assert f"sampling 1020/1020 iterations, {n_div} divergence" in lines[-4]
    assert lines[-3:] == [
        "aligning the draws",
        "pointwise log-likelihood and predictive draws",
        "checking the chains' modes",
    ]


@pytest.mark.parametrize(
    ("tune", "stages"),
    [
        (0, [(0, 0, False)]),
        (1, [(1, 0, False)]),
        (299, [(299, 0, False)]),  # below LEARN_MIN_TUNE: one plain stage
        (300, [(75, 150, True), (75, 0, False)]),
        (301, [(75, 150, True), (76, 0, False)]),
        (1000, [(250, 500, True), (250, 0, False)]),
        (1003, [(250, 501, True), (252, 0, False)]),
    ],
)
def test_warmup_schedule_table(tune, stages):
    got = warmup_schedule(tune)
    assert got == [Stage(t, d, learns) for t, d, learns in stages]
    assert sum(s.tune + s.draws for s in got) == tune  # every iteration accounted for
    assert got[-1].draws == 0 and not got[-1].learns  # the kept draws follow the last


def test_warmup_schedule_refuses_negative_tune():
    with pytest.raises(ValueError, match="tune"):
        warmup_schedule(-1)
