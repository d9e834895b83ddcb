r"""Loadings of new samples given fixed components: a MAP or exact posterior draws.

Given W (F x K, the components: a reference catalogue, or a fitted posterior) and new
counts V (F x N), the loadings H (K x N) of :math:`V \sim \mathrm{Poisson}(WH)` with
independent Gamma(a, b) priors (shape, rate) on the entries of H. Given W, the columns
of V are independent problems, each with K unknowns.

``method="map"``
    The penalised KL objective over H alone (:func:`poisson_nmf.optim.kl.fit_h`, the H half
    of :func:`poisson_nmf.kl_nmf`'s coordinate descent): convex in each column, so the
    result is the column's unique minimiser (when W has full column rank) and depends on
    that column alone. A point estimate: the returned tree holds one draw.

``method="posterior"``
    Exact draws from p(H | V, W), column by column (each a K-dimensional, smooth
    problem; compiled with Numba in :mod:`poisson_nmf.loadings_kernels`, one call per
    block of columns and all its chains, from the Laplace start of
    :mod:`poisson_nmf.loadings_proposal`). The
    chain runs in y > 0 with h = y^p (p = 2 for prior shapes a >= 1, 2 / a below: the
    square root of a Poisson rate is near-Gaussian, so loadings whose posterior reaches
    down to 0 are not stretched into the long left tail they have in log space); the
    target is log π(y) = Σ_f v_f log λ_f - Σ_k (b_k + Σ_f w_fk) h_k + Σ_k (p_k a_k - 1)
    log y_k on y > 0 (trajectories may cross y_k = 0 under the gradient of its mirror
    image but are rejected if they end there: a chain in a mirror orthant would meet the
    metric reflected and mix slowly). Per column:

    1. the Laplace approximation at the mode (the h-space MAP with prior shape
       a + 1 - 1/p, :func:`poisson_nmf.optim.kl.fit_h`), then ``_IS_ROUNDS`` rounds of
       importance sampling (``_N_IS`` draws each) from a multivariate t (4 degrees of
       freedom) that move it to the weighted mean and covariance;
    2. each chain starts from an importance draw resampled by its weight; each
       iteration is an independence step from that t (a jump across the whole posterior
       when it is accepted) and a Hamiltonian trajectory with the t's covariance as
       inverse mass matrix and a path of 1.5 (whitened units), its step size tuned
       during ``tune`` iterations by dual averaging (Hoffman & Gelman 2014, acceptance
       0.8) and then fixed to the median over the chains (jittered by ±10 %).

    Nothing adapts after tuning and every step leaves p(H | V, W) invariant, so the draws
    are exact whatever the quality of the adaptation, which only sets the speed.
    ``attrs`` names the sampler and gives the acceptance rates and the log-density and
    gradient evaluations per sample (a count of work that does not depend on the
    machine's load). The conjugate Gibbs sampler on latent counts (Cemgil 2009) and
    Metropolis-Hastings in log space mixed far more slowly on overlapping components
    (figures in ``benchmarks/README.md``, transform.py). R-hat and ESS of every loading
    (:func:`poisson_nmf.diagnose`) say whether the draws suffice.

W given as a fitted posterior tree (from :func:`poisson_nmf.sample_posterior`): the
**cut posterior** p_cut(H | V) = ∫ p(H | V, W) p(W | V_train) dW. The new samples do not
update W. Draws of W are taken evenly spaced over all chains and draws of the tree (one
per kept draw of H; ``attrs["cut_posterior"]`` says how many and which); for each, the
chain of H makes ``inner`` iterations given that W, starting where it was, and keeps the
last: exact as ``inner`` grows (successive draws of W are close in distribution, so a
few suffice). The Laplace approximation is taken at the posterior mean of W, its scale
widened by 1.5, and the importance sampling weights its draws under the tree's draws of W
in turn; tuning runs given the chain's first draw of W. ``method="map"`` with a tree uses
the posterior mean of W.

Flat priors (``priors=None``: a = 1, b = 0) are allowed for both methods: given W with
positive column sums, p(H | V, W) is proper (it decays as exp(-h Σ_f w_fk)). With
components normalised to sum to one (a catalogue of signatures, ``components_``), the
loadings are on the scale of the counts, where a Gamma(1, 1) prior shrinks them toward 0
(its rate adds 1 to the column sum 1): pass a prior on the counts' scale, or None.

Independent pieces: the columns are split into blocks of ``_BLOCK`` columns, each with
its own seed spawned from ``random_seed`` before anything runs, and the blocks run through
:func:`poisson_nmf.parallel.map_pieces` on ``executor``: the draws are equal whatever the
executor.

References
----------
- A. T. Cemgil, "Bayesian inference for nonnegative matrix factorisation models",
  Comput. Intell. Neurosci. (2009).
- R. M. Neal, "MCMC using Hamiltonian dynamics", Handbook of Markov Chain Monte Carlo
  (2011).
- M. D. Hoffman and A. Gelman, "The No-U-Turn Sampler", JMLR 15 (2014), algorithm 5
  (dual averaging of the step size).
- P. E. Jacob, L. M. Murray, C. C. Holmes and C. P. Robert, "Better together? Statistical
  learning in models made of modules", arXiv:1708.08719 (2017) (cut posteriors).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from ._validation import DEFAULT_PRIORS, check_choice, check_int
from .data import MISSING_REMEDY, Counts, ZeroRowsColumnsWarning, as_counts
from .loadings_kernels import block_draws
from .loadings_proposal import MAP_MAX_ITER, MAP_TOL, laplace, power
from .optim.kl import fit_h
from .parallel import map_pieces
from .priors import GammaPriors

__all__ = ["SAMPLER", "fit_loadings"]

SAMPLER = (
    "independence Metropolis-Hastings and Hamiltonian Monte Carlo on y = H^(1/p), proposal "
    "and metric adapted per sample by importance sampling from the Laplace approximation "
    "(exact: every step targets p(H | V, W), nothing adapts after tuning)"
)
# the proposal's degrees of freedom: tails heavier than the target's in log space
_NU = 4.0
# a tree's draws of W spread the loadings beyond the Laplace approximation at mean W
_TREE_INFLATE = 1.5
_METHODS = ("map", "posterior")
# adaptive importance sampling of each sample's proposal: draws per round, rounds
_N_IS = 200
_IS_ROUNDS = 2
# Hamiltonian path length in whitened units (about half a period of a unit Gaussian)
_PATH = 1.5
# columns per independent piece: fixed, so that the draws do not depend on the executor
_BLOCK = 64


def _labels(x: Any, axis: int) -> np.ndarray | None:
    """Labels of axis 0 (rows) or 1 of a DataFrame or DataArray; None for other input."""
    if isinstance(x, pd.DataFrame):
        return np.asarray(x.index if axis == 0 else x.columns)
    if isinstance(x, xr.DataArray):
        dim = x.dims[axis]
        return np.asarray(x[dim].values) if dim in x.coords else None
    return None


def _w_draws(W: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, dict]:
    """W as draws (S, F, K), its row and component labels, and where it came from."""
    if isinstance(W, xr.DataTree):
        if "posterior" not in W.children or "W" not in W["posterior"]:
            raise ValueError(
                "W is a DataTree without a posterior W; pass a fitted tree from "
                "sample_posterior or a matrix of components (F x K)"
            )
        da = W["posterior"]["W"].transpose("chain", "draw", "row", "component")
        C, D = da.sizes["chain"], da.sizes["draw"]
        draws = np.asarray(da.values, dtype=np.float64).reshape(C * D, *da.shape[2:])
        src = {"kind": "posterior tree", "chains": int(C), "draws_per_chain": int(D)}
        return draws, np.asarray(da["row"].values), np.asarray(da["component"].values), src
    rows, comps = _labels(W, 0), _labels(W, 1)
    if sp.issparse(W):
        W = W.toarray()
    a = np.asarray(W.values if isinstance(W, pd.DataFrame | xr.DataArray) else W)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_:
        raise TypeError(
            f"W must be a numeric 2-D matrix (F x K) or a posterior DataTree, got "
            f"{type(W).__name__} with shape {getattr(a, 'shape', None)}"
        )
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)) or (a < 0).any():
        raise ValueError("W must be finite and non-negative (a catalogue of components)")
    return a[None], rows, comps, {"kind": "matrix"}


def _match_rows(
    draws: np.ndarray, w_rows: np.ndarray | None, v_rows: np.ndarray | None, F: int
) -> np.ndarray:
    """Reorder the rows of W to V_new's rows by label, or check that the counts agree."""
    if w_rows is not None and v_rows is not None:
        w_idx, v_idx = pd.Index(w_rows), pd.Index(v_rows)
        missing = v_idx.difference(w_idx)
        extra = w_idx.difference(v_idx)
        if len(missing) or len(extra) or not w_idx.is_unique or not v_idx.is_unique:
            raise ValueError(
                "the rows of W and V_new do not match by label: "
                f"{len(missing)} of V_new's rows are not in W (e.g. {list(missing[:3])}), "
                f"{len(extra)} of W's rows are not in V_new (e.g. {list(extra[:3])})"
                + ("" if w_idx.is_unique and v_idx.is_unique else "; labels repeat")
                + "; give both the same features (rename or reindex one of them)"
            )
        return np.ascontiguousarray(draws[:, w_idx.get_indexer(v_idx)])
    if draws.shape[1] != F:
        raise ValueError(
            f"W has {draws.shape[1]} rows but V_new has {F} (features x samples); give W "
            "one row per feature of V_new (or label both, and rows are matched by label)"
        )
    return draws


