import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import poisson_nmf as pnmf
from poisson_nmf.data import as_counts
from poisson_nmf.model import build_model
from poisson_nmf.progress import SamplingProgress, interactive
from poisson_nmf.sample import (
    MultipleModesWarning,
    _Density,
    detect_modes,
    log_density,
    posterior_summary,
    sample_posterior,
    select_chains,
)
from tests.conftest import named_rng

SMALL = {"draws": 60, "tune": 60, "chains": 2}


@pytest.fixture(scope="module")
def small_counts():
    rng = named_rng("small_counts")
    W = rng.gamma(1.0, 1.0, (30, 2)) + 0.1
    H = rng.gamma(1.0, 3.0, (2, 12)) + 0.1
    return rng.poisson(W @ H)


@pytest.fixture(scope="module")
def small_tree(small_counts):
    return sample_posterior(small_counts, 2, random_seed=7, **SMALL)


@pytest.mark.parametrize("dense", [True, False], ids=["dense-kernel", "sparse-kernel"])
@pytest.mark.parametrize(
    ("priors", "masked"),
    [
        (pnmf.GammaPriors(), False),
        (pnmf.GammaPriors(w_shape=0.7, w_rate=[1.0, 2.0], h_shape=2.0, h_rate=0.5), False),
        (pnmf.GammaPriors(w_shape=1.5), True),
    ],
)
def test_log_density_equals_pymc(small_counts, priors, masked, dense):
    rng = named_rng("test_log_density_equals_pymc")
    mask = rng.random(small_counts.shape) < 0.2 if masked else None
    dens = _Density.build(as_counts(small_counts, mask=mask), 2, priors, dense=dense)
    assert dens.dense is dense
    model = build_model(small_counts, 2, priors=priors, mask=mask, likelihood="dense")
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    for _ in range(3):
        x = rng.normal(0.0, 1.0, dens.n_dim)
        point = {"W_log__": x[:60].reshape(30, 2), "H_log__": x[60:].reshape(2, 12)}
        g = np.empty(dens.n_dim)
        assert dens(x, g) == pytest.approx(float(logp(point)), rel=1e-9)
        np.testing.assert_allclose(g, dlogp(point), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("masked", [False, True], ids=["all-observed", "masked"])
def test_single_precision_kernel_is_close_to_double(small_counts, masked):
    """The sampler's float32 dense kernel against the float64 one. The differences are
    rounding: float32 rates carry about 6e-8 relative error, so the log density (a sum
    of v log rate - rate) moves by about 1e-8 relative and the gradient by about 1e-6
    of its largest entry; the bounds leave a factor 10 (deterministic, not random)."""
    rng = named_rng("test_single_precision_kernel")
    mask = rng.random(small_counts.shape) < 0.2 if masked else None
    dens = _Density.build(as_counts(small_counts, mask=mask), 2, pnmf.GammaPriors(), dense=True)
    assert dens.can_single and dens.Vs.dtype == np.float32
    for _ in range(3):
        x = rng.normal(0.0, 1.0, dens.n_dim)
        g64, g32 = np.empty(dens.n_dim), np.empty(dens.n_dim)
        lp64, lp32 = dens(x, g64), dens(x, g32, single=True)
        assert lp32 == pytest.approx(lp64, rel=1e-7)
        assert lp32 != lp64  # the float32 kernel did run
        assert np.max(np.abs(g32 - g64)) <= 1e-5 * np.max(np.abs(g64))
    sparse = _Density.build(as_counts(small_counts), 2, pnmf.GammaPriors(), dense=False)
    with pytest.raises(ValueError, match="float32"):
        sparse(np.zeros(sparse.n_dim), single=True)


def test_sampler_coordinates_and_callback(small_counts):
    """The sampler's coordinates y, x = L (scale * (M y)): the map inverts, and the C
    callbacks that nutpie calls (data passed as addresses) return x (expand) and the
    density of x with its gradient carried to y, M (scale * (L grad_x))."""
    import ctypes

    from poisson_nmf.sample import (
        _compile_nutpie,
        _Coords,
        _lowrank_map,
        _ridge_map,
        _ridge_stretch,
    )

    rng = named_rng("test_sampler_coordinates_and_callback")
    dens = log_density(small_counts, 2, mask=rng.random(small_counts.shape) < 0.1)
    F, N, K = dens.F, dens.N, dens.K
    x = rng.normal(0.0, 1.0, dens.n_dim)
    beta, scale = _ridge_stretch(dens, x)
    assert beta.shape == (K,) and np.all(beta >= 1.0)
    assert scale.shape == x.shape and np.all(scale > 0)
    U = np.linalg.qr(rng.standard_normal((dens.n_dim, 3)))[0]
    coords = _Coords(F, N, beta, scale, np.ascontiguousarray(U), np.array([0.5, 2.0, -0.3]))
    y = coords.to_y(x)
    dptr = ctypes.POINTER(ctypes.c_double)
    model = _compile_nutpie(dens, y, coords)
    ud = model.user_data.ctypes.data
    expand = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint64, dptr, dptr,
                              ctypes.c_void_p)(model.compiled_expand_func.address)  # fmt: skip
    back = np.empty_like(x)
    assert expand(y.size, y.size, y.ctypes.data_as(dptr), back.ctypes.data_as(dptr), ud) == 0
    np.testing.assert_allclose(back, x, rtol=1e-10, atol=1e-10)
    fn = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, *(3 * [dptr]), ctypes.c_void_p)(
        model.compiled_logp_func.address
    )
    grad_y = np.empty_like(y)
    lp = np.zeros(1)
    rc = fn(y.size, y.ctypes.data_as(dptr), grad_y.ctypes.data_as(dptr),
            lp.ctypes.data_as(dptr), ud)  # fmt: skip
    assert rc == 0
    grad_x = np.empty_like(x)
    assert lp[0] == pytest.approx(dens(x, grad_x), rel=1e-12)
    t = np.empty_like(x)
    _ridge_map(grad_x, F, N, K, beta - 1.0, scale, False, t)
    expected = np.empty_like(x)
    _lowrank_map(t, np.ascontiguousarray(coords.U.T), coords.c, expected)
    np.testing.assert_allclose(grad_y, expected, rtol=1e-9, atol=1e-9)
    # WH is unchanged along a ridge e_k, which y crosses beta_k times slower than x
    e = np.zeros_like(x)
    e[np.arange(F) * K] = 1.0
    e[F * K : F * K + N] = -1.0
    t0 = np.empty_like(x)
    _ridge_map(e, F, N, K, 1.0 / beta - 1.0, np.ones_like(e), True, t0)
    np.testing.assert_allclose(t0, e / beta[0], rtol=1e-12)


