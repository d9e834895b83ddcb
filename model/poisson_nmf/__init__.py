"""poisson-nmf: Bayesian Poisson non-negative matrix factorisation in PyMC.

V ~ Poisson(WH) with optional Gamma priors on W and H. The MAP estimate under flat
priors is the KL-minimising NMF solution (Lee & Seung 1999); full posterior sampling
gives uncertainty on the factors, and ArviZ diagnostics say whether to trust it.

The data and math layers import with NumPy, SciPy, pandas and xarray alone; the KL
solver (Numba) and the PyMC layers are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ._version import __version__
from .data import Counts, as_counts, check_n_components
from .datasets import load_digits
from .divergence import kl_divergence, loglik_constant, poisson_loglik
from .exceptions import (
    ConvergenceWarning,
    FitFormatError,
    MultipleModesWarning,
    TrappedZerosWarning,
    ZeroRowsColumnsWarning,
)
from .priors import GammaPriors

# name -> module, imported lazily so that `import poisson_nmf` stays light
_LAZY: dict[str, str] = {
    "kl_nmf": "optim.kl",  # Numba's kernels: imported on first use
    "KLResult": "optim.kl",
    "initial_factors": "optim.starts",
    "build_model": "model",
    "fit_map": "optim.map",
    "MAPResult": "optim.map",
    "compare_map_kl": "optim.compare",
    "MAPvsKL": "optim.compare",
    "kkt_residual": "optim.compare",
    "pymc_logp_grad": "optim.map",
    "sample_posterior": "sampling.api",
    "sample_vi": "vi",
    "posterior_summary": "sampling.api",
    "detect_modes": "sampling.modes",
    "select_chains": "sampling.modes",
    "log_density": "sampling.density",
    "ModeReport": "sampling.modes",
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
    "run_sbc": "calibration",
    "SBCResult": "calibration",
    "rank_uniformity": "calibration",
    "invariant_quantities": "calibration",
    "select_rank": "rank",
    "RankSelection": "rank_result",
    "fit_loadings": "loadings",
    "PoissonNMF": "estimator",
    "completion_score": "estimator",
}

__all__ = [
    "ConvergenceWarning",
    "Counts",
    "FitFormatError",
    "GammaPriors",
    "MultipleModesWarning",
    "TrappedZerosWarning",
    "ZeroRowsColumnsWarning",
    "__version__",
    "as_counts",
    "check_n_components",
    "kl_divergence",
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
