import json
import re

import pytest
import xarray as xr

import poisson_nmf as pnmf
from poisson_nmf.report import FIGURES
from tests._fits import digits_diagnosis, digits_fit, digits_report, short_fit

PAGES = ("index.html", "report.md", "diagnostics.json", "fit.nc")
# every figure but the MAP-versus-KL page, which needs a comparison, and the ELBO trace
# of a variational fit
EXPECTED_FIGURES = sorted(f for f in FIGURES if f not in ("map_vs_kl.png", "elbo.png"))


def test_report_folder_holds_every_file():
    out = digits_report()
    for name in PAGES:
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    pngs = sorted(p.name for p in (out / "figures").iterdir())
    assert pngs == EXPECTED_FIGURES
    for p in (out / "figures").iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", p.name


def test_html_names_no_remote_resource():
    text = (digits_report() / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"(?i)(https?|ftp):", text)
    assert not re.search(r"""(?i)(src|href)\s*=\s*["']?//""", text)
    srcs = re.findall(r"""(?i)\bsrc\s*=\s*["']([^"']*)""", text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert all(h.startswith("#") for h in re.findall(r"""(?i)\bhref\s*=\s*["']([^"']*)""", text))
    for tag in ("<script", "<link", "<iframe", "@import", "url("):
        assert tag not in text.lower()
    # every figure is embedded once, the same bytes as the PNG file
    assert len(srcs) == len(EXPECTED_FIGURES)


def test_markdown_has_the_same_content():
    out = digits_report()
    md = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "index.html").read_text(encoding="utf-8")
    d = digits_diagnosis()
    for reason in d.reasons:
        assert reason in md
        assert reason.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in html
    for fig in EXPECTED_FIGURES:
        assert f"(figures/{fig})" in md
    headings = re.findall(r"^## (.+)$", md, flags=re.M)
    assert headings == re.findall(r"<h2[^>]*>([^<]+)</h2>", html)


def test_diagnostics_json():
    info = json.loads((digits_report() / "diagnostics.json").read_text())
    d = digits_diagnosis()
    assert info["diagnosis"]["verdict"] == d.verdict
    assert info["settings"]["n_components"] == 3
    assert info["image_shape"] == [8, 8]
    assert info["figures"] == EXPECTED_FIGURES


def test_save_load_rerender_gives_the_same_numbers(tmp_path):
    first = digits_report()
    fit = pnmf.load_fit(first / "fit.nc")
    # nothing is recomputed from scratch differently: no image shape is passed here,
    # it comes back from the saved fit
    second = pnmf.write_report(fit, tmp_path / "again", save_fit=False)
    a = json.loads((first / "diagnostics.json").read_text())
    b = json.loads((second / "diagnostics.json").read_text())
    assert a["diagnosis"] == b["diagnosis"]
    assert a["settings"] == b["settings"]
    assert a["image_shape"] == b["image_shape"] == [8, 8]
    # the same page but for its title (the folder name)
    md_a = (first / "report.md").read_text().split("\n", 1)[1]
    md_b = (second / "report.md").read_text().split("\n", 1)[1]
    assert md_a == md_b


def _comparison(V, K):
    """A MAPvsKL from two KL-NMF runs: the page is tested, not the PyMC MAP (test_compare)."""
    from poisson_nmf import MAPResult, MAPvsKL

    a = pnmf.kl_nmf(V, K, random_seed=0, max_iter=300)
    b = pnmf.kl_nmf(V, K, random_seed=0, max_iter=80)  # converges in 52
    mp = MAPResult(W=b.W, H=b.H, objective=b.objective, logp=-b.objective, n_iter=b.n_iter,
                   converged=b.converged, history=b.history)  # fmt: skip
    return MAPvsKL(kl=a, map=mp, objective_gap=1.5e-3, kkt_kl_under_map=1e-5,
                   kkt_map_under_kl=2e-4, identity_error=1e-16, same_optimum=False,
                   w_agreement=0.01, h_agreement=0.02)  # fmt: skip


def test_comparison_page_and_heatmaps(tmp_path):
    cmp = _comparison(pnmf.load_digits()[:60], 3)
    # no image shape: heatmaps (one that fits neither side is refused, see below)
    out = pnmf.write_report(
        digits_fit(), tmp_path / "cmp", diagnosis=digits_diagnosis(), comparison=cmp
    )
    assert (out / "figures" / "map_vs_kl.png").is_file()
    md = (out / "report.md").read_text()
    assert "## MAP versus KL-NMF" in md
    assert "| objective gap after cross-polishing | 0.0015 |" in md
    assert "heatmaps" in md
    # the comparison travels with the saved fit, and is refused for other data
    fit = pnmf.load_fit(out / "fit.nc")
    assert fit["map_vs_kl"].attrs["objective_gap"] == 1.5e-3
    small = _comparison(pnmf.load_digits()[:10, :20], 2)
    with pytest.raises(ValueError, match="comparison is of a 10 x 20 matrix with K = 2"):
        pnmf.write_report(fit, tmp_path / "x", comparison=small)


def test_bad_arguments_write_nothing(tmp_path):
    idata = digits_fit()
    with pytest.raises(ValueError, match=r"image_shape \(3, 3\) holds 9 pixels, but V has 60"):
        pnmf.write_report(idata, tmp_path / "a", image_shape=(3, 3))
    with pytest.raises(TypeError, match="diagnosis must be a Diagnosis"):
        pnmf.write_report(idata, tmp_path / "b", diagnosis="ok")
    with pytest.raises(TypeError, match="idata must be an xarray.DataTree"):
        pnmf.write_report(xr.DataTree(), tmp_path / "c")
    assert not list(tmp_path.iterdir())


def test_a_one_chain_fit_gets_a_report_without_rank_plots(tmp_path):
    # chains=1 or select_chains down to one chain: nothing for rank plots to compare
    one = pnmf.select_chains(short_fit(), [0])
    folder = pnmf.write_report(one, tmp_path / "one")
    assert (folder / "index.html").exists()
    assert not (folder / "figures" / "rank_worst.png").exists()
    assert (folder / "figures" / "factors_W.png").exists()


def test_predictive_section_says_when_too_few_draws_judge_nothing():
    from poisson_nmf.report.content import ppc_section
    from tests.diagnostics.trees import hand_tree

    d = pnmf.diagnose(hand_tree(C=1, D=3, F=6, N=5, pointwise=True))
    text = [b.text for b in ppc_section(d, {}) if b.kind == "p"]
    assert text[0].startswith("From 3 predictive draws of all 30 observed counts")
    assert text[1] == (
        "The checks of these figures: not computed: 3 predictive draws, a central 90% "
        "interval needs at least 20 (pointwise_draws, draws); not computed: 3 predictive "
        "draws, a posterior predictive p-value needs at least 20 (pointwise_draws, draws)."
    )
    many = pnmf.diagnose(hand_tree(C=1, D=40, F=6, N=5, pointwise=True))
    assert len([b for b in ppc_section(many, {}) if b.kind == "p"]) == 1
