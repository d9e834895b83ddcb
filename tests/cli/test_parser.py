"""The argparse layer: every option reaches its command as a keyword."""

import inspect
import subprocess
import sys

import pytest

from poisson_nmf.cli import commands, main
from poisson_nmf.cli.parser import build_parser

ARGV = {
    "demo": ["demo"],
    "fit": ["fit", "data.csv", "-k", "3"],
    "compare": ["compare", "data.csv", "-k", "3"],
    "report": ["report", "fit.nc", "--out", "out"],
    "rank": ["rank", "data.csv", "-k", "2:4"],
}


@pytest.mark.parametrize("name", sorted(ARGV))
def test_options_are_the_keywords_of_the_command(name):
    options = vars(build_parser().parse_args(ARGV[name]))
    assert options.pop("command") == name
    params = inspect.signature(getattr(commands, name)).parameters
    # the same names both ways: an option the command does not take (or a keyword no
    # option fills) would fail only when that command runs
    assert set(options) == set(params)
    assert all(p.kind is p.KEYWORD_ONLY for p in params.values())


def test_parser_types():
    options = vars(
        build_parser().parse_args(["fit", "d.csv", "-k", "auto", "--image-shape", "8x8"])
    )
    assert options["components"] == "auto" and options["image_shape"] == (8, 8)
    options = vars(build_parser().parse_args(ARGV["rank"] + ["--folds", "3"]))
    assert options["folds"] == 3 and options["components"] == "2:4"


def test_help_for_each_command(capsys):
    for cmd in ("demo", "fit", "compare", "report"):
        assert main([cmd, "--help"]) == 0
        assert f"usage: poisson-nmf {cmd}" in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("demo", "fit", "compare", "report"))


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "poisson_nmf", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in out.stdout