def _prior_ab(priors: GammaPriors | None, F: int, N: int, K: int) -> tuple[np.ndarray, ...]:
    """Return (a, b) of H's prior as (N, K) arrays; flat priors are a = 1, b = 0."""
    if priors is None:
        return np.ones((N, K)), np.zeros((N, K))
    if not isinstance(priors, GammaPriors):
        raise TypeError(f"priors must be a GammaPriors or None, got {type(priors).__name__}")
    _, _, a, b = priors.arrays(F, N, K)
    return np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)


def _validate_counts(V_new: Any, method: str) -> Counts:
    with warnings.catch_warnings():
        # features absent from every new sample are normal here, not worth a warning
        warnings.simplefilter("ignore", ZeroRowsColumnsWarning)
        try:
            return as_counts(V_new, name="V_new", integer=method != "map", allow_all_zero=True)
        except ValueError as err:
            if MISSING_REMEDY not in str(err):
                raise
            # as_counts suggests missing='mask', which fit_loadings does not take
            msg = str(err).replace(
                MISSING_REMEDY,
                "fit_loadings takes no missing entries: fill them, or drop the features "
                "with missing values from V_new and W (rows are matched by label when both "
                "are labelled), fitting samples with other missing features separately",
            )
            raise ValueError(msg) from None


