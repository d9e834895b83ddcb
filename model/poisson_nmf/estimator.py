"""A scikit-learn estimator: :class:`PoissonNMF`, X (samples x features) ~ loadings @ components_.

The library works with V (F x N: features as rows, samples as columns) = W H; the
estimator takes scikit-learn's orientation, X = V^T (samples as rows), so
``components_`` = W^T normalised (each row sums to one: a distribution over features, as
topics and signatures are read) and the loadings = H^T carry the scale, so that
``inverse_transform(transform(X))`` approximates X.

Decisions (see the class docstring): ``priors=None`` is flat for ``method="map"`` (plain
KL-NMF, as scikit-learn's ``NMF(beta_loss="kullback-leibler")``) and ``GammaPriors()``
for the posterior methods (flat priors give an improper posterior). The loadings of new
samples (``transform``) are the flat-prior MAP given ``components_`` for every method:
the components are normalised, so the loadings are on the scale of the counts, where a
prior set on the fit's scale does not carry over; given W the flat-prior posterior of
the loadings is proper, and it is what ``return_std`` summarises.
"""

from __future__ import annotations

import inspect
import numbers
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln, xlogy
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from ._validation import DEFAULT_PRIORS, check_choice, check_priors
from .data import Counts, ZeroRowsColumnsWarning, as_counts, check_n_components
from .divergence import kl_divergence
from .optim.kl import fit_h, kl_nmf
from .priors import GammaPriors

__all__ = ["PoissonNMF", "completion_score"]

_METHODS = ("map", "nuts", "vi")
# the held-out half of each sample in score(): fixed, so that scores are comparable
_SCORE_SEED = 0
# samples per chunk in completion_score (bounds the dense (F, chunk) arrays)
_SCORE_CHUNK = 256
_LOADINGS_TOL = 1e-12
_RATE_FLOOR = 1e-300
_SMOOTHING = 1e-6
_LOADINGS_MAX_ITER = 2000


def _counts(V: Any, name: str, integer: bool) -> Counts:
    with warnings.catch_warnings():
        # empty documents and unused features are normal in sample x feature tables
        warnings.simplefilter("ignore", ZeroRowsColumnsWarning)
        return as_counts(V, name=name, integer=integer, allow_all_zero=True)


def completion_score(V: Any, W: np.ndarray, *, random_seed: Any = _SCORE_SEED) -> tuple[float, int]:
    """Held-out Poisson log-likelihood per entry by document completion.

    For each sample (column of V) a seeded half of its entries (each entry held out with
    probability 1/2) is left out; the other half fits the sample's loadings given W (the
    flat-prior MAP, :func:`poisson_nmf.optim.kl.fit_h` with the held-out half masked), and the
    held-out half is scored by its Poisson log-likelihood under WH (Wallach et al. 2009,
    "document completion"). Nothing of a held-out entry enters its own prediction.
    Each component is first mixed with the uniform distribution over the F features at
    weight 1e-6: a KL-NMF component is exactly 0 on some features, where a held-out
    count would otherwise score log 0 = -inf and decide the comparison alone.

    Parameters
    ----------
    V : array_like or sparse matrix, shape (F, N)
        Non-negative values (counts; others are scored with log Γ(v + 1) for log v!).
    W : numpy.ndarray, shape (F, K)
        Fixed components.
    random_seed : int
        Seed of the held-out halves (default fixed, so scores are comparable).

    Returns
    -------
    score : float
        Mean Poisson log-likelihood per held-out entry (higher is better).
    n_heldout : int
        Entries held out.
    """
    counts = _counts(V, "V", integer=False)
    F, N = counts.shape
    W = np.asarray(W, dtype=np.float64)
    # exact zeros of a KL-NMF component would score a held-out count there as -inf
    # (log 0): each component is mixed with the uniform distribution at weight 1e-6,
    # which leaves every rate that is not tiny as it was
    W = (1.0 - _SMOOTHING) * W + _SMOOTHING * W.sum(axis=0) / F
    vals = counts.values
    rng = np.random.default_rng(random_seed)
    total, n_held = 0.0, 0
    for lo in range(0, N, _SCORE_CHUNK):
        hi = min(N, lo + _SCORE_CHUNK)
        held = rng.random((F, hi - lo)) < 0.5
        block = vals[:, lo:hi]
        dense = block.toarray() if sp.issparse(block) else np.asarray(block)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ZeroRowsColumnsWarning)
            fit_part = as_counts(dense, mask=held, integer=False, allow_all_zero=True)
        H, _, _ = fit_h(fit_part, W, max_iter=_LOADINGS_MAX_ITER, tol=_LOADINGS_TOL)
        v = dense[held]
        # a sample whose fitting half is all zero has loadings 0: its rate is floored
        lh = np.maximum((W @ H)[held], _RATE_FLOOR)
        ll = xlogy(v, lh) - lh - gammaln(v + 1.0)
        total += float(ll.sum())
        n_held += int(held.sum())
    return total / max(n_held, 1), n_held