def test_learn_long_directions_finds_a_planted_direction():
    """Warm-up draws with one direction 40 times the variance of the others: the
    learned map finds it (and its variance), and white noise alone gives rank 0."""
    from poisson_nmf.sample import _Coords, _learn_long_directions

    rng = named_rng("test_learn_long_directions")
    n, m = 300, 800
    base = _Coords(10, 20, np.ones(10), np.ones(n), np.zeros((n, 0)), np.zeros(0))
    u = rng.standard_normal(n)
    u /= np.linalg.norm(u)
    sd = rng.uniform(0.5, 2.0, n)
    draws = rng.standard_normal((m, n)) + np.sqrt(40.0 - 1.0) * rng.standard_normal((m, 1)) * u
    learned = _learn_long_directions(base, [draws[: m // 2] * sd, draws[m // 2 :] * sd])
    assert learned.c.size == 1
    assert abs(float(learned.U[:, 0] @ u)) > 0.9

    # in the learned coordinates the draws are white: their largest sample variance is
    # back at the noise level (Marchenko-Pastur edge (1 + sqrt(n / m))^2 = 2.6; 30 before)
    def top_variance(y):
        return float(np.linalg.svd(y - y.mean(axis=0), compute_uv=False)[0] ** 2 / m)

    x = draws * sd
    assert top_variance(x / x.std(axis=0)) > 25.0
    assert top_variance(learned.to_y(x)) < 1.3 * (1 + np.sqrt(n / m)) ** 2
    noise = _learn_long_directions(base, [rng.standard_normal((m, n))])
    assert noise.c.size == 0


@pytest.mark.parametrize("shape", [(40, 120), (120, 40)])
def test_top_right_singular_matches_svd(shape):
    """The Gram-matrix shortcut gives NumPy's leading singular values and vectors (up
    to sign), whichever side of A is shorter."""
    from poisson_nmf.sample import _top_right_singular

    rng = named_rng("test_top_right_singular")
    A = rng.standard_normal(shape) * np.linspace(1.0, 4.0, shape[1])
    ev, Vt = _top_right_singular(A, 7)
    _, s, vt = np.linalg.svd(A, full_matrices=False)
    np.testing.assert_allclose(ev, s[:7] ** 2, rtol=1e-10)
    # distinct singular values: each vector is determined up to its sign
    np.testing.assert_allclose(np.abs(np.sum(Vt * vt[:7], axis=1)), 1.0, rtol=1e-8)
    assert _top_right_singular(A, 0)[1].shape == (0, shape[1])


def test_layout_and_normalisation(small_counts, small_tree):
    tree = small_tree
    for group in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive",
                  "observed_data", "reference"):  # fmt: skip
        assert group in tree.children
    post = tree["posterior"]
    assert post["W"].dims == ("chain", "draw", "row", "component")
    assert post["H"].dims == ("chain", "draw", "component", "column")
    assert post["W"].shape == (2, 60, 30, 2)
    np.testing.assert_allclose(post["W"].sum("row").values, 1.0)
    assert tree["log_likelihood"]["V"].dtype == np.float32
    assert tree["log_likelihood"]["V"].dims == ("chain", "draw", "row", "column")
    assert tree["posterior_predictive"]["V"].shape == (2, 60, 30, 12)
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    settings = json.loads(tree.attrs["settings"])
    assert settings["random_seed"] == 7 and settings["draws"] == 60
    assert json.loads(tree.attrs["modes"])["n_modes"] == 1


def test_pointwise_log_likelihood_is_poisson(small_counts, small_tree):
    from scipy.stats import poisson

    post = small_tree["posterior"]
    W = post["W"].values[1, 5]
    H = post["H"].values[1, 5]
    ll = small_tree["log_likelihood"]["V"].sel(chain=1, draw=5).values
    np.testing.assert_allclose(ll, poisson.logpmf(small_counts, W @ H), rtol=1e-5)
    # the total comes from the sampler's own log density: with the default float32
    # kernel it carries float32 rounding (measured 2e-7 relative here), in float64 none
    assert json.loads(small_tree.attrs["sampler"])["kernel"] == "float32"
    total = small_tree["sample_stats"]["log_likelihood"].values[1, 5]
    assert total == pytest.approx(float(poisson.logpmf(small_counts, W @ H).sum()), rel=2e-6)
    double = sample_posterior(small_counts, 2, random_seed=7, precision="double",
                              draws=20, tune=20, chains=1)  # fmt: skip
    assert json.loads(double.attrs["sampler"])["kernel"] == "float64"
    Wd, Hd = double["posterior"]["W"].values[0, 3], double["posterior"]["H"].values[0, 3]
    total = double["sample_stats"]["log_likelihood"].values[0, 3]
    assert total == pytest.approx(float(poisson.logpmf(small_counts, Wd @ Hd).sum()), rel=1e-9)


def test_reproducible_with_seed(small_counts, small_tree):
    again = sample_posterior(small_counts, 2, random_seed=7, **SMALL)
    for group, var in (("posterior", "W"), ("posterior", "H"), ("posterior_predictive", "V")):
        np.testing.assert_array_equal(again[group][var].values, small_tree[group][var].values)
    other = sample_posterior(small_counts, 2, random_seed=8, **SMALL)
    assert not np.array_equal(other["posterior"]["W"].values, small_tree["posterior"]["W"].values)


_SUBPROCESS_RUN = """
import sys, numpy as np
from poisson_nmf import sample_posterior
V = np.load(sys.argv[1])
tree = sample_posterior(V, 2, random_seed=7, draws=40, tune=300, chains=2, pointwise_draws=0)
np.save(sys.argv[2], tree["posterior"]["W"].values)
"""


def test_reproducible_across_processes(small_counts, tmp_path):
    """Equal seeds give equal draws in another process too (two-stage warm-up).

    The sampler runs its compiled code as Numba cached it, never as compiled in the
    running process, which may differ in the last bits (see
    ``poisson_nmf.sample.precompile``). Should this process have compiled the callbacks
    itself all the same (a cache directory it cannot write), the draws of two fresh
    processes are compared instead.
    """
    import subprocess

    from poisson_nmf.sample import _callbacks

    np.save(tmp_path / "V.npy", small_counts)

    def run(name: str) -> np.ndarray:
        out = tmp_path / f"{name}.npy"
        subprocess.run(
            [sys.executable, "-c", _SUBPROCESS_RUN, str(tmp_path / "V.npy"), str(out)],
            check=True,
            timeout=600,
        )
        return np.load(out)

    other = run("other")
    if _callbacks()[0].cache_hits:
        here = sample_posterior(
            small_counts, 2, random_seed=7, draws=40, tune=300, chains=2, pointwise_draws=0
        )["posterior"]["W"].values
    else:
        here = run("again")
    np.testing.assert_array_equal(here, other)


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


def test_progress_bar_and_divergence_count(small_counts, capsys):
    sample_posterior(small_counts, 2, random_seed=1, progress=True, **SMALL)
    err = capsys.readouterr().err
    assert "sampling" in err and "240/240" in err and "checking the chains' modes" in err
    sample_posterior(small_counts, 2, random_seed=1, progress=False, **SMALL)
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="progress"):
        SamplingProgress("yes", 2, 10)  # type: ignore[arg-type]
    # nutpie's reports: divergences count only after the run's tuning steps
    lines: list[str] = []
    prog = SamplingProgress(lines.append, 2, 100)
    report = SimpleNamespace(finished_draws=70, divergent_draws=[3, 41, 65, 69])
    prog.nutpie_callback(1, 20, 50)([report])
    assert (prog.done, prog.divergences) == (90, 2)
    prog.nutpie_callback(0, 0, -1)([report])  # a warm-up stage: no divergences counted
    assert (prog.done, prog.divergences) == (160, 2)
    assert lines[-1] == "sampling 160/200 iterations, 2 divergences"


def test_progress_shows_on_terminals_and_notebooks_only(monkeypatch):
    import io

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not interactive() and not SamplingProgress(None, 2, 10).active
    kernel_stream = type("OutStream", (io.StringIO,), {"__module__": "ipykernel.iostream"})
    monkeypatch.setattr(sys, "stderr", kernel_stream())
    assert interactive() and SamplingProgress(None, 2, 10).shows_bar


def test_thinned_pointwise_and_normalize_h(small_counts):
    tree = sample_posterior(
        small_counts, 2, random_seed=3, pointwise_draws=10, normalize="H", **SMALL
    )
    assert tree["log_likelihood"]["V"].sizes["draw"] == 5
    np.testing.assert_allclose(tree["posterior"]["H"].sum("column").values, 1.0)
    none = sample_posterior(small_counts, 2, random_seed=3, pointwise_draws=0, **SMALL)
    assert "log_likelihood" not in none.children


def test_summary_table(small_tree):
    df = posterior_summary(small_tree)
    assert len(df) == 30 * 2 + 2 * 12
    assert {"variable", "row", "component", "column", "mean", "lower", "upper", "r_hat",
            "ess_bulk", "ess_tail"} <= set(df.columns)  # fmt: skip
    assert (df["lower"] <= df["mean"]).all() and (df["mean"] <= df["upper"]).all()
    w00 = df[(df.variable == "W") & (df.row == 0) & (df.component == 0)]["mean"].item()
    assert w00 == pytest.approx(float(small_tree["posterior"]["W"][:, :, 0, 0].mean()))


def _three_blocks():
    """Block-diagonal counts with 3 equal blocks and K = 2: which two blocks share a
    component is a discrete choice, so there are 3 well separated local modes."""
    rng = named_rng("three_blocks")
    F, N = 4, 3
    V = np.zeros((3 * F, 3 * N), dtype=np.int64)
    for b in range(3):
        V[b * F : (b + 1) * F, b * N : (b + 1) * N] = rng.poisson(20.0, (F, N))

    def mode(alone):
        W = np.full((3 * F, 2), 1e-3)
        H = np.full((2, 3 * N), 1e-3)
        for b in range(3):
            k = 0 if b == alone else 1
            W[b * F : (b + 1) * F, k] = 4.0
            H[k, b * N : (b + 1) * N] = 5.0
        return W, H

    return V, mode


def test_chains_in_different_modes_are_detected():
    V, mode = _three_blocks()
    init = [mode(0), mode(0), mode(1), mode(1)]
    with pytest.warns(MultipleModesWarning, match="2 modes"):
        tree = sample_posterior(V, 2, draws=60, tune=60, chains=4, init=init, random_seed=1)
    report = json.loads(tree.attrs["modes"])
    assert report["n_modes"] == 2
    assert report["labels"][0] == report["labels"][1] != report["labels"][2] == report["labels"][3]
    again = detect_modes(tree)
    assert again.labels == report["labels"]
    kept = select_chains(tree, again.main_chains)
    assert kept["posterior"].sizes["chain"] == 2
    assert json.loads(kept.attrs["kept_chains"]) == again.main_chains
    with pytest.warns(MultipleModesWarning):
        main = sample_posterior(
            V, 2, draws=60, tune=60, chains=4, init=init, random_seed=1, keep="main"
        )
    assert main["posterior"].sizes["chain"] == 2


def test_one_mode_from_one_start_is_not_flagged():
    V, mode = _three_blocks()
    tree = sample_posterior(V, 2, draws=60, tune=60, chains=2, init=[mode(0)] * 2, random_seed=2)
    assert json.loads(tree.attrs["modes"])["n_modes"] == 1


def test_bad_arguments(small_counts):
    with pytest.raises(ValueError, match="improper"):
        sample_posterior(small_counts, 2, priors=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="init has 1"):
        sample_posterior(small_counts, 2, chains=2, init=[(np.ones((30, 2)), np.ones((2, 12)))])
    with pytest.raises(ValueError, match="sampler must be"):
        sample_posterior(small_counts, 2, sampler="stan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="draws must be"):
        sample_posterior(small_counts, 2, draws=0)
    with pytest.raises(ValueError, match="precision must be"):
        sample_posterior(small_counts, 2, precision="half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keep must be"):
        sample_posterior(small_counts, 2, keep="mian")  # type: ignore[arg-type]


@pytest.mark.slow
def test_pymc_sampler_agrees(small_counts):
    a = sample_posterior(small_counts, 2, random_seed=1, draws=300, tune=300, chains=2)
    b = sample_posterior(
        small_counts, 2, random_seed=1, draws=300, tune=300, chains=2, sampler="pymc"
    )
    for v in ("W", "H"):
        ma, mb = (
            a["posterior"][v].mean(("chain", "draw")),
            b["posterior"][v].mean(("chain", "draw")),
        )
        sd = a["posterior"][v].std(("chain", "draw"))
        assert float((abs(ma - mb) / sd).max()) < 0.5


@pytest.mark.slow
def test_posterior_benchmark_runs_quick():
    """benchmarks/posterior.py end to end on its tiny case: every method gives a row
    and the ratios come last."""
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "posterior.py"
    proc = subprocess.run(
        [sys.executable, str(path), "--quick"], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.rstrip().splitlines()
    assert "failed" not in proc.stdout
    assert lines[-1].strip().startswith("tiny: vs nutpie_map:")
    assert any(line.startswith("min_ess_per_s") for line in lines)


def test_pointwise_predictive_never_wraps():
    # counts near 3e9 (past int32, within 2**53): the predictive draws are stored as int64
    from poisson_nmf.sample import _pointwise

    V = np.array([[3_000_000_000, 5], [7, 2_500_000_000]])
    counts = pnmf.as_counts(V)
    W = np.broadcast_to(np.eye(2), (1, 4, 2, 2)).copy()
    H = np.broadcast_to(V.astype(float), (1, 4, 2, 2)).copy()
    ll, pp = _pointwise(counts, W, H, np.arange(4), np.random.default_rng(0), chunk=2)
    assert pp.dtype == np.int64
    # Poisson(3e9) draws lie within 10 sd (5.5e5) of the rate; a wrap would be negative
    np.testing.assert_allclose(pp[0, :, 0], 3e9, atol=6e5)
    assert (pp[0, :, 1] < 100).all()
    small = np.array([[3, 5], [7, 2]])
    Hs = np.broadcast_to(small.astype(float), (1, 4, 2, 2)).copy()
    _, pp3 = _pointwise(pnmf.as_counts(small), W, Hs, np.arange(4), np.random.default_rng(0))
    assert pp3.dtype == np.int32  # small counts keep the compact dtype
