r"""Mean-field variational inference for Poisson NMF: coordinate ascent on the latent counts.

The model is exactly that of :func:`poisson_nmf.sample_posterior`:
:math:`v_{fn} \sim \mathrm{Poisson}(\sum_k w_{fk} h_{kn})` over the observed entries,
:math:`w_{fk} \sim \mathrm{Gamma}(a^w_{fk}, b^w_{fk})`,
:math:`h_{kn} \sim \mathrm{Gamma}(a^h_{kn}, b^h_{kn})` (shape, rate, as
:class:`poisson_nmf.GammaPriors` gives them). With the latent counts
:math:`s_{fkn} \sim \mathrm{Poisson}(w_{fk} h_{kn})`, :math:`v_{fn} = \sum_k s_{fkn}`
(Cemgil 2009, "Bayesian inference for nonnegative matrix factorisation models";
Gopalan, Hofman & Blei 2015, hierarchical Poisson factorisation) every complete
conditional is conjugate, and the mean-field family
:math:`q(W)\,q(H)\,q(S)` with :math:`q(w_{fk}) = \mathrm{Gamma}(α^w_{fk}, β^w_{fk})`,
:math:`q(h_{kn}) = \mathrm{Gamma}(α^h_{kn}, β^h_{kn})` and multinomial
:math:`q(s_{f\cdot n})` has closed-form coordinate updates.

Updates (one iteration)
-----------------------
With :math:`L_{fk} = \exp E[\log w_{fk}] = e^{ψ(α^w_{fk})} / β^w_{fk}`, likewise
:math:`M_{kn}`, the optimal :math:`q(S)` splits each count in proportions
:math:`φ_{fnk} = L_{fk} M_{kn} / (LM)_{fn}`, and

.. math::

    α^w_{fk} = a^w_{fk} + L_{fk} \sum_{n: v_{fn} > 0} \frac{v_{fn}}{(LM)_{fn}} M_{kn},
    \qquad β^w_{fk} = b^w_{fk} + \sum_{n \text{ observed}} E[h_{kn}],

then the same for H with the new :math:`E[w]`. One pass over the non-zeros gives both
sums (O(nnz K)); the zeros enter only through :math:`\sum_n E[h_{kn}]` and
:math:`\sum_f E[w_{fk}]`, so V is never densified. Masked (missing) entries are in
neither: the non-zeros exclude them, and their :math:`E[h_{kn}]` is taken back out of
the row's sum by a loop over the masked entries (O(n_masked K)). Each step maximises
the ELBO over one block (q(S), then q(W), then q(H)) with the others fixed, so the
ELBO never decreases.

Over-relaxed steps (adaptive over-relaxed bound optimisation, Salakhutdinov & Roweis
2003, "Adaptive overrelaxed bound optimization methods", ICML): coordinate ascent on
NMF creeps along the directions it couples weakly, so each iteration first tries the
step from q_t to its coordinate-ascent update q_c made gamma times as long on the log
scale of every shape and rate, :math:`q_t (q_c / q_t)^γ`. The try is taken if its ELBO
is at least q_t's, and gamma then grows by 1.5 (at most 20); otherwise q_c is taken
(its ELBO cannot be lower) and gamma starts again at 1.5. So the ELBO still never
decreases; a failed try costs one more pass (``attrs["vi"]["n_passes"]`` counts them).

The ELBO
--------
With q(S) at its optimum the bound is, exactly,

.. math::

    \mathcal{L} = \sum_{nz} [v_{fn} \log (LM)_{fn} - \log v_{fn}!]
    - \sum_{\text{obs}} \sum_k E[w_{fk}] E[h_{kn}]
    + \sum E_q[\log p(w) - \log q(w)] + \sum E_q[\log p(h) - \log q(h)],

with the Gamma prior terms and entropies in closed form; the rate sum is
:math:`\sum_k (\sum_f E[w_{fk}])(\sum_n E[h_{kn}])` less the masked entries. It is
computed in every iteration's pass (the pass of iteration t gives the bound of the state
it starts from), stored as ``attrs["vi"]["elbo_trace"]``, and a decrease larger than
rounding (:data:`poisson_nmf.vi_cavi.ROUNDING` times the summed magnitudes of its
terms) raises ``RuntimeError``.

This bound of the augmented model (q(S) included) is below the ELBO of q(W) q(H) for
the model itself, :math:`E_q[\log p(V, W, H) - \log q(W, H)]`, by Jensen's inequality
on :math:`\log \sum_k w_{fk} h_{kn}`; that one has no closed form, and a Monte Carlo
estimate of it from the PSIS draws is ``attrs["vi"]["psis"]["elbo_mc"]`` (the estimator
``benchmarks/vi_vs_advi.py`` uses for both methods).

One iteration is three passes (:mod:`poisson_nmf.vi_cavi`, kernels in
:mod:`poisson_nmf.vi_kernels`): q(W)'s update with its ELBO terms, the same for q(H),
and the pass over the non-zeros. Each runs in ``BLOCKS`` = 8 fixed blocks of rows (the
non-zeros' in blocks of about equal non-zeros), in threads (the kernels release the
GIL); partial sums, and the non-zero pass's buffers for H, are added in block order, so
the result is the same for any number of threads. Nothing is allocated per iteration
but a few length-K sums.

Convergence rule: stop when the relative increase over the last 10 iterations,
:math:`(\mathcal{L}_t - \mathcal{L}_{t-10}) / |\mathcal{L}_t|`, is below ``10 tol``
(its mean per iteration below ``tol``, default 1e-6), or after ``max_iter`` iterations
(a :class:`poisson_nmf.ConvergenceWarning`). A window rather than one iteration: a
plain step after a failed over-relaxed try is several times shorter than the steps
around it and alone would stop a run still climbing.
Mean-field coordinate ascent on NMF creeps along the directions it couples weakly
(components trading mass) long after the ELBO's relative change is small, so a
looser rule stops visibly short of the state 1e-6 reaches (W columns far apart in
total variation: ``benchmarks/vi_tol.py``, figures in ``benchmarks/README.md``); the
default stays at 1e-6.

Restarts, draws and the check against the exact posterior
---------------------------------------------------------
``restarts`` random starts (default 3) each run ``restart_iter`` iterations (default
50); the one with the best ELBO there runs on to convergence, the others stop (a
screening of starts: the fit costs about ``(restarts - 1) x restart_iter`` iterations
more than one run, not ``restarts`` runs). ``restart_iter=None`` runs every restart to
convergence and keeps the best final ELBO. The restarts are compared where the choice
is made (same iteration count): ELBO gap to the best, and the largest total-variation
distance between a restart's aligned, normalised W columns and the best's. A large
spread means the posterior has several modes (or that 50 iterations do not yet tell
them apart: pass ``restart_iter=None`` to compare converged runs); mean-field found one.

Draws are independent from q, stored as one chain (``chain`` of size 1) in float32:
(F + N) K x 4 bytes per draw. They are normalised and aligned exactly as NUTS draws
(:func:`poisson_nmf.align.align_factors`), with the mean of the best q as the
reference (a MAP would cost a second optimisation for nothing: q's mean is a good
representative of the mode q sits in).

How wrong q is: Pareto-smoothed importance sampling (Yao, Vehtari, Simpson & Gelman
2018, "Yes, but did it work?") with :math:`\log p` the exact joint density
(:func:`poisson_nmf.log_density`, on (log W, log H) with its Jacobian) and
:math:`\log q` the Gamma factors on the same scale, from ``psis_draws`` draws (default
100). Its k-hat above 0.7 means the importance weights have no useful variance: q's
intervals are not posterior intervals. In the dimensions of matrix factorisation
((F + N) K parameters, thousands at least) mean-field q is always far narrower than the
posterior in some directions, and k-hat is expected to be well above 0.7.

Importance resampling (``resample``; Vehtari et al. 2024, "Pareto smoothed importance
sampling", JMLR 25): where k-hat is below 0.7 (``"auto"``, the default) the stored
draws are resampled, with replacement, from as many draws of q by their smoothed
weights, which makes them approximately posterior draws (duplicates included: their
number of distinct draws is ``attrs["vi"]["resample"]["n_unique"]``). It costs one exact
log density per draw, and happens on small or very informative problems only.

What mean-field cannot represent
--------------------------------
q(W) q(H) has no correlation between W and H: the scale ridge
(:math:`w_{\cdot k} c, h_{k \cdot} / c`) and the shears that exchange mass between
components, which carry most of the posterior variance of the slowest entries, are
absent, so q's sds understate the posterior's (``benchmarks/vi_vs_nuts.py`` measures by
how much).

Next steps that plug in here: stochastic (minibatch) VI replaces the full pass over the
non-zeros by a pass over a random subset of rows, scaled by F / batch, with the natural
gradient step :math:`α \leftarrow (1 - ρ_t) α + ρ_t \hat α` (Hoffman et al. 2013); the
global q(H) update is unchanged in form. Hierarchical priors (HPF: Gamma rates on the
rates, per row and per column) add one conjugate Gamma factor per row and column whose
expectations replace the fixed ``b^w``, ``b^h`` in the β updates.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr

from ._validation import DEFAULT_PRIORS, at_default, proper_priors
from .align import Normalize, align_factors, check_normalize
from .data import Counts, as_counts, check_n_components
from .exceptions import ConvergenceWarning, warn_user
from .observed import observed_group
from .priors import GammaPriors
from .vi_cavi import WINDOW, Problem, VIFit, fit_restarts, run_threads
from .vi_draws import (
    KHAT_RESAMPLE,
    AlignedDraws,
    aligned_draws,
    default_draws,
    pointwise_groups,
    psis,
)

__all__ = ["VIFit", "from_sample_posterior", "sample_vi"]


def sample_vi(
    V: Any,
    n_components: int,
    *,
    priors: GammaPriors = DEFAULT_PRIORS,
    draws: int | None = None,
    restarts: int = 3,
    restart_iter: int | None = 50,
    max_iter: int = 1000,
    tol: float = 1e-6,
    random_seed: Any = None,
    normalize: Normalize = "W",
    mask: Any = None,
    pointwise_draws: int | None = 500,
    psis_draws: int = 100,
    resample: bool | Literal["auto"] = "auto",
) -> xr.DataTree:
    """Mean-field variational posterior of W and H, as draws in ``sample_posterior``'s layout.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`. Sparse input stays sparse.
    n_components : int
        K.
    priors : GammaPriors
        Gamma(shape, rate) priors on W and H (scalars or arrays); flat priors refused.
    draws : int, optional
        Independent draws from q, stored as one chain in float32. Default: 1000, or
        fewer so that they take at most 256 MB ((F + N) K x 4 bytes each).
    restarts : int
        Random starts.
    restart_iter : int or None
        Iterations every restart runs before the one with the best ELBO is kept and run
        on to convergence (the others stop there: the fit costs about ``restarts x
        restart_iter`` iterations more than one run, not ``restarts`` times one run).
        ``None``: every restart runs to convergence and the best final ELBO is kept.
        The restarts' ELBOs and places are compared where the choice is made.
    max_iter : int
        Iterations of the kept restart at most, its screening included (a
        ``ConvergenceWarning`` when reached).
    tol : float
        Stop when the relative ELBO increase over the last 10 iterations is below 10
        times this (its mean per iteration below ``tol``).
    random_seed : int, numpy.random.Generator or None
        Seeds the starts, the draws, the PSIS draws, the resampling and the predictive
        draws.
    normalize : {"W", "H"}
        As in :func:`poisson_nmf.sample_posterior`.
    mask : array_like of bool, shape (F, N), optional
        ``True`` marks missing entries.
    pointwise_draws : int or None
        Draws for the ``log_likelihood`` and ``posterior_predictive`` groups (as in
        :func:`poisson_nmf.sample_posterior`). Where draws x observed entries would
        pass 25 million values, only ``posterior_predictive``, at a random subsample of
        observed entries (dim ``entry``, as with a mask), for the predictive checks
        (``attrs["vi"]["pointwise"]`` says so).
    psis_draws : int
        Draws for PSIS k-hat against the exact posterior: 0 (not computed) or at least
        25. Each costs one exact log density, O(nnz K).
    resample : {"auto", True, False}
        Importance resampling: the stored draws are ``draws`` draws resampled, with
        replacement, from as many draws of q by their Pareto-smoothed importance
        weights against the exact posterior, so that they are approximately posterior
        draws where q is close enough. ``"auto"``: only where the PSIS k-hat is below
        0.7 (needs ``psis_draws`` > 0), and not where the weights collapse (their ESS
        under min(100, 10 % of the draws): the draws of q are kept then); ``True``:
        always (above 0.7 they are not posterior draws; ``diagnose`` says so; a
        collapse is warned of). Costs one exact log density per draw.
        ``attrs["vi"]["resampled"]`` says whether it was done, ``["resample"]`` how.

    Returns
    -------
    xarray.DataTree
        ``posterior`` W (chain, draw, row, component), H (chain, draw, component,
        column), float32, normalised and aligned to q's mean (``chain`` has size 1);
        ``sample_stats``: ``permutation``, ``scale``; ``reference``: q's normalised mean;
        ``variational``: q itself, unnormalised, in the components' original order
        (``W_shape``, ``W_rate`` (row, component), ``H_shape``, ``H_rate``);
        ``observed_data``; the pointwise groups. ``attrs``: ``method = "vi"``,
        ``approximate = True``, ``vi`` (JSON: ELBO trace of the kept run, every
        restart's ELBO, iterations and distance to the best where the choice was made,
        the convergence rule, PSIS k-hat, resampling), ``settings``, ``normalize``,
        ``sampling_time_s``, ``total_time_s``.

    Raises
    ------
    ValueError, TypeError
        For bad counts, K, priors or settings.
    RuntimeError
        If the ELBO decreases beyond rounding (a bug).
    """
    t_start = time.perf_counter()
    counts = as_counts(V, mask=mask)
    s = _check_settings(
        counts, n_components, priors, draws, restarts, restart_iter, max_iter, tol,
        normalize, pointwise_draws, psis_draws, resample,
    )  # fmt: skip
    rng_starts, rng_draws, rng_psis, rng_pp, rng_res = np.random.default_rng(random_seed).spawn(5)
    prob = Problem.build(counts, s.n_components, s.priors)
    fit, restart_info = _fit(prob, s, rng_starts)
    fit_time = time.perf_counter() - t_start
    t_psis = time.perf_counter()
    psis_info = (
        psis(counts, s.n_components, s.priors, fit, s.psis_draws, rng_psis)
        if s.psis_draws > 0
        else None
    )
    t_draws = time.perf_counter()
    if s.resample == "auto":
        do_resample = psis_info is not None and psis_info["khat"] < KHAT_RESAMPLE
    else:
        do_resample = s.resample
    rng_q = copy.deepcopy(rng_draws)  # the draws of q, should resampling be undone
    post = aligned_draws(
        counts, s.priors, fit, s.draws, s.normalize, rng_draws, rng_res if do_resample else None
    )
    info = post.resample
    if info is not None and _collapsed(info):
        if s.resample == "auto":  # it would not help: keep the draws of q
            post = aligned_draws(counts, s.priors, fit, s.draws, s.normalize, rng_q, None)
            do_resample = False
        else:
            _warn_collapsed(info)
    t_rest = time.perf_counter()
    groups = _factor_groups(counts, fit, post, s.normalize)
    pointwise, pointwise_note = pointwise_groups(counts, post, s.pointwise_draws, rng_pp)
    vi_info = {
        **_fit_info(fit, s, restart_info),
        "psis": psis_info,
        "resampled": bool(do_resample),
        "resample": post.resample,
        "pointwise": pointwise_note,
        "draws_dtype": "float32",
        **run_threads(prob),
        "time_s": {
            "fit": fit_time,
            "psis": t_draws - t_psis,
            "draws": t_rest - t_draws,
            "tree": time.perf_counter() - t_rest,
        },
    }
    tree = xr.DataTree.from_dict({**groups, **pointwise})
    tree.attrs = _provenance(vi_info, s, random_seed, fit_time, t_start)
    return tree


@dataclass(frozen=True, slots=True)
class _Settings:
    """``sample_vi``'s settings, checked; ``attrs["settings"]`` stores them."""

    n_components: int
    priors: GammaPriors
    draws: int
    restarts: int
    restart_iter: int | None
    max_iter: int
    tol: float
    normalize: Normalize
    pointwise_draws: int | None
    psis_draws: int
    resample: bool | Literal["auto"]


