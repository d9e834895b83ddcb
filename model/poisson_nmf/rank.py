r"""Choosing the number of components K, with its uncertainty.

:func:`select_rank` scores each K of a grid by an estimate of the expected log
predictive density (elpd) of V's entries, and picks K by a stated rule.

``method="cv"`` (masked-entry cross-validation). The observed entries are split at
random into ``folds`` folds, zeros and non-zeros separately (stratified), so each
entry is held out exactly once. For each K and fold, the penalised KL solver
(:func:`poisson_nmf.kl_nmf` with Gamma priors: the MAP) is fitted with the fold's
entries masked, and each held-out count is scored by the Poisson log probability
:math:`\log \mathrm{Poisson}(v_{fn} \mid \hat λ_{fn})` at the MAP rate
:math:`\hat λ = \hat W \hat H` -- a **plug-in** score: it ignores the posterior
uncertainty of W and H, so it rewards a K whose point estimate predicts well. The
priors keep every rate positive (flat priors can give λ = 0 at a held-out count, a
score of minus infinity). For tables with more than ``max_entries`` observed entries,
the entries scored are a stratified random subsample -- every non-zero count up to
half the budget, the rest zeros -- each weighted by its stratum's size over its
sample size (Horvitz-Thompson), so the elpd is still a sum over all entries; the
entries not drawn stay observed in every fit. No dense F x N mask is ever built: the
held-out entries reach the solver as a sparse mask.

``method="loo"`` (PSIS-LOO). For each K the posterior is sampled
(:func:`poisson_nmf.sample_posterior`) and the pointwise log-likelihood goes through
``arviz_stats.loo`` and ``arviz_stats.compare`` (Vehtari, Gelman & Gabry 2017). It
estimates the elpd of one entry given all others under the full posterior, so it
includes the posterior uncertainty that the plug-in CV leaves out; it is affordable
only for small tables (``loo_max_entries``), and with (F + N) K parameters against F N
entries many Pareto k are above 0.7 (each entry is influential for its row's and
column's factors): the table reports how many, and those K's elpd is not reliable.

When they disagree: plug-in CV scores one fit per fold, so it penalises a K whose MAP
overfits; PSIS-LOO averages over the posterior, which softens overfitting and tends
to favour larger K, while its own estimate degrades (large Pareto k) exactly where K
is large. CV holds out 1/``folds`` of the entries at once (a harder task than leaving
one out), so its elpd is lower than LOO's; the two are on the same scale (a sum of
log probabilities over the same entries) but not equal.

The table (ArviZ's conventions): ``elpd`` (sum over entries), ``se`` (its standard
error over entries, :math:`\sqrt{n \operatorname{var}(\ell_i)}` as for LOO),
``elpd_diff`` = elpd(best) - elpd(K) >= 0, 0 at the K with the highest elpd, and
``se_diff``, the paired standard error of that difference over the same entries.
The rule ``"one_se"`` (default) picks the smallest K whose ``elpd_diff`` is at most
one ``se_diff`` (Hastie, Tibshirani & Friedman 2009, sec. 7.10): more components
must earn their place. ``"best"`` picks the highest elpd.

Stability: ``n_repeats`` reruns the whole cross-validation with new fold splits and
starts; each repeat's choice and each fold's best K are counted in
:attr:`RankSelection.wins`, so a user sees how firm the choice is. The table's
pointwise values are averaged over the repeats.

Independent pieces (each K, fold and repeat) run through
:func:`poisson_nmf.parallel.map_pieces` on any ``executor``; every piece carries a
seed spawned beforehand, so the result equals the serial run's for the same seed.

References
----------
- A. Vehtari, A. Gelman and J. Gabry, "Practical Bayesian model evaluation using
  leave-one-out cross-validation and WAIC", Stat. Comput. 27 (2017).
- T. Hastie, R. Tibshirani and J. Friedman, *The Elements of Statistical Learning*,
  2nd ed. (2009), sec. 7.10 (the one-standard-error rule).
- S. Wold, "Cross-validatory estimation of the number of components in factor and
  principal components models", Technometrics 20 (1978) (entry-wise hold-out).
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import gammaln, xlogy

from ._validation import DEFAULT_PRIORS, check_choice, check_int, check_priors
from .data import Counts, ZeroRowsColumnsWarning, as_counts, check_n_components
from .exceptions import ConvergenceWarning, warn_user
from .optim.kl import kl_nmf
from .parallel import map_pieces, resolve_executor
from .priors import GammaPriors
from .progress import ProgressArg
from .rank_result import RankSelection

__all__ = ["DEFAULT_GRID", "RankSelection", "parse_components", "select_rank"]

#: K grid that ``poisson-nmf fit --components auto`` searches: 1..12 (capped by the data)
DEFAULT_GRID = tuple(range(1, 13))
_RULES = ("one_se", "best")
# Gamma(1.1, 0.1) on W and H: shape > 1 keeps every rate strictly positive (a held-out
# count never scores -inf); a small rate leaves the scale to the data
# tables up to this many entries list their zeros; larger ones sample them by rejection
_ENUMERATE = 20_000_000
_CV_PRIORS = GammaPriors(w_shape=1.1, w_rate=0.1, h_shape=1.1, h_rate=0.1)


# ---------------------------------------------------------------------------------------
# input


def parse_components(text: str) -> list[int]:
    """Parse a K grid: ``"2:12"`` (both ends included), ``"2:12:2"`` or ``"2,4,6"``.

    Parameters
    ----------
    text : str
        The grid as written on the command line.

    Returns
    -------
    list of int
        The K values, increasing, without repeats.

    Raises
    ------
    ValueError
        If ``text`` is malformed, or gives fewer than two K or a K below 1.
    """
    s = str(text).strip()
    hint = "write e.g. '2:12' (2 to 12 inclusive), '2:12:2' or '2,4,6'"
    try:
        if ":" in s:
            parts = [int(p) for p in s.split(":")]
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] < 1):
                raise ValueError
            ks = list(range(parts[0], parts[1] + 1, parts[2] if len(parts) == 3 else 1))
        else:
            ks = [int(p) for p in s.split(",") if p.strip()] if s else []
            if s and len(ks) != len(s.split(",")):
                raise ValueError
    except ValueError:
        raise ValueError(f"--components {text!r} is not a K grid; {hint}") from None
    return _check_grid(ks, f"--components {text!r}", hint)


def _check_grid(ks: list[int], what: str, hint: str) -> list[int]:
    if any(k < 1 for k in ks):
        raise ValueError(f"{what} has K < 1; every K must be a positive integer ({hint})")
    ks = sorted(set(ks))
    if len(ks) < 2:
        raise ValueError(
            f"{what} gives {len(ks)} K value(s) ({ks}); choosing K needs at least two ({hint})"
        )
    return ks


def _as_grid(n_components: Any) -> list[int]:
    hint = "pass e.g. n_components=range(2, 13)"
    if isinstance(n_components, str):
        return parse_components(n_components)
    if isinstance(n_components, numbers.Integral) or not isinstance(n_components, Iterable):
        raise TypeError(
            f"n_components must be an iterable of K values, got {n_components!r}; {hint}"
        )
    return _check_grid([check_n_components(k) for k in n_components], "n_components", hint)


# ---------------------------------------------------------------------------------------
# held-out entries


@dataclass(frozen=True, slots=True)
class _Split:
    """Entries scored (flat indices into F x N), their counts, weights and folds."""

    flat: np.ndarray
    values: np.ndarray
    weights: np.ndarray
    fold: np.ndarray
    subsampled: bool


def _sample_zeros(n: int, total: int, taken: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct flat indices in [0, total) outside the sorted ``taken``, sorted."""
    if total <= _ENUMERATE:
        free = np.setdiff1d(np.arange(total, dtype=np.int64), taken, assume_unique=True)
        return free if n == free.size else np.sort(rng.choice(free, size=n, replace=False))
    # rejection: draw flat indices, drop the taken ones, until n distinct remain
    share = (total - taken.size) / total
    got = np.zeros(0, dtype=np.int64)
    while got.size < n:
        draw = rng.integers(0, total, size=int(2 * (n - got.size) / share) + 16, dtype=np.int64)
        pos = np.minimum(np.searchsorted(taken, draw), max(taken.size - 1, 0))
        hit = taken[pos] == draw if taken.size else np.zeros(draw.size, dtype=bool)
        got = np.unique(np.concatenate([got, draw[~hit]]))
    return np.sort(rng.choice(got, size=n, replace=False))


