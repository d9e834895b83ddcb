"""sample_posterior end to end: layout, reproducibility, progress, arguments."""

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from poisson_nmf.progress import SamplingProgress, interactive
from poisson_nmf.sampling.api import posterior_summary, sample_posterior
from tests.sampling.conftest import SMALL


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
    # float32 draws (as VI stores them) are summarised in float64
    single = small_tree.copy()
    single["posterior"] = small_tree["posterior"].to_dataset().astype(np.float32)
    df32 = posterior_summary(single)
    assert (df32[["mean", "sd", "lower", "upper"]].dtypes == np.float64).all()


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

    path = Path(__file__).parents[2] / "benchmarks" / "posterior.py"
    proc = subprocess.run(
        [sys.executable, str(path), "--quick"], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.rstrip().splitlines()
    assert "failed" not in proc.stdout
    assert lines[-1].strip().startswith("tiny: vs nutpie_map:")
    assert any(line.startswith("min_ess_per_s") for line in lines)


def test_pymc_sampler_is_quiet_without_progress(small_counts, capsys, caplog):
    # progress=False: nothing of PyMC's own logging (its sampler choice, its timing)
    import logging

    with caplog.at_level(logging.INFO):
        tree = sample_posterior(small_counts, 2, random_seed=1, draws=10, tune=10, chains=1,
                                cores=1, sampler="pymc", progress=False,
                                pointwise_draws=0)  # fmt: skip
    assert tree["posterior"].sizes["draw"] == 10
    assert not [r for r in caplog.records if r.name.startswith("pymc")]
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