def _check_settings(
    counts: Counts,
    n_components: int,
    priors: GammaPriors,
    draws: int | None,
    restarts: int,
    restart_iter: int | None,
    max_iter: int,
    tol: float,
    normalize: Normalize,
    pointwise_draws: int | None,
    psis_draws: int,
    resample: bool | Literal["auto"],
) -> _Settings:
    """Check ``sample_vi``'s arguments, in the order of its signature; settle ``draws``."""
    K = check_n_components(n_components, counts)
    priors = proper_priors(priors)
    check_normalize(normalize)
    F, N = counts.shape
    draws = default_draws(F, N, K) if draws is None else _positive_int("draws", draws)
    restarts = _positive_int("restarts", restarts)
    if restart_iter is not None:
        restart_iter = _positive_int("restart_iter", restart_iter)
    max_iter = _positive_int("max_iter", max_iter)
    if not (isinstance(tol, int | float) and 0 < tol < 1):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    if (
        isinstance(psis_draws, bool)
        or not isinstance(psis_draws, int | np.integer)
        or not (psis_draws == 0 or psis_draws >= 25)
    ):
        raise ValueError(
            f"psis_draws must be 0 (no PSIS check) or an integer >= 25 (ArviZ's PSIS fits "
            f"the largest fifth of the weights and needs 5 of them), got {psis_draws!r}"
        )
    if pointwise_draws is not None and (
        not isinstance(pointwise_draws, int | np.integer) or pointwise_draws < 0
    ):
        raise ValueError(
            f"pointwise_draws must be None or an integer >= 0, got {pointwise_draws!r}"
        )
    if not (resample == "auto" or isinstance(resample, bool)):
        raise ValueError(f"resample must be 'auto', True or False, got {resample!r}")
    return _Settings(
        K, priors, draws, restarts, restart_iter, max_iter, tol, normalize,
        None if pointwise_draws is None else int(pointwise_draws), int(psis_draws), resample,
    )  # fmt: skip