def _seed(random_state: Any) -> Any:
    """Turn scikit-learn's random_state into an int, Generator or None for the library."""
    if random_state is None or isinstance(random_state, numbers.Integral | np.random.Generator):
        return random_state
    return int(check_random_state(random_state).randint(2**31 - 1))


class PoissonNMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Poisson NMF as a scikit-learn transformer: X ≈ loadings @ components_.

    Parameters
    ----------
    n_components : int
        K.
    method : {"map", "nuts", "vi"}
        ``"map"``: the (penalised) KL-NMF point estimate (:func:`poisson_nmf.kl_nmf`);
        any non-negative X (the generalised KL divergence is defined for it).
        ``"nuts"``: the posterior by :func:`poisson_nmf.sample_posterior`, components
        its posterior mean; X must be counts. ``"vi"``: the same with
        ``sample_posterior(method="vi")`` where this version has it (else fit raises).
    priors : GammaPriors or None
        ``None``: flat for ``"map"`` (so it agrees with scikit-learn's
        ``NMF(beta_loss="kullback-leibler")``) and ``GammaPriors()`` for the posterior
        methods (flat priors give an improper posterior).
    random_state : int, RandomState, Generator or None
        Seeds the fit (the start of the KL solver, the sampler).
    max_iter, tol : int, float
        Iterations and relative tolerance of :func:`poisson_nmf.kl_nmf` (``"map"``).
    draws, tune, chains : int
        Posterior sampling settings (``"nuts"``, ``"vi"``) and the draws behind
        ``transform(X, return_std=True)``.
    alpha_W, alpha_H, l1_ratio : float, float or "same", float
        scikit-learn's L1 regularisation (``NMF``'s names and defaults), as exponential
        priors: with ``l1_ratio=1``, X of shape (n_samples, n_features) and the loadings
        playing scikit-learn's W, the loadings get Gamma(1, rate n_features * alpha_W)
        priors and the components Gamma(1, rate n_samples * alpha_H) (``"same"``:
        alpha_W), so the MAP objective is scikit-learn's (see Notes). Any alpha > 0 needs
        ``l1_ratio=1`` (the L2 part is a Gaussian-type penalty, which no Gamma prior
        gives) and excludes ``priors``. A zero alpha leaves that factor flat.

    Attributes
    ----------
    components_ : numpy.ndarray, shape (n_components, n_features)
        Each row sums to one (a component with no weight is uniform).
    n_components_ : int
    n_features_in_ : int
    feature_names_in_ : numpy.ndarray of str
        When X had string column names.
    n_iter_ : int
        Iterations of the KL solver (``"map"``), draws per chain otherwise.
    reconstruction_err_ : float
        scikit-learn's ``NMF(beta_loss="kullback-leibler")`` figure: sqrt(2 D_KL(X || WH))
        on the training data, at the fit (``"map"``) or at the posterior means of W and H
        (``"nuts"``, ``"vi"``).
    fit_ : KLResult or None
        The KL-NMF fit (``"map"``).
    idata_ : xarray.DataTree or None
        The posterior (``"nuts"``, ``"vi"``), for :func:`poisson_nmf.diagnose` and
        :func:`poisson_nmf.write_report`.

    Notes
    -----
    ``transform`` gives each sample's loadings as the flat-prior MAP given
    ``components_`` (the KL minimiser, solved column by column to rounding: the result
    for a sample does not depend on the others); with ``alpha_W > 0`` the MAP under the
    loadings' exponential prior, as scikit-learn's ``transform`` does.

    The alpha mapping. scikit-learn's ``NMF(beta_loss="kullback-leibler",
    l1_ratio=1)`` minimises (``sklearn/decomposition/_nmf.py``,
    ``_compute_regularization``)::

        D_KL(X || W_sk H_sk) + alpha_W n_features |W_sk|_1 + alpha_H n_samples |H_sk|_1

    with W_sk (n_samples, K) the loadings and H_sk (K, n_features) the components. In
    this library's orientation V = X^T (F x N), W = H_sk^T, H = W_sk^T, and the negative
    log posterior of V ~ Poisson(WH) with exponential (Gamma(1, b)) priors is
    D_KL(V || WH) + b_W Σ W + b_H Σ H + const: the same objective when
    b_H = n_features alpha_W (rate of the loadings) and b_W = n_samples alpha_H (rate of
    the components), i.e. alpha_W = b_H / F and alpha_H = b_W / N. ``fit_transform(X)`` is
    ``fit(X).transform(X)``. ``score`` is held-out (document completion, see
    :func:`completion_score`), so ``GridSearchCV`` over ``n_components`` compares ranks
    on what the fit did not see.
    """

    def __init__(
        self,
        n_components: int = 10,
        *,
        method: str = "map",
        priors: GammaPriors | None = None,
        random_state: Any = None,
        max_iter: int = 1000,
        tol: float = 1e-7,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        alpha_W: float = 0.0,
        alpha_H: float | str = "same",
        l1_ratio: float = 0.0,
    ) -> None:
        self.n_components = n_components
        self.method = method
        self.priors = priors
        self.random_state = random_state
        self.max_iter = max_iter
        self.tol = tol
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True
        return tags

    @property
    def _n_features_out(self) -> int:
        return int(self.components_.shape[0])

    def _check_X(self, X: Any, *, reset: bool, where: str) -> Any:
        X = validate_data(
            self, X, reset=reset, accept_sparse=("csr", "csc"), dtype=(np.float64, np.float32)
        )
        check_non_negative(X, f"PoissonNMF.{where} (X must be non-negative)")
        return X

    def _counts(self, X: Any, *, counts_needed: bool) -> Counts:
        """V = X^T as Counts; counts (whole numbers) when ``counts_needed``."""
        try:
            return _counts(X.T, "X (transposed: features x samples)", integer=counts_needed)
        except ValueError as err:
            if counts_needed and "non-integer" in str(err):
                why = (
                    "transform(X, return_std=True) needs counts (whole numbers) in X (its sd "
                    "is a Poisson posterior's)"
                    if self.method == "map"
                    else f"method={self.method!r} needs counts (whole numbers) in X"
                )
                fix = (
                    "leave return_std out for other non-negative data"
                    if self.method == "map"
                    else "use method='map' for other non-negative data"
                )
                raise ValueError(f"{why}: {err}; {fix}") from None
            raise

    def fit(self, X: Any, y: Any = None) -> PoissonNMF:
        """Fit the components to X (n_samples, n_features), non-negative.

        Raises
        ------
        ValueError
            Negative, NaN or infinite X; fractional X for ``"nuts"``/``"vi"``; an
            unknown method; ``"vi"`` where ``sample_posterior`` has no such method.
        TypeError
            ``n_components`` not an integer, ``priors`` not a GammaPriors.
        """
        X = self._check_X(X, reset=True, where="fit")
        K = check_n_components(self.n_components)
        check_choice(self.method, "method", _METHODS)
        check_priors(self.priors)
        posterior = self.method != "map"
        counts = self._counts(X, counts_needed=posterior)
        if counts.nz_values.size == 0:
            raise ValueError("X is all zeros; there is nothing to factorise")
        priors = self._alpha_priors(X.shape[0], X.shape[1], posterior=posterior)
        seed = _seed(self.random_state)
        self.fit_: Any = None
        self.idata_: Any = None
        if not posterior:
            res = kl_nmf(
                counts, K, priors=priors, max_iter=self.max_iter, tol=self.tol,
                random_seed=seed,
            )  # fmt: skip
            W, H = res.W, res.H
            self.fit_ = res
            self.n_iter_ = int(res.n_iter)
        else:
            W, H = self._fit_posterior(counts, K, seed, priors)
            self.n_iter_ = int(self.draws)
        # scikit-learn's NMF(beta_loss="kullback-leibler"): sqrt(2 D_KL(X || W_sk H_sk)) at
        # the fit (sklearn/decomposition/_nmf.py, _beta_divergence(square_root=True))
        # (D_KL >= 0; at an exact fit its sum can round to -1e-16, whose sqrt is NaN)
        kl = max(kl_divergence(counts, (W, H)), 0.0)
        self.reconstruction_err_ = float(np.sqrt(2.0 * kl))
        scale = W.sum(axis=0)
        # the components' scales: an L1 penalty on the loadings is not scale-free, so
        # transform applies it on the scale the fit had (see _loadings_priors)
        self._component_scale = np.where(scale > 0, scale, 1.0)
        F = W.shape[0]
        comps = np.where(scale > 0, W / np.where(scale > 0, scale, 1.0), 1.0 / F)
        self.components_ = np.ascontiguousarray(comps.T)
        self.n_components_ = K
        return self

    def _alphas(self) -> tuple[float, float]:
        """(alpha_W, alpha_H) checked; raises for an L2 part or priors given as well."""
        a_h = self.alpha_W if isinstance(self.alpha_H, str) else self.alpha_H
        if isinstance(self.alpha_H, str) and self.alpha_H != "same":
            raise ValueError(f"alpha_H must be a float or 'same', got {self.alpha_H!r}")
        for name, v in (("alpha_W", self.alpha_W), ("alpha_H", a_h), ("l1_ratio", self.l1_ratio)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        if self.l1_ratio > 1:
            raise ValueError(f"l1_ratio must be in [0, 1], got {self.l1_ratio!r}")
        alpha_w, alpha_h = float(self.alpha_W), float(a_h)
        if (alpha_w > 0 or alpha_h > 0) and self.l1_ratio != 1:
            raise ValueError(
                f"alpha_W/alpha_H > 0 need l1_ratio=1 here, got l1_ratio={self.l1_ratio!r}: "
                "an L1 penalty is an exponential (Gamma(1, rate)) prior, while the L2 part "
                "is a Gaussian-type penalty with no Gamma-prior form; pass l1_ratio=1, or "
                "set alpha_W=alpha_H=0 and give priors=GammaPriors(...)"
            )
        if (alpha_w > 0 or alpha_h > 0) and self.priors is not None:
            raise ValueError(
                "give either priors or alpha_W/alpha_H (which set exponential priors), not "
                "both; set alpha_W=0 and alpha_H=0 to use priors"
            )
        return alpha_w, alpha_h

    def _alpha_priors(
        self, n_samples: int, n_features: int, *, posterior: bool
    ) -> GammaPriors | None:
        """``priors``, or the exponential priors that alpha_W/alpha_H stand for.

        Loadings (H, K x n_samples): rate n_features * alpha_W; components (W,
        n_features x K): rate n_samples * alpha_H (see the class Notes). A zero alpha is
        a rate of 1e-300, flat to rounding (GammaPriors needs rates > 0).
        """
        alpha_w, alpha_h = self._alphas()
        if alpha_w == 0 and alpha_h == 0:
            return self.priors
        if posterior and min(alpha_w, alpha_h) == 0:
            raise ValueError(
                f"method={self.method!r} needs alpha_W > 0 and alpha_H > 0 (got "
                f"{alpha_w} and {alpha_h}): a zero alpha is a flat prior, which makes the "
                "posterior improper; give both, or use method='map'"
            )
        return GammaPriors(
            w_shape=1.0,
            w_rate=max(n_samples * alpha_h, _RATE_FLOOR),
            h_shape=1.0,
            h_rate=max(n_features * alpha_w, _RATE_FLOOR),
        )

    def _loadings_priors(self) -> GammaPriors | None:
        """Return the loadings' prior in transform: None (flat) unless alpha_W > 0.

        On the scale of ``components_`` (rows summing to one) the fit's rate
        n_features * alpha_W on loadings of the unnormalised components becomes
        n_features * alpha_W / s_k for component k of column sum s_k.
        """
        alpha_w, _ = self._alphas()
        if alpha_w == 0:
            return None
        rate = self.n_features_in_ * alpha_w / self._component_scale
        return GammaPriors(h_shape=1.0, h_rate=rate[:, None])

    def _fit_posterior(
        self, counts: Counts, K: int, seed: Any, priors: GammaPriors | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sample the posterior; return the posterior means of W and of H."""
        from .sampling.api import sample_posterior

        kwargs: dict[str, Any] = {}
        if self.method == "vi":
            if "method" not in inspect.signature(sample_posterior).parameters:
                raise ValueError(
                    "method='vi' needs sample_posterior(method='vi'), which this version of "
                    "poisson-nmf does not have; use method='nuts' or 'map'"
                )
            kwargs["method"] = "vi"
        idata = sample_posterior(
            counts, K, priors=priors if priors is not None else DEFAULT_PRIORS,
            draws=self.draws, tune=self.tune, chains=self.chains, random_seed=seed,
            normalize="W", **kwargs,
        )  # fmt: skip
        self.idata_ = idata
        post = idata["posterior"].to_dataset().astype(np.float64)  # VI's draws are float32
        W = post["W"].mean(("chain", "draw")).transpose("row", "component")
        H = post["H"].mean(("chain", "draw")).transpose("component", "column")
        return np.asarray(W.values), np.asarray(H.values)

    def transform(self, X: Any, return_std: bool = False) -> Any:
        """Return the loadings of the samples in X given ``components_``.

        Parameters
        ----------
        X : array_like or sparse matrix, shape (n_samples, n_features)
        return_std : bool
            Also return the posterior sd of each loading: the exact posterior given the
            components under the flat prior whose mode the loadings are
            (:func:`poisson_nmf.fit_loadings` with ``method="posterior"``; for
            ``"nuts"``/``"vi"`` fits the cut posterior over the fit's draws of W). X must
            then be counts. Seeded by ``random_state``.

        Returns
        -------
        loadings : numpy.ndarray, shape (n_samples, n_components)
        std : numpy.ndarray, shape (n_samples, n_components)
            Only with ``return_std``.
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False, where="transform")
        counts = self._counts(X, counts_needed=self.method != "map" or return_std)
        H, _, _ = fit_h(
            counts, self.components_.T, priors=self._loadings_priors(),
            max_iter=_LOADINGS_MAX_ITER, tol=_LOADINGS_TOL,
        )  # fmt: skip
        if not return_std:
            return np.ascontiguousarray(H.T)
        from .loadings import fit_loadings

        source: Any = self.idata_ if self.idata_ is not None else self.components_.T
        tree = fit_loadings(
            counts, source, priors=self._loadings_priors(), method="posterior",
            chains=min(int(self.chains), 4), draws=250, random_seed=_seed(self.random_state),
        )  # fmt: skip
        sd = tree["posterior"]["H"].std(("chain", "draw"), ddof=1)
        return np.ascontiguousarray(H.T), np.ascontiguousarray(np.asarray(sd).T)

    def fit_transform(self, X: Any, y: Any = None, **params: Any) -> Any:
        """``fit(X).transform(X)``."""
        return self.fit(X, y).transform(X)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """``X @ components_``: loadings (n_samples, n_components) back to features."""
        check_is_fitted(self)
        X = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_components_:
            raise ValueError(
                f"X must be loadings of shape (n_samples, {self.n_components_}), got {X.shape}"
            )
        return X @ self.components_

    def score(self, X: Any, y: Any = None) -> float:
        """Held-out Poisson log-likelihood per entry (document completion), higher is better.

        For each sample a fixed, seeded half of its entries fits its loadings given
        ``components_`` and the other half is scored (:func:`completion_score`).
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False, where="score")
        return completion_score(X.T, self.components_.T)[0]
