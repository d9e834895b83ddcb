"""Rendering blocks as Markdown and HTML, and the number formatting (milliseconds each)."""

import json
import math

import numpy as np
import pytest

from poisson_nmf.report.content import Block, claim_sentence
from poisson_nmf.report.formatting import fmt_int, fmt_num, json_ready
from poisson_nmf.report.render import to_html, to_markdown

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 8  # a file's bytes, embedded as they are


def _page() -> list[Block]:
    return [
        Block("h1", "A & B"),
        Block("verdict", "warn", items=["p = 0.01 < 0.025"]),
        Block("toc", links=[("run", "The run"), ("loo", "PSIS-LOO")]),
        Block("h2", "The run", anchor="run"),
        Block("p", "Re-render with `poisson-nmf report`."),
        Block(
            "table",
            header=["check", "value", "status"],
            rows=[["R-hat | max", "1.02", "FAIL"], ["ESS", "900", "pass"]],
        ),  # fmt: skip
        Block("fig", "x.png", items=["A caption."]),
    ]


def test_markdown():
    md = to_markdown(_page())
    assert md.startswith("# A & B\n\n**Verdict: WARN: the draws can be used")
    assert "- p = 0.01 < 0.025" in md
    assert "[The run](#run) · [PSIS-LOO](#loo)" in md  # the (anchor, title) pairs
    assert "| R-hat \\| max | 1.02 | FAIL |" in md  # a pipe inside a cell is escaped
    assert "![x.png](figures/x.png)\n\n*A caption.*" in md
    assert md.endswith("\n")


def test_html(tmp_path):
    (tmp_path / "x.png").write_bytes(PNG)
    page = to_html(_page(), tmp_path)
    assert "<title>A &amp; B</title>" in page
    assert '<div class="verdict warn">' in page and "<li>p = 0.01 &lt; 0.025</li>" in page
    assert '<nav><a href="#run">The run</a><a href="#loo">PSIS-LOO</a></nav>' in page
    assert '<h2 id="run">The run</h2>' in page
    assert "<code>poisson-nmf report</code>" in page
    assert '<tr class="fail"><td>R-hat | max</td><td class="num">1.02</td>' in page
    assert "<tr><td>ESS</td>" in page  # a passing row is not coloured
    assert 'src="data:image/png;base64,iVBORw0KGgo' in page
    assert "<figcaption>A caption.</figcaption>" in page


@pytest.mark.parametrize(
    "x, text",
    [(None, "n/a"), (math.nan, "n/a"), (math.inf, "n/a"), (True, "yes"), (np.bool_(False), "no"),
     (3, "3"), (np.int64(12), "12"), (2.0, "2"), (1.0123456, "1.012"), (1e-5, "1e-05"),
     (np.float32(0.5), "0.5")],
)  # fmt: skip
def test_fmt_num(x, text):
    assert fmt_num(x) == text


def test_fmt_num_digits_and_fmt_int():
    assert fmt_num(1234.5678, 6) == "1234.57"
    assert fmt_int(812.6) == "813" and fmt_int(math.nan) == "n/a" and fmt_int(None) == "n/a"


def test_json_ready():
    x = {1: (np.float64(1.5), np.int32(2)), "a": [math.nan, math.inf, "s", None]}
    out = json_ready(x)
    assert out == {"1": [1.5, 2], "a": [None, None, "s", None]}
    assert type(out["1"][1]) is int
    json.dumps(out, allow_nan=False)  # strict JSON


def test_claim_sentence():
    a = {"objective_gap": 1e-9, "same_optimum": True, "map_objective": 1.0, "kl_objective": 1.0}
    assert claim_sentence(a) == (
        "Both fits reached the same optimum. Each solution stays put under the other method "
        "(gap 1e-09 <= 1e-6): the claim holds here."
    )
    b = a | {"objective_gap": 1e-3, "same_optimum": False, "map_objective": 5.0}
    text = claim_sentence(b)
    assert "KL-NMF lower by 4" in text and "the claim is not confirmed" in text