def _fit(
    prob: Problem, s: _Settings, rng: np.random.Generator
) -> tuple[VIFit, list[dict[str, Any]]]:
    """Run the screened restarts: the kept run, and every restart where the choice was made.

    Warns (``ConvergenceWarning``, at ``sample_vi``'s caller) if the kept run stopped at
    ``max_iter``.
    """
    fit, screened, best = fit_restarts(
        prob, rng.spawn(s.restarts), s.restart_iter, s.max_iter, s.tol
    )
    if not fit.converged:
        warn_user(
            f"the best restart did not converge in max_iter={s.max_iter} iterations "
            f"(mean relative ELBO change of the last {WINDOW} iterations above "
            f"tol={s.tol}); raise max_iter",
            ConvergenceWarning,
        )
    return fit, _restart_info(screened, best, fit, s.normalize)


def _factor_groups(
    counts: Counts, fit: VIFit, post: AlignedDraws, normalize: Normalize
) -> dict[str, xr.Dataset]:
    """Build the groups of W and H: posterior, sample_stats, reference, variational, observed."""
    K = fit.alpha_w.shape[1]
    draws = post.W.shape[1]
    ref = align_factors(fit.mean_w, fit.mean_h, fit.mean_w, fit.mean_h, normalize=normalize)
    coords = {"row": counts.row, "column": counts.column, "component": np.arange(K)}
    sc = {"chain": np.arange(1), "draw": np.arange(draws)}
    return {
        "posterior": xr.Dataset(
            {
                "W": (("chain", "draw", "row", "component"), post.W),
                "H": (("chain", "draw", "component", "column"), post.H),
            },
            coords={**sc, **coords},
        ),
        "sample_stats": xr.Dataset(
            {
                "permutation": (("chain", "draw", "component"), post.permutation),
                "scale": (("chain", "draw", "component"), post.scale),
            },
            coords={**sc, "component": np.arange(K)},
        ),
        "reference": xr.Dataset(
            {"W": (("row", "component"), ref.W), "H": (("component", "column"), ref.H)},
            coords=coords,
        ),
        "variational": xr.Dataset(
            {
                "W_shape": (("row", "component"), fit.alpha_w),
                "W_rate": (("row", "component"), fit.beta_w),
                "H_shape": (("component", "column"), fit.alpha_h),
                "H_rate": (("component", "column"), fit.beta_h),
            },
            coords=coords,
        ),
        "observed_data": observed_group(counts),
    }


