"""The package as a whole: a light import, and the public API shown unchanged."""

import subprocess
import sys

import poisson_nmf as pnmf

# The public API contract (shared/DESIGN.md plus what the README documents). A name
# added here is a decision; a name removed breaks users.
PUBLIC_API = {
    "AlignResult",
    "ConvergenceWarning",
    "Counts",
    "Diagnosis",
    "FitFormatError",
    "GammaPriors",
    "KLResult",
    "MAPResult",
    "MAPvsKL",
    "ModeReport",
    "MultipleModesWarning",
    "PoissonNMF",
    "RankSelection",
    "SBCResult",
    "TrappedZerosWarning",
    "ZeroRowsColumnsWarning",
    "__version__",
    "align_factors",
    "as_counts",
    "build_model",
    "check_n_components",
    "compare_map_kl",
    "completion_score",
    "detect_modes",
    "diagnose",
    "fit_loadings",
    "fit_map",
    "initial_factors",
    "invariant_quantities",
    "kkt_residual",
    "kl_divergence",
    "kl_nmf",
    "load_digits",
    "load_fit",
    "log_density",
    "loglik_constant",
    "match_components",
    "normalize_factors",
    "poisson_loglik",
    "posterior_summary",
    "pymc_logp_grad",
    "rank_uniformity",
    "read_counts",
    "run_sbc",
    "sample_posterior",
    "sample_vi",
    "save_fit",
    "select_chains",
    "select_rank",
    "write_report",
}


def test_public_api_snapshot():
    assert set(pnmf.__all__) == PUBLIC_API
    for name in pnmf.__all__:
        assert getattr(pnmf, name) is not None, name


def test_import_stays_light():
    code = (
        "import sys, poisson_nmf\n"
        "heavy = ['numba', 'pymc', 'pytensor', 'nutpie', 'arviz_stats', 'matplotlib']\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
