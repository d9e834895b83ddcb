"""poisson-nmf: Bayesian Poisson non-negative matrix factorisation in PyMC.

V ~ Poisson(WH) with optional Gamma priors on W and H. The MAP estimate under flat
priors is the KL-minimising NMF solution (Lee & Seung 1999); full posterior sampling
gives uncertainty on the factors, and ArviZ diagnostics say whether to trust it.

The NumPy/SciPy layers (data, math, KL solver) import without PyMC; the PyMC layers
are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .data import Counts, ZeroRowsColumnsWarning, as_counts, check_n_components
from .datasets import load_digits
from .divergence import kl_divergence, loglik_constant, poisson_loglik
from .kl import ConvergenceWarning, KLResult, initial_factors, kl_nmf
from .priors import GammaPriors

__version__ = "0.1.0"

# name -> module, imported lazily so that `import poisson_nmf` stays light
_LAZY: dict[str, str] = {
    "build_model": "model",
    "fit_map": "fit",
    "MAPResult": "fit",
    "compare_map_kl": "compare",
    "MAPvsKL": "compare",
    "kkt_residual": "compare",
    "pymc_logp_grad": "fit",
    "sample_posterior": "sample",
    "posterior_summary": "sample",
    "detect_modes": "sample",
    "select_chains": "sample",
    "log_density": "sample",
    "ModeReport": "sample",
    "MultipleModesWarning": "sample",
    "align_factors": "align",
    "normalize_factors": "align",
    "match_components": "align",
    "AlignResult": "align",
    "diagnose": "diagnostics",
    "Diagnosis": "diagnostics",
    "write_report": "report",
    "read_counts": "io",
    "save_fit": "io",
    "load_fit": "io",
    "FitFormatError": "io",
    "run_sbc": "calibration",
    "SBCResult": "calibration",
    "rank_uniformity": "calibration",
    "invariant_quantities": "calibration",
    "fit_loadings": "loadings",
    "PoissonNMF": "estimator",
    "completion_score": "estimator",
}

__all__ = [
    "ConvergenceWarning",
    "Counts",
    "GammaPriors",
    "KLResult",
    "ZeroRowsColumnsWarning",
    "__version__",
    "as_counts",
    "check_n_components",
    "initial_factors",
    "kl_divergence",
    "kl_nmf",
    "load_digits",
    "loglik_constant",
    "poisson_loglik",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