def fit_loadings(
    V_new: Any,
    W: Any,
    *,
    priors: GammaPriors | None = DEFAULT_PRIORS,
    method: Literal["map", "posterior"] = "map",
    draws: int = 500,
    tune: int = 150,
    chains: int = 4,
    inner: int = 1,
    random_seed: Any = None,
    executor: Any = None,
    progress: Any = None,
) -> xr.DataTree:
    """Fit the loadings H of new samples V_new given components W, with uncertainty.

    Parameters
    ----------
    V_new : array_like, DataFrame, sparse matrix or DataArray, shape (F, N_new)
        New samples as columns (features x samples), dims ``("row", "column")``. Counts
        (non-negative integers); ``method="map"`` also accepts any non-negative values.
        May be all zero.
    W : array_like, DataFrame, DataArray, shape (F, K), or xarray.DataTree
        A matrix of components (a reference catalogue): its rows are matched to
        V_new's rows by label when both have labels (DataFrame index, DataArray coords),
        else by position. Or a fitted posterior tree (posterior ``W``): the cut
        posterior over its draws (see the module docstring).
    priors : GammaPriors or None
        Gamma(shape, rate) prior on each loading (only the ``h_`` part is used; it
        broadcasts against (K, N_new)). ``None``: flat (a = 1, b = 0), proper given W.
        ``method="map"`` needs shapes >= 1.
    method : {"map", "posterior"}
        ``"map"``: the penalised KL minimiser given W (one draw). ``"posterior"``: exact
        draws by Metropolis-Hastings (``attrs["sampler"]``).
    draws, tune, chains : int
        Kept draws per chain, tuning iterations, chains (``"posterior"``).
    inner : int
        Iterations per kept draw (``"posterior"``); with a posterior tree, iterations
        given each draw of W.
    random_seed : int, numpy.random.Generator, SeedSequence or None
        Seed; blocks of columns get seeds spawned from it.
    executor : None, concurrent.futures.Executor or dask.distributed.Client
        Where the blocks of columns run (:func:`poisson_nmf.parallel.map_pieces`); the
        draws do not depend on it.
    progress : bool, None or callable
        Progress over the blocks (see :func:`poisson_nmf.parallel.map_pieces`).

    Returns
    -------
    xarray.DataTree
        ``posterior``: H (chain, draw, component, column). ``attrs``: ``method``,
        ``sampler``, ``approximate`` (False), ``point_estimate``, ``w_source`` and, for
        a tree, ``cut_posterior`` (JSON), ``priors``, the settings.

    Raises
    ------
    ValueError
        Bad counts (negative, fractional where counts are needed, NaN), rows of W and
        V_new that do not match, a W with an all-zero column or an all-zero row where
        V_new has counts, bad settings.
    TypeError
        W or priors of the wrong kind.
    """
    draws, tune, chains, inner = _check_settings(method, draws, tune, chains, inner)
    counts = _validate_counts(V_new, method)
    F, N = counts.shape
    Ws, w_rows, comps, src = _w_draws(W)
    Ws = _match_rows(Ws, w_rows, _labels(V_new, 0), F)
    a, b = _prior_ab(priors, F, N, Ws.shape[2])
    _check_support(Ws.mean(axis=0), counts)
    attrs: dict[str, Any] = {
        "method": method,
        "approximate": False,
        "point_estimate": method == "map",
        "w_source": json.dumps(src),
        "priors": "flat" if priors is None else json.dumps(_priors_dict(priors)),
        "random_seed": str(random_seed),
    }
    if method == "map":
        post, more = _map_loadings(counts, Ws, priors, a, src)
    else:
        post, more = _posterior_loadings(
            counts, Ws, a, b, src, draws=draws, tune=tune, chains=chains, inner=inner,
            random_seed=random_seed, executor=executor, progress=progress,
        )  # fmt: skip
    comp = np.arange(Ws.shape[2]) if comps is None else comps
    return _loadings_tree(post, attrs | more, comp, counts.column)


