import subprocess
import sys

from poisson_nmf.cli import main


def test_demo_prints_the_identity(capsys):
    assert main(["demo", "--components", "3"]) == 0
    out = capsys.readouterr().out
    assert "1797 x 64 counts" in out
    assert "the identity holds" in out


def test_bad_components_is_a_one_line_error(capsys):
    assert main(["demo", "--components", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("poisson-nmf: error: n_components must be a positive integer")
    assert err.count("\n") == 1


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "poisson_nmf", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in out.stdout
