import json

import numpy as np
import pandas as pd
import pytest

import poisson_nmf as pnmf
from poisson_nmf.cli import main, parse_priors
from poisson_nmf.io import save_fit
from tests._fits import short_fit

TINY = ["--draws", "60", "--tune", "60", "--chains", "2", "--pointwise-draws", "30"]


def _one_line_error(capsys, *must_contain):
    cap = capsys.readouterr()
    assert cap.err.startswith("poisson-nmf: error: "), cap.err
    assert cap.err.count("\n") == 1, cap.err
    assert "Traceback" not in cap.err + cap.out
    for text in must_contain:
        assert text in cap.err, cap.err
    return cap.err


@pytest.fixture
def digits_csv(tmp_path):
    V = pnmf.load_digits()[:30]
    path = tmp_path / "digits30.csv"
    pd.DataFrame(V.values, index=[f"img{i}" for i in range(30)]).to_csv(path)
    return path


def test_demo_runs_the_main_job(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--rows", "40", "--components", "2", "--out", str(out), *TINY]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "40 x 64 counts" in text
    assert "the identity holds" in text
    assert "objective gap after cross-polishing" in text
    assert "verdict:" in text
    assert text.rstrip().splitlines()[-1] == f"report: {out / 'index.html'}"
    for name in ("index.html", "report.md", "diagnostics.json", "fit.nc"):
        assert (out / name).is_file()
    assert (out / "figures" / "map_vs_kl.png").is_file()
    assert (out / "figures" / "factors_H.png").is_file()
    info = json.loads((out / "diagnostics.json").read_text())
    assert info["image_shape"] == [8, 8]


def test_fit_writes_the_report(tmp_path, digits_csv, capsys):
    out = tmp_path / "fit"
    args = ["fit", str(digits_csv), "-k", "2", "--out", str(out), "--image-shape", "8x8", *TINY]
    args[-1] = "0"  # no pointwise groups: the demo test renders those figures
    assert main(args) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[0].startswith("verdict: ")
    assert lines[-1] == f"report: {out / 'index.html'}"
    fit = pnmf.load_fit(out / "fit.nc")
    assert list(fit["posterior"]["row"].values[:2]) == ["img0", "img1"]
    assert json.loads(fit.attrs["settings"])["draws"] == 60


def test_fit_stops_at_its_budget_and_resumes(tmp_path, digits_csv, capsys):
    # no --draws: draw until clean; 40 draws of 2 chains cannot reach ESS 400, so the
    # run stops at --max-draws, says how to go on, and --resume continues its chains
    base = ["fit", str(digits_csv), "-k", "2", "--tune", "60", "--chains", "2"]
    base += ["--pointwise-draws", "0"]
    first = tmp_path / "first"
    assert main([*base, "--max-draws", "40", "--out", str(first)]) == 0
    text = capsys.readouterr().out
    assert "--resume FIT --max-draws 80" in text
    stop = json.loads(pnmf.load_fit(first / "fit.nc").attrs["stopping"])
    assert (stop["reason"], stop["draws_per_chain"]) == ("max_draws", 40)
    more = tmp_path / "more"
    args = [*base, "--max-draws", "80", "--resume", str(first / "fit.nc"), "--out", str(more)]
    # options unlike the stored run's are refused, naming both (the same ones are fine)
    for extra, said in (
        (["--tune", "50"], "whose --tune is 60: drop --tune 50 or start a new run"),
        (["--seed", "3", "--priors", "2,2,2,2"],
         "whose --priors is 1,1,1,1, --seed is 0: drop --priors 2,2,2,2, --seed 3 or start"),
    ):  # fmt: skip
        assert main([*args, *extra]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]  # after the data's warning
        assert last.startswith("poisson-nmf: error: --resume continues the stored run, ")
        assert said in last and last.endswith("(without --resume)")
    # a budget not above the held draws is named by its option, not its Python name
    for extra, said in (
        (["--max-draws", "40"], "--max-draws (now 40)"),
        (["--max-draws", "80", "--draws", "30"], "--draws (now 30)"),
    ):
        assert main([*base, "--resume", str(first / "fit.nc"), "--out", str(more), *extra]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        held = "poisson-nmf: error: --resume holds 40 draws per chain: pass a larger"
        assert last == f"{held} {said} to continue it"
    assert not more.exists()
    assert main(args) == 0
    fit = pnmf.load_fit(more / "fit.nc")
    stop = json.loads(fit.attrs["stopping"])
    assert (stop["resumed_from"], stop["draws_per_chain"]) == (40, 80)
    old = pnmf.load_fit(first / "fit.nc")["posterior"]["H"].values
    np.testing.assert_array_equal(fit["posterior"]["H"].values[:, :40], old)


def test_report_rerenders_without_refitting(tmp_path, capsys):
    src = save_fit(short_fit(), tmp_path / "src" / "fit.nc")
    out = tmp_path / "again"
    assert main(["report", str(src), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out / 'index.html'}"
    assert (out / "fit.nc").read_bytes() == src.read_bytes()
    info = json.loads((out / "diagnostics.json").read_text())
    assert info["diagnosis"]["verdict"] == pnmf.diagnose(short_fit()).verdict == "fail"


def test_compare_prints_the_check(tmp_path, capsys):
    rng = np.random.default_rng(sum(map(ord, "test_compare_prints_the_check")))
    np.save(
        tmp_path / "V.npy", rng.poisson(rng.gamma(2.0, 2.0, (12, 2)) @ rng.gamma(2.0, 2.0, (2, 9)))
    )
    assert main(["compare", str(tmp_path / "V.npy"), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MAP versus KL: V is 12 x 9, K = 2, flat priors")
    assert "objective gap after cross-polishing" in out


def test_missing_file(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nope.csv"), "-k", "2"]) == 2
    _one_line_error(capsys, "does not exist")


def test_negative_counts(tmp_path, capsys):
    path = tmp_path / "neg.csv"
    pd.DataFrame([[1, 2], [3, -4]], index=["a", "b"], columns=["x", "y"]).to_csv(path)
    assert main(["fit", str(path), "-k", "1"]) == 2
    _one_line_error(capsys, "negative values", "row 'b', column 'y' (line 3 of the file)")
    assert main(["compare", str(path), "-k", "1"]) == 2
    _one_line_error(capsys, "negative values")


@pytest.mark.parametrize("k", ["0", "-3"])
def test_impossible_k(digits_csv, capsys, k):
    assert main(["fit", str(digits_csv), "--components", k]) == 2
    _one_line_error(capsys, "n_components must be a positive integer")


def test_k_not_a_number(digits_csv, capsys):
    assert main(["fit", str(digits_csv), "--components", "two"]) == 2
    _one_line_error(capsys, "--components must be a positive integer, got 'two'")
    assert main(["demo", "--draws", "0"]) == 2
    _one_line_error(capsys, "expected a positive integer, got 0")


def test_other_bad_input(tmp_path, digits_csv, capsys):
    frac = tmp_path / "frac.npy"
    np.save(frac, np.array([[1.5, 2.0], [0.0, 1.0]]))
    assert main(["fit", str(frac), "-k", "1"]) == 2
    _one_line_error(capsys, "non-integer")
    (tmp_path / "V.xlsx").write_text("x")
    assert main(["fit", str(tmp_path / "V.xlsx"), "-k", "1"]) == 2
    _one_line_error(capsys, "unknown extension")
    (tmp_path / "V.parquet").write_text("x")
    assert main(["fit", str(tmp_path / "V.parquet"), "-k", "1"]) == 2
    _one_line_error(capsys, "cannot read DATA file")
    assert main(["fit", str(digits_csv), "-k", "2", "--priors", "1,2"]) == 2
    _one_line_error(capsys, "--priors '1,2' is not understood")
    assert main(["fit", str(digits_csv), "-k", "2", "--priors", "flat"]) == 2
    _one_line_error(capsys, "improper posterior")
    assert main(["report", str(digits_csv), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "not a netCDF fit")
    assert main(["report", str(tmp_path / "none.nc"), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "does not exist")


def test_parse_priors():
    assert parse_priors(None) == pnmf.GammaPriors()
    assert parse_priors(None, default="flat") is None
    assert parse_priors("flat") is None
    assert parse_priors("2,3,4,5") == pnmf.GammaPriors(2.0, 3.0, 4.0, 5.0)
    assert parse_priors("w_shape=1.1, h_rate=0.5") == pnmf.GammaPriors(w_shape=1.1, h_rate=0.5)
    with pytest.raises(ValueError, match="not understood"):
        parse_priors("shape=2")
    with pytest.raises(ValueError, match="must be finite and > 0"):
        parse_priors("0,1,1,1")


def test_missing_cells_remedy_works_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "gaps.csv"
    rng = np.random.default_rng(sum(map(ord, "gaps")))
    V = pd.DataFrame(rng.poisson(4.0, (8, 5)), index=[f"g{i}" for i in range(8)],
                     columns=list("abcde")).astype(float)  # fmt: skip
    V.iloc[2, 3] = np.nan
    V.to_csv(path)
    assert main(["compare", str(path), "-k", "2"]) == 2
    _one_line_error(capsys, "row 'g2', column 'd' (line 4 of the file)", "--missing mask")
    assert main(["compare", str(path), "-k", "2", "--missing", "mask"]) == 0
    assert main(["compare", str(path), "-k", "2", "--transpose", "--missing", "mask"]) == 0
    dup = tmp_path / "dup.csv"
    dup.write_text("gene,s1,s2,s1\ng1,1,2,3\ng2,1,1,1\ng1,0,0,4\n")
    assert main(["compare", str(dup), "-k", "1"]) == 2
    _one_line_error(capsys, "duplicated row labels", "'g1'", "--sum-duplicates")


def test_vi_refuses_nuts_only_options(tmp_path, digits_csv, capsys):
    for extra in (["--max-draws", "600"], ["--resume", str(tmp_path / "fit.nc")]):
        args = ["fit", str(digits_csv), "-k", "2", "--method", "vi", *extra]
        assert main([*args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert f"poisson-nmf: error: {extra[0]}: only for --method nuts" in err
    assert not (tmp_path / "out").exists()


def test_os_errors_are_one_plain_line(tmp_path, digits_csv, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    args = ["rank", str(digits_csv), "-k", "1:2", "--folds", "2"]
    assert main([*args, "--out", str(tmp_path / "taken" / "sub")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("poisson-nmf: error: File exists: ")
    assert "Errno" not in last and "PosixPath" not in last


def test_one_chain_needs_draws(tmp_path, digits_csv, capsys):
    # without --draws the run samples until R-hat is met, which one chain never gives
    args = ["fit", str(digits_csv), "-k", "2", "--chains", "1", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (
        "poisson-nmf: error: without --draws the run samples until R-hat and ESS are met, "
        "and R-hat needs at least 2 chains: pass --chains 2 or more, or --draws N"
    )
    assert not (tmp_path / "o").exists()
