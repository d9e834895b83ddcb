r"""Diagnostics of a posterior fit: can the draws be trusted, does the model fit.

(The package is ``diagnostics``, not ``diagnose``: a submodule of that name would replace
the function ``poisson_nmf.diagnose`` on the package once imported.)

Its modules: :mod:`.checks` (one function per check, each returning a :class:`Check`
whose :class:`Threshold` is an operator and a number), :mod:`.ppc` (coverage, the
discrepancy and :func:`draw_rates`, the rates WH of a set of draws), :mod:`.loo`
(PSIS-LOO) and :mod:`.core` (:func:`diagnose` and its :class:`Diagnosis`). The per-entry
table of R-hat and ESS is :mod:`poisson_nmf.convergence`, shared with the stopping rule
of the sampler, which must not import this package.

:func:`diagnose` runs every check on a :func:`poisson_nmf.sample_posterior` DataTree and
returns a :class:`Diagnosis` with a verdict and the reasons for it. Every estimator is
ArviZ's (``arviz_stats``): ``summary`` (rank-normalised split R-hat, bulk and tail ESS,
MCSE), ``bfmi``, ``eti`` and ``loo`` (PSIS-LOO); the posterior predictive p-value is a
mean of indicators over the draws.

Checks, thresholds and what a failure means
-------------------------------------------
Sampling (a failure makes the verdict ``"fail"``: the draws do not represent the
posterior, so no summary of them should be used):

- **R-hat** (rank-normalised, split, the larger of bulk and folded; Vehtari et al. 2021)
  of every entry of W and H at most 1.01.
- **ESS** bulk and tail of every entry at least 100 per chain (Vehtari et al. 2021).
- **Divergences**: none (Betancourt 2017).
- **E-BFMI** of every chain at least 0.3 (Betancourt 2016).
- **Modes**: all chains in one posterior mode (:func:`poisson_nmf.detect_modes`); NMF
  has several local modes, and chains in different ones make every pooled summary
  meaningless even where R-hat happens to be small.

Model fit (a failure makes the verdict ``"warn"``: the draws may be used, with the
caveat stated). Posterior predictive p-values are not uniform under the true model: they
concentrate near 0.5 (Hjort, Dahl & Steinbakk 2006), so a two-sided 5 % rule misfires
in the tail that the concentration does not protect. Each check is therefore one-sided,
towards over-dispersion, the departure that matters for counts, and made to fire on at
most about 5 % of data sets drawn from the model (``benchmarks/false_alarms.py``):

- **Predictive coverage**: the fraction of observed counts inside their central
  ``ppc_prob`` (0.9) posterior predictive interval is at least ``ppc_prob - 0.05``,
  or the shortfall is within binomial noise (one-sided binomial p >= 0.01 for that
  many entries). Discrete predictive intervals cover at least their nominal mass, so
  falling short means the counts vary more than Poisson(WH) allows.
- **Discrepancy**: Pearson's :math:`X^2(y, θ) = \sum (y - λ)^2 / λ`, λ = WH, realised
  against replicated, with the posterior predictive p-value
  :math:`p = \Pr(X^2(y^{rep}, θ) \ge X^2(y, θ))` (Gelman, Meng & Stern 1996) at least
  0.025; a small p says the data are over-dispersed relative to the model. A p near 1
  (under-dispersion) is reported, not warned about: under the true model it happens
  often (the ``false_alarms.py`` section of ``benchmarks/README.md``).

Information and efficiency notices (``"info"``: reported, never change the verdict):

- **MCSE** of every posterior mean at most 0.1 posterior sd, and **tree depth** (no
  transition stopped at the sampler's maximum depth): the cost of the run, not a bias.
- **PSIS-LOO Pareto k** of every observed entry at most 0.7 (Vehtari et al. 2024) says
  whether ``elpd_loo`` is reliable, not whether the model fits; it is reported in the
  LOO section with ``p_loo`` against the number of parameters (F + N) K.

Undefined values are classified, never left to a comparison that NaN happens to fail
(:mod:`poisson_nmf.convergence`, and each check function before it compares): entries
of W and H constant by construction are left
out of R-hat, ESS and MCSE; entries whose rate is 0 in every draw contribute exactly 0
to the discrepancy (their observed and replicated counts are both 0); log-likelihood
entries constant over the draws are left out of the Pareto k count. A value undefined
otherwise (a chain's E-BFMI of a constant or non-finite energy, a non-finite
discrepancy) is reported as undefined and fails its check.

The predictive checks and LOO use the thinned pointwise groups ``posterior_predictive``
and ``log_likelihood`` (``pointwise_draws`` in :func:`sample_posterior`); without them
those checks are skipped (``"info"``), as is LOO with fewer than 25 pointwise draws
(PSIS fits a generalised Pareto to at least 5 tail weights), and the predictive checks
with fewer than 20 predictive draws (``checks.PPC_MIN_DRAWS``: below it a central 90 %
interval has less than one draw beyond each end). R-hat needs at least two
chains: with one, the R-hat check fails.
"""

from .checks import THRESHOLDS, Check, Threshold, convergence_checks
from .core import Diagnosis, diagnose, entry_label
from .ppc import draw_rates

__all__ = [
    "THRESHOLDS",
    "Check",
    "Diagnosis",
    "Threshold",
    "convergence_checks",
    "diagnose",
    "draw_rates",
    "entry_label",
]