def _check_settings(method: str, draws: Any, tune: Any, chains: Any, inner: Any) -> tuple:
    """Check ``method`` and return (draws, tune, chains, inner) as ints (ValueError)."""
    check_choice(method, "method", _METHODS)
    return (
        check_int(draws, "draws", 1),
        check_int(tune, "tune", 0),
        check_int(chains, "chains", 1),
        check_int(inner, "inner", 1),
    )


def _check_support(mean_W: np.ndarray, counts: Counts) -> None:
    """Raise ValueError for a zero component of W, or a zero row of W where V has counts."""
    if (mean_W.sum(axis=0) <= 0).any():
        k = int(np.flatnonzero(mean_W.sum(axis=0) <= 0)[0])
        raise ValueError(f"W's component {k} is all zero; drop it (its loading is undefined)")
    dead = mean_W.sum(axis=1) <= 0
    if dead[counts.nz_rows].any():
        f = int(counts.nz_rows[dead[counts.nz_rows]][0])
        raise ValueError(
            f"W's row {counts.row[f]!r} is all zero but V_new has counts there (zero rate, "
            "impossible under the model); drop that feature or give W positive entries"
        )


def _map_loadings(
    counts: Counts, Ws: np.ndarray, priors: GammaPriors | None, a: np.ndarray, src: dict
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return the penalised KL minimiser given mean W, as draws (1, 1, K, N), and attrs."""
    if priors is not None and not np.all(a >= 1):
        raise ValueError("method='map' needs prior shapes >= 1 (a mode exists only then)")
    H_map, n_iter, converged = fit_h(
        counts, Ws.mean(axis=0), priors=priors, max_iter=MAP_MAX_ITER, tol=MAP_TOL
    )
    attrs: dict[str, Any] = {
        "sampler": "penalised KL given W (poisson_nmf.optim.kl.fit_h)",
        "map_converged": bool(converged.all()),
        "map_max_sweeps": int(n_iter.max()),
    }
    if src["kind"] != "matrix":
        attrs["w_used"] = "posterior mean of W"
    return H_map[None, None], attrs


def _w_schedule(
    chains: int, draws: int, inner: int, n_w: int, src: dict
) -> tuple[np.ndarray, dict[str, Any]]:
    """Which draw of W each kept draw of H is given (chains, draws), and the cut attrs."""
    if not (chains * draws > 1 and src["kind"] != "matrix"):
        return np.zeros((chains, draws), dtype=np.int64), {}
    widx = np.round(np.linspace(0, n_w - 1, chains * draws)).astype(np.int64)
    widx = np.ascontiguousarray(widx.reshape(draws, chains).T)
    cut = {
        "note": "cut posterior: the new samples do not update W",
        "w_draws_used": int(chains * draws),
        "w_draws_available": int(n_w),
        "selection": "evenly spaced over all chains and draws of the tree "
        "(flattened chain-major), interleaved over the chains of H",
        "iterations_per_w_draw": inner,
    }
    return widx, {"cut_posterior": json.dumps(cut)}


def _pieces(
    by_col: sp.csc_array, a: np.ndarray, b: np.ndarray, W: np.ndarray, inflate: float,
    random_seed: Any,
) -> list[tuple[Any, ...]]:  # fmt: skip
    """Blocks of ``_BLOCK`` columns for :func:`block_draws`, each with its own seed."""
    pw = power(a)
    m, L = laplace(by_col, W, a, b, pw, inflate)
    starts = list(range(0, by_col.shape[1], _BLOCK))
    seeds = np.random.SeedSequence(_entropy(random_seed)).spawn(len(starts))
    pieces = []
    for i, lo in enumerate(starts):
        blk = by_col[:, lo : lo + _BLOCK]
        csc = (blk.indptr.astype(np.int64), blk.indices.astype(np.int64), blk.data)
        sl = slice(lo, lo + _BLOCK)
        pieces.append((csc, a[sl], b[sl], m[sl], L[sl], pw[sl], seeds[i]))
    return pieces


def _posterior_loadings(
    counts: Counts, Ws: np.ndarray, a: np.ndarray, b: np.ndarray, src: dict, *, draws: int,
    tune: int, chains: int, inner: int, random_seed: Any, executor: Any, progress: Any,
) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """Exact draws (chains, draws, K, N) of p(H | V, W) and the sampler's attrs."""
    F, N = counts.shape
    widx, attrs = _w_schedule(chains, draws, inner, Ws.shape[0], src)
    by_col = sp.csc_array((counts.nz_values, (counts.nz_rows, counts.nz_cols)), shape=(F, N))
    inflate = 1.0 if src["kind"] == "matrix" else _TREE_INFLATE
    pieces = _pieces(by_col, a, b, Ws.mean(axis=0), inflate, random_seed)
    fn = partial(
        block_draws, Ws=Ws, widx=widx, inner=inner, tune=tune, nu=_NU, n_is=_N_IS,
        rounds=_IS_ROUNDS, path=_PATH,
    )  # fmt: skip
    parts = map_pieces(fn, pieces, executor=executor, progress=progress, desc="loadings")
    post = np.concatenate([p[0] for p in parts], axis=2).transpose(0, 1, 3, 2)
    acc = np.concatenate([p[1] for p in parts], axis=2)
    evals = np.concatenate([p[2] for p in parts])
    grads = np.concatenate([p[3] for p in parts])
    attrs["logp_evaluations_per_sample"] = float(evals.mean()) if N else 0.0
    attrs["gradient_evaluations_per_sample"] = float(grads.mean()) if N else 0.0
    attrs["hmc_acceptance_mean"] = float(acc[1].mean()) if N else 0.0
    attrs["acceptance_rate_min"] = float(acc[0].min())
    attrs["acceptance_rate_mean"] = float(acc[0].mean())
    attrs |= {"sampler": SAMPLER, "draws": draws, "tune": tune, "chains": chains}
    return post, attrs


def _loadings_tree(
    post: np.ndarray, attrs: dict[str, Any], comp: np.ndarray, columns: np.ndarray
) -> xr.DataTree:
    """Build the result tree: H (chain, draw, component, column) in ``posterior``."""
    H = xr.DataArray(
        post,
        dims=("chain", "draw", "component", "column"),
        coords={
            "chain": np.arange(post.shape[0]),
            "draw": np.arange(post.shape[1]),
            "component": comp,
            "column": columns,
        },
        name="H",
    )
    return xr.DataTree.from_dict({"/": xr.Dataset(attrs=attrs), "posterior": xr.Dataset({"H": H})})


def _entropy(seed: Any) -> Any:
    """Return SeedSequence entropy from an int, Generator, SeedSequence or None."""
    if isinstance(seed, np.random.Generator):
        return seed.integers(2**63)
    if isinstance(seed, np.random.SeedSequence):
        return seed.entropy
    return seed


def _priors_dict(priors: GammaPriors) -> dict:
    return {k: np.asarray(v).tolist() for k, v in asdict(priors).items()}