def _assign_folds(n: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each of n entries: a random permutation of (0, 1, ..., folds-1, 0, ...)."""
    return rng.permutation(np.arange(n) % folds)


def _split(counts: Counts, folds: int, max_entries: int, rng: np.random.Generator) -> _Split:
    F, N = counts.shape
    total = F * N
    nz = np.sort(np.ravel_multi_index((counts.nz_rows, counts.nz_cols), (F, N)))
    miss = np.sort(np.ravel_multi_index((counts.missing_rows, counts.missing_cols), (F, N)))
    taken = np.union1d(nz, miss)
    n_zero = total - taken.size
    n_nz = nz.size
    subsampled = counts.n_observed > max_entries
    if subsampled:
        m_nz = min(n_nz, max_entries // 2)
        m_zero = min(n_zero, max_entries - m_nz)
    else:
        m_nz, m_zero = n_nz, n_zero
    idx_nz = np.sort(rng.choice(n_nz, size=m_nz, replace=False)) if m_nz < n_nz else None
    nz_flat = nz if idx_nz is None else nz[idx_nz]
    order = np.lexsort((counts.nz_cols, counts.nz_rows))  # row-major, as nz is sorted
    nz_vals = counts.nz_values[order]
    nz_vals = nz_vals if idx_nz is None else nz_vals[idx_nz]
    zero_flat = _sample_zeros(m_zero, total, taken, rng) if m_zero else np.zeros(0, np.int64)
    flat = np.concatenate([nz_flat, zero_flat])
    values = np.concatenate([nz_vals, np.zeros(zero_flat.size)])
    weights = np.concatenate(
        [np.full(m_nz, n_nz / max(m_nz, 1)), np.full(m_zero, n_zero / max(m_zero, 1))]
    )
    # stratified: each fold gets its share of the non-zeros and of the zeros
    fold = np.concatenate([_assign_folds(m_nz, folds, rng), _assign_folds(m_zero, folds, rng)])
    return _Split(flat, values, weights, fold, subsampled)


def _heldout_counts(counts: Counts, flat: np.ndarray) -> Counts:
    """Mask the entries at ``flat`` too (a sparse mask, never a dense one)."""
    F, N = counts.shape
    r, c = np.unravel_index(flat, (F, N))
    rows = np.concatenate([counts.missing_rows, r])
    cols = np.concatenate([counts.missing_cols, c])
    mask = sp.coo_array((np.ones(rows.size, dtype=bool), (rows, cols)), shape=(F, N))
    with warnings.catch_warnings():
        # a row or column whose counts are all held out in this fold is expected
        warnings.simplefilter("ignore", ZeroRowsColumnsWarning)
        return as_counts(counts.values, mask=mask)


def _poisson_logpmf(v: np.ndarray, lam: np.ndarray) -> np.ndarray:
    return xlogy(v, lam) - lam - gammaln(v + 1.0)


# ---------------------------------------------------------------------------------------
# pieces (module level: picklable for process pools and Dask)


@dataclass(frozen=True, slots=True)
class _CVPiece:
    repeat: int
    K: int
    fold: int
    flat: np.ndarray
    values: np.ndarray
    seed: np.random.SeedSequence


def _cv_piece(
    piece: _CVPiece,
    *,
    counts: Counts,
    priors: GammaPriors,
    n_restarts: int,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, bool]:
    """Fit the MAP with the piece's entries masked; their Poisson log probabilities."""
    train = _heldout_counts(counts, piece.flat)
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported per piece instead
        for s in piece.seed.spawn(n_restarts):
            res = kl_nmf(train, piece.K, priors=priors, max_iter=max_iter, tol=tol,
                         random_seed=np.random.default_rng(s))  # fmt: skip
            if best is None or res.objective < best.objective:
                best = res
    assert best is not None
    F, N = counts.shape
    r, c = np.unravel_index(piece.flat, (F, N))
    lam = np.einsum("ik,ki->i", best.W[r], best.H[:, c])
    return _poisson_logpmf(piece.values, lam), best.converged


def _loo_piece(
    piece: tuple[int, np.random.SeedSequence], *, counts: Counts, priors: GammaPriors,
    sample_kwargs: dict
) -> tuple[Any, np.ndarray]:  # fmt: skip
    """Sample the posterior for one K; its PSIS-LOO (ELPDData) and pointwise elpd."""
    import arviz_stats as azs

    from .sampling.api import sample_posterior

    K, seed = piece
    tree = sample_posterior(counts, K, priors=priors, pointwise_draws=None, progress=False,
                            random_seed=np.random.default_rng(seed), **sample_kwargs)  # fmt: skip
    small = _loo_tree(tree)
    with warnings.catch_warnings():
        # large Pareto k are reported in the table
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        elpd = azs.loo(small, pointwise=True, var_name="V")
    return elpd, np.asarray(elpd.elpd_i).ravel()


def _loo_tree(tree: Any) -> Any:
    """Keep the posterior (W, H only) and log-likelihood groups that PSIS-LOO needs."""
    import xarray as xr

    ll = tree["log_likelihood"].to_dataset()
    post = tree["posterior"].to_dataset()[["W", "H"]].sel(draw=ll["draw"].values)
    return xr.DataTree.from_dict({"posterior": post, "log_likelihood": ll})


# ---------------------------------------------------------------------------------------
# the table


def _wvar(x: np.ndarray, w: np.ndarray) -> float:
    """Weighted variance of x, weights w (the population variance the weights estimate)."""
    m = np.sum(w * x) / np.sum(w)
    return float(np.sum(w * (x - m) ** 2) / np.sum(w))


def _table(ks: list[int], lp: np.ndarray, w: np.ndarray, n_params: list[int]) -> pd.DataFrame:
    """elpd, se, elpd_diff, se_diff from pointwise scores lp (n_K, n) and weights w."""
    n_total = float(np.sum(w))
    elpd = lp @ w
    se = np.array([math.sqrt(n_total * _wvar(x, w)) for x in lp])
    top = int(np.argmax(elpd))
    diff = elpd[top] - elpd
    se_diff = np.array([math.sqrt(n_total * _wvar(lp[top] - x, w)) for x in lp])
    return pd.DataFrame(
        {
            "n_components": ks,
            "elpd": elpd,
            "se": se,
            "elpd_diff": diff,
            "se_diff": se_diff,
            "n_params": n_params,
        }
    )


def _choose(table: pd.DataFrame, rule: str) -> int:
    ks = table["n_components"].to_numpy()
    if rule == "best":
        return int(ks[int(np.argmin(table["elpd_diff"].to_numpy()))])
    ok = table[table["elpd_diff"] <= table["se_diff"]]
    return int(ok["n_components"].min())


# ---------------------------------------------------------------------------------------
# the public entry point


def select_rank(
    V: Any,
    n_components: Iterable[int] | str,
    *,
    method: Literal["cv", "loo"] = "cv",
    folds: int = 5,
    executor: Any = None,
    random_seed: Any = None,
    rule: Literal["one_se", "best"] = "one_se",
    priors: GammaPriors | None = None,
    n_restarts: int = 1,
    n_repeats: int = 1,
    max_iter: int = 1000,
    tol: float = 1e-5,
    max_entries: int = 2_000_000,
    loo_max_entries: int = 5000,
    sample_kwargs: dict | None = None,
    mask: Any = None,
    progress: ProgressArg = None,
) -> RankSelection:
    """Choose the number of components K by held-out predictive density.

    Parameters
    ----------
    V : array_like, DataFrame, sparse matrix, DataArray or Counts, shape (F, N)
        Counts; see :func:`poisson_nmf.as_counts`.
    n_components : iterable of int, or str
        The K grid, at least two distinct values (``range(2, 13)``; a string such as
        ``"2:12"`` -- both ends included -- or ``"2,4,6"`` is parsed by
        :func:`parse_components`).
    method : {"cv", "loo"}
        ``"cv"``: masked-entry cross-validation of the MAP (plug-in score); ``"loo"``:
        PSIS-LOO of posterior samples (small tables only). See the module docstring
        for what each estimates and when they disagree.
    folds : int
        Number of folds (``method="cv"``), at least 2; each scored entry is held out
        exactly once per repeat.
    executor : None, concurrent.futures.Executor or dask.distributed.Client
        Where the independent pieces (K x fold x repeat, or K) run; see
        :func:`poisson_nmf.parallel.map_pieces`. Results equal the serial run's.
    random_seed : int, numpy.random.Generator or None
        Seeds the fold split and every fit (one spawned seed per piece).
    rule : {"one_se", "best"}
        ``"one_se"``: the smallest K whose elpd_diff is at most its se_diff;
        ``"best"``: the highest elpd.
    priors : GammaPriors, optional
        Priors of the fits (shapes >= 1 for ``"cv"``). Default for ``"cv"``:
        Gamma(1.1, 0.1) on W and H (shape > 1 keeps held-out rates positive, the small
        rate leaves the scale to the data); for ``"loo"``: ``GammaPriors()``.
    n_restarts : int
        Random starts per fit (``"cv"``); the lowest objective is kept.
    n_repeats : int
        Repeats of the whole cross-validation with new folds and starts, for the
        stability counts in :attr:`RankSelection.wins`; the table averages the
        pointwise scores over repeats.
    max_iter, tol : int, float
        Passed to :func:`poisson_nmf.kl_nmf` (``tol`` looser than its default: the
        elpd differences that decide K are far above what the last digits change).
    max_entries : int
        Above this many observed entries, a stratified weighted subsample of this
        many is scored (see the module docstring).
    loo_max_entries : int
        ``method="loo"`` refuses tables with more observed entries (each K is a full
        posterior run, and ArviZ's PSIS loops over entries in Python).
    sample_kwargs : dict, optional
        ``method="loo"``: keywords of :func:`poisson_nmf.sample_posterior` (default
        ``draws=500, tune=500, chains=2``).
    mask : array_like of bool, shape (F, N), optional
        Missing entries (``True``); they are never scored.
    progress : bool, None or callable
        A bar counting finished fits (see :func:`poisson_nmf.parallel.map_pieces`).

    Returns
    -------
    RankSelection
        ``table``, ``best``, ``rule``, per-fold values, win counts, ``plot()``.

    Raises
    ------
    TypeError
        If ``n_components`` is not an iterable of integers, or ``executor`` is of an
        unknown kind.
    ValueError
        For fewer than two K, K < 1, an unknown method or rule, ``folds < 2``, flat
        priors or a shape < 1 with ``"cv"``, or a table too large for ``"loo"``.

    Warns
    -----
    UserWarning
        For K whose parameter count (F + N) K reaches the number of observed entries
        (the fit can then match every count: its elpd says little).
    """
    t0 = time.perf_counter()
    ks = _as_grid(n_components)
    if method not in ("cv", "loo"):
        raise ValueError(f"method must be 'cv' or 'loo', got {method!r}")
    check_choice(rule, "rule", _RULES)
    folds = check_int(folds, "folds", 2)
    resolve_executor(executor)  # an unknown kind fails before any work
    n_restarts = check_int(n_restarts, "n_restarts", 1)
    n_repeats = check_int(n_repeats, "n_repeats", 1)
    max_entries = check_int(max_entries, "max_entries", 2 * folds)
    if priors is None:
        priors = _CV_PRIORS if method == "cv" else DEFAULT_PRIORS
    check_priors(priors, allow_flat=False, need_mode=method == "cv")
    counts = as_counts(V, mask=mask)
    F, N = counts.shape
    n_obs = counts.n_observed
    if method == "cv" and folds > min(n_obs, max_entries) // 2:
        raise ValueError(
            f"folds = {folds} is too many for {min(n_obs, max_entries)} scored entries: "
            "each fold must hold out at least two of them; use fewer folds"
        )
    n_params = [(F + N) * k for k in ks]
    big = [k for k, p in zip(ks, n_params, strict=True) if p >= n_obs]
    if big:
        warn_user(
            f"K = {big}: (F + N) K parameters reach the {n_obs} observed entries; such a "
            "fit can match every count and its elpd says little -- use a smaller grid",
            UserWarning,
        )
    rng = np.random.default_rng(random_seed)
    settings: dict[str, Any] = {
        "n_components": ks,
        "method": method,
        "folds": folds,
        "rule": rule,
        "priors": {k: np.asarray(getattr(priors, k)).tolist()
                   for k in ("w_shape", "w_rate", "h_shape", "h_rate")},
        "n_restarts": n_restarts,
        "n_repeats": n_repeats,
        "max_iter": max_iter,
        "tol": tol,
        "max_entries": max_entries,
        "random_seed": random_seed if isinstance(random_seed, int | None) else repr(random_seed),
        "shape": [F, N],
        "n_observed": n_obs,
    }  # fmt: skip
    if method == "loo":
        return _select_loo(counts, ks, priors, rule, n_params, executor, rng, settings,
                           loo_max_entries, sample_kwargs, progress, t0)  # fmt: skip

    return _select_cv(counts, ks, priors, rule, n_params, executor, rng, settings, progress, t0,
                      folds=folds, n_restarts=n_restarts, n_repeats=n_repeats,
                      max_iter=max_iter, tol=tol, max_entries=max_entries)  # fmt: skip


# ---------------------------------------------------------------------------------------
# the stages of the cross-validation


def _select_cv(counts: Counts, ks: list[int], priors: GammaPriors, rule: str,
               n_params: list[int], executor: Any, rng: np.random.Generator, settings: dict,
               progress: ProgressArg, t0: float, *, folds: int, n_restarts: int, n_repeats: int,
               max_iter: int, tol: float, max_entries: int) -> RankSelection:  # fmt: skip
    """Split, fit every piece, score the held-out entries, tabulate and choose K."""
    splits = [_split(counts, folds, max_entries, r) for r in rng.spawn(n_repeats)]
    pieces = _cv_pieces(splits, ks, folds, rng)
    fn = partial(_cv_piece, counts=counts, priors=priors, n_restarts=n_restarts,
                 max_iter=int(max_iter), tol=float(tol))  # fmt: skip
    out = map_pieces(fn, pieces, executor=executor, progress=progress, desc="rank: fits")
    n_unconverged = sum(not conv for _, conv in out)
    if n_unconverged:
        warn_user(
            f"{n_unconverged} of {len(out)} fits stopped at max_iter={max_iter} before "
            f"converging (tol={tol}); raise max_iter if the table looks noisy",
            ConvergenceWarning,
        )
    lp, per_fold = _cv_scores(splits, ks, pieces, [score for score, _ in out])
    repeat_choice = []
    if n_repeats > 1:
        # entries differ between repeats only when subsampled; then each repeat's own
        # weights; the averaged table below uses repeat 0's entries in that case
        for rep, s in enumerate(splits):
            repeat_choice.append(_choose(_table(ks, lp[rep], s.weights, n_params), rule))
    if splits[0].subsampled:
        pointwise, weights = lp[0], splits[0].weights
        if n_repeats > 1:
            settings["note"] = "subsampled entries differ between repeats: table from repeat 0"
    else:
        # not subsampled: every repeat scores the same entries (in its own order)
        order = [np.argsort(s.flat) for s in splits]
        pointwise = np.mean([lp[r][:, o] for r, o in enumerate(order)], axis=0)
        weights = splits[0].weights[order[0]]
    table = _table(ks, pointwise, weights, n_params)
    best = _choose(table, rule)
    wins = _wins(ks, per_fold, repeat_choice)
    settings["subsampled"] = splits[0].subsampled
    settings["n_scored"] = int(splits[0].flat.size)
    settings["n_unconverged"] = int(n_unconverged)
    return RankSelection(table=table, best=best, rule=rule, method="cv", folds=per_fold,
                         wins=wins, pointwise=pointwise, weights=weights, settings=settings,
                         elapsed_s=time.perf_counter() - t0)  # fmt: skip


def _cv_pieces(
    splits: list[_Split], ks: list[int], folds: int, rng: np.random.Generator
) -> list[_CVPiece]:
    """One piece per repeat, K and fold, each with its own seed spawned beforehand."""
    seeds = np.random.SeedSequence(int(rng.integers(2**63))).spawn(len(splits) * len(ks) * folds)
    pieces: list[_CVPiece] = []
    for rep, s in enumerate(splits):
        for K in ks:
            for f in range(folds):
                sel = s.fold == f
                pieces.append(_CVPiece(rep, K, f, s.flat[sel], s.values[sel], seeds[len(pieces)]))
    return pieces


def _cv_scores(
    splits: list[_Split], ks: list[int], pieces: list[_CVPiece], scores: list[np.ndarray]
) -> tuple[np.ndarray, pd.DataFrame]:
    """Pointwise scores per repeat, shape (n_repeats, n_K, n_scored), and per-fold elpd.

    The pointwise scores are laid out like each repeat's split entries.
    """
    lp = np.zeros((len(splits), len(ks), splits[0].flat.size))
    rows = []
    for p, score in zip(pieces, scores, strict=True):
        s = splits[p.repeat]
        sel = np.flatnonzero(s.fold == p.fold)
        lp[p.repeat, ks.index(p.K), sel] = score
        elpd = float(score @ s.weights[sel])
        rows.append({"repeat": p.repeat, "fold": p.fold, "n_components": p.K, "elpd": elpd,
                     "n_heldout": int(sel.size)})  # fmt: skip
    return lp, pd.DataFrame(rows)


def _wins(ks: list[int], per_fold: pd.DataFrame, repeat_choice: list[int]) -> pd.DataFrame:
    fold_best = per_fold.loc[per_fold.groupby(["repeat", "fold"])["elpd"].idxmax(), "n_components"]
    # one repeat chooses once: counting its choice as "wins" would read as a vote
    repeats = [repeat_choice.count(k) for k in ks] if len(repeat_choice) > 1 else np.nan
    return pd.DataFrame(
        {
            "n_components": ks,
            "fold_wins": [int((fold_best == k).sum()) for k in ks],
            "repeat_wins": repeats,
        }
    )


def _select_loo(counts: Counts, ks: list[int], priors: GammaPriors, rule: str,
                n_params: list[int], executor: Any, rng: np.random.Generator,
                settings: dict, loo_max_entries: int, sample_kwargs: dict | None,
                progress: ProgressArg, t0: float) -> RankSelection:  # fmt: skip
    import arviz_stats as azs

    if counts.n_observed > loo_max_entries:
        raise ValueError(
            f"method='loo' samples a posterior per K and runs PSIS over every entry: V has "
            f"{counts.n_observed} observed entries, more than loo_max_entries="
            f"{loo_max_entries}; use method='cv' (or raise loo_max_entries)"
        )
    if counts.has_mask:
        raise ValueError("method='loo' does not take masked entries; use method='cv'")
    kw = {"draws": 500, "tune": 500, "chains": 2, **(sample_kwargs or {})}
    settings["sample_kwargs"] = {k: repr(v) for k, v in kw.items()}
    seeds = np.random.SeedSequence(int(rng.integers(2**63))).spawn(len(ks))
    fn = partial(_loo_piece, counts=counts, priors=priors, sample_kwargs=kw)
    out = map_pieces(fn, list(zip(ks, seeds, strict=True)), executor=executor,
                     progress=progress, desc="rank: posteriors")  # fmt: skip
    pointwise = np.stack([p for _, p in out])
    weights = np.ones(pointwise.shape[1])
    table = _table(ks, pointwise, weights, n_params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = azs.compare({str(k): e for k, (e, _) in zip(ks, out, strict=True)}, round_to="none")
    # ArviZ's compare on the same entries gives |elpd_diff| and dse equal to the table's
    # (ArviZ 1 writes elpd_diff <= 0; the table keeps >= 0); its stacking weights join it
    table["weight"] = cmp.reindex([str(k) for k in ks])["weight"].to_numpy(dtype=float)
    table["p_loo"] = [float(e.p) for e, _ in out]
    table["n_bad_k"] = [int(np.sum(np.asarray(e.pareto_k) > 0.7)) for e, _ in out]
    bad = table.loc[table["n_bad_k"] > 0, "n_components"].tolist()
    if bad:
        warn_user(
            f"PSIS-LOO: K = {bad} have entries with Pareto k > 0.7 (see n_bad_k); their "
            "elpd is not reliable -- cross-check with method='cv'",
            UserWarning,
        )
    best = _choose(table, rule)
    per_fold = pd.DataFrame(columns=["repeat", "fold", "n_components", "elpd", "n_heldout"])
    # no folds and no repeats: nothing to count
    wins = pd.DataFrame({"n_components": ks, "fold_wins": np.nan, "repeat_wins": np.nan})
    return RankSelection(table=table, best=best, rule=rule, method="loo", folds=per_fold,
                         wins=wins, pointwise=pointwise, weights=weights, settings=settings,
                         elapsed_s=time.perf_counter() - t0)  # fmt: skip