def _fit_info(fit: VIFit, s: _Settings, restart_info: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the fit's part of ``attrs["vi"]``: ELBO trace, convergence, restarts."""
    screen = "to convergence" if s.restart_iter is None else f"for {s.restart_iter} iterations"
    return {
        "algorithm": "coordinate-ascent mean-field VI on the latent counts (Cemgil 2009)",
        "elbo": fit.elbo,
        "elbo_trace": [float(x) for x in fit.elbo_trace],
        "n_iter": fit.n_iter,
        "n_passes": fit.n_passes,
        "converged": fit.converged,
        "convergence_rule": f"relative ELBO increase over the last {WINDOW} iterations < "
        f"{WINDOW} x tol, tol = {s.tol} (max_iter = {s.max_iter})",
        "max_relative_decrease": fit.max_decrease,
        "restart_rule": f"{s.restarts} restarts run {screen}; the best ELBO there is kept "
        "and run on to convergence; their ELBOs and places are compared there",
        "restarts": restart_info,
        "restart_elbo_spread": float(max(r["elbo_gap"] for r in restart_info)),
        "restart_max_tv_distance_w": float(max(r["max_tv_distance_w"] for r in restart_info)),
    }


def _provenance(
    vi_info: dict[str, Any], s: _Settings, random_seed: Any, fit_time: float, t_start: float
) -> dict[str, Any]:
    """Return the tree's attrs: method, ``vi`` and ``settings`` (JSON), version, times."""
    from ._version import __version__
    from .sampling.plan import seed_repr

    settings = {
        "method": "vi",
        "n_components": s.n_components,
        "priors": {k: np.asarray(v).tolist() for k, v in asdict(s.priors).items()},
        "draws": int(s.draws),
        "restarts": s.restarts,
        "restart_iter": s.restart_iter,
        "max_iter": s.max_iter,
        "tol": s.tol,
        "normalize": s.normalize,
        "pointwise_draws": s.pointwise_draws,
        "psis_draws": s.psis_draws,
        "resample": s.resample,
        "random_seed": seed_repr(random_seed),
    }
    return {
        "method": "vi",
        "approximate": True,
        "vi": json.dumps(vi_info),
        "settings": json.dumps(settings),
        "normalize": s.normalize,
        "sampling_time_s": fit_time,
        "inference_library": "poisson_nmf.vi",
        "poisson_nmf_version": __version__,
        "total_time_s": time.perf_counter() - t_start,
    }


def _restart_info(
    screened: list[VIFit], best: int, fit: VIFit, normalize: Normalize
) -> list[dict[str, Any]]:
    """Every restart where the choice was made: ELBO, gap and TV distance to the best's W."""
    ref_fit = screened[best]
    W_ref, H_ref = ref_fit.mean_w, ref_fit.mean_h
    ref = align_factors(W_ref, H_ref, W_ref, H_ref, normalize=normalize)
    Wr = ref.W if normalize == "W" else ref.W / ref.W.sum(axis=0)
    out = []
    for i, f in enumerate(screened):
        al = align_factors(f.mean_w, f.mean_h, W_ref, H_ref, normalize=normalize)
        Wn = al.W if normalize == "W" else al.W / al.W.sum(axis=0)
        tv = 0.5 * np.abs(Wn - Wr).sum(axis=0)
        out.append(
            {
                "elbo": f.elbo,
                "elbo_gap": ref_fit.elbo - f.elbo,
                "n_iter": fit.n_iter if i == best else f.n_iter,
                "converged": fit.converged if i == best else f.converged,
                "max_tv_distance_w": float(tv.max()),
                "best": i == best,
            }
        )
    return out


def _collapsed(info: dict) -> bool:
    """Whether importance resampling collapsed: weights' ESS under min(100, 10 %)."""
    return bool(info["ess"] < min(100.0, 0.1 * info["n_proposals"]))


def _warn_collapsed(info: dict) -> None:
    warn_user(
        f"importance resampling kept {info['n_unique']} distinct draws of q (weights' "
        f"ESS {info['ess']:.1f}, k-hat {info['khat']:.2f}): the stored draws are mostly "
        "copies; use resample='auto' (which then keeps the draws of q) or resample=False",
        UserWarning,
    )


def _positive_int(name: str, val: Any) -> int:
    if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
        raise ValueError(f"{name} must be a positive integer, got {val!r}")
    return int(val)


# what sample_posterior(method="vi") passes on; every other argument of sample_posterior
# only means something for NUTS and is refused when set to other than its default
_SHARED = ("V", "n_components", "priors", "draws", "random_seed", "normalize", "mask",
           "pointwise_draws")  # fmt: skip
# accepted and not used: progress (nothing long to show), max_memory (VI's memory is
# O(nnz + (F + N) K) plus its draws, whose default size is bounded; see sample_vi)
_IGNORED = ("progress", "max_memory")


def from_sample_posterior(args: dict) -> xr.DataTree:
    """Run :func:`sample_vi` for ``sample_posterior(method="vi", ...)``.

    ``args`` are sample_posterior's arguments (its ``locals()`` on entry). An argument
    equal to its default counts as not set (``draws`` at its NUTS default gets VI's).
    """
    import inspect

    from .sampling.api import sample_posterior

    method = args.pop("method")
    if method != "vi":
        raise ValueError(f"method must be 'nuts' or 'vi', got {method!r}")
    params = inspect.signature(sample_posterior).parameters
    set_nuts = []
    for name, val in args.items():
        if name in _SHARED or name in _IGNORED:
            continue
        default = params[name].default if name in params else inspect.Parameter.empty
        if not at_default(val, default):
            set_nuts.append(name)
    if set_nuts:
        raise ValueError(
            f"{', '.join(sorted(set_nuts))}: only for NUTS, not used "
            "with method='vi'; leave them out (the VI settings restarts, max_iter, tol and "
            "psis_draws are arguments of poisson_nmf.sample_vi)"
        )
    kw = {name: args[name] for name in _SHARED if name in args}
    if "draws" in params and kw.get("draws") == params["draws"].default:
        kw["draws"] = None
    return sample_vi(**kw)
