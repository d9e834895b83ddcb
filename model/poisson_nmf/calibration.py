r"""Simulation-based calibration (SBC) of a posterior sampler for Poisson NMF.

SBC (Talts et al. 2018) checks a sampler against the model it claims to sample. For
simulations :math:`s = 1, \dots, S`:

1. draw :math:`W^* \sim \mathrm{Gamma}(a_w, b_w)`, :math:`H^* \sim \mathrm{Gamma}(a_h, b_h)`
   from the priors and :math:`V \sim \mathrm{Poisson}(W^* H^*)`;
2. run the sampler on V and thin its draws to L draws :math:`\theta_1, \dots, \theta_L`;
3. for each test quantity q, the rank
   :math:`r = \#\{l : q(\theta_l, V) < q(\theta^*, V)\} \in \{0, \dots, L\}`.

If the draws are independent draws of the exact posterior, :math:`\theta^*` and the
:math:`\theta_l` are exchangeable given V, so every r is uniform on
:math:`\{0, \dots, L\}`, for any function q of the parameters *and the data*
(Modrák et al. 2023 recommend the log-likelihood: it detects a sampler that ignores
the data, which no function of the parameters alone can).

Test quantities
---------------
NMF is identified only up to the order and scale of its components (see
:mod:`poisson_nmf.align`), and different samplers (or chains) may label or scale them
differently, so only quantities that neither changes are ranked:

- ``lambda[f,n]``: chosen entries of the rate :math:`\Lambda = WH`;
- ``row_sum[f]``, ``col_sum[n]``: :math:`\sum_n \lambda_{fn}`, :math:`\sum_f \lambda_{fn}`;
- ``total``: :math:`\sum_{fn} \lambda_{fn}`;
- ``log_likelihood``: :math:`\log p(V \mid WH)`;
- ``mass[j]``: the j-th largest component mass
  :math:`m_k = (\sum_f w_{fk})(\sum_n h_{kn})` (the component's share of the total).

Uniformity tests
----------------
For each quantity, two tests of the S ranks:

- Pearson's chi-square on the ranks in B bins (:func:`scipy.stats.chisquare`, expected
  counts from the number of rank values in each bin; by default
  :math:`B = \min(20, \max(2, S / 5))`, at least 5 expected per bin);
- the pointwise order test with Cauchy combination ``pot_c`` of ``arviz_stats``
  (Tesso & Vehtari 2026; the test behind ``arviz_plots.plot_ecdf_pit``) on the
  randomised PIT values :math:`u = (r + U) / (L + 1)`, :math:`U \sim \mathrm{U}(0, 1)`
  (exactly uniform on (0, 1) when r is uniform, so a test for continuous values is
  exact). It sees local departures of the ECDF, e.g. in the tails, that coarse bins hide.

A quantity's p-value is :math:`\min(1, 2 \min(p_{\chi^2}, p_{\mathrm{pot}}))`
(Bonferroni over its two tests) and the run passes when every quantity's p-value is
at least :math:`\alpha / Q` (Bonferroni over the Q quantities; ``p_adjusted`` is
:math:`\min(1, Q p)`). Bonferroni holds under any dependence between the tests (the
quantities are strongly correlated: row sums add up to the total), so a sampler that
is exact, with independent thinned draws, fails with probability at most
:math:`\alpha` whatever the seed. The default :math:`\alpha = 0.01`: one false alarm in
a hundred runs at most, while the broken samplers of the negative controls give
p-values many orders of magnitude smaller.

Thinning
--------
Autocorrelated draws make ranks non-uniform even for an exact sampler (Talts et al.,
section 5). The L draws are spread evenly over each chain; the per-simulation table
records the smallest bulk ESS (``arviz_stats``) of the quantities over all draws, so a
reader can see whether :math:`L \le` ESS (the thinned draws then about independent).

References
----------
- S. Talts, M. Betancourt, D. Simpson, A. Vehtari and A. Gelman, "Validating Bayesian
  inference algorithms with simulation-based calibration", arXiv:1804.06788 (2018).
- M. Modrák, A. H. Moon, S. Kim, P. Bürkner, N. Huurre, K. Faltejsková, A. Gelman and
  A. Vehtari, "Simulation-based calibration checking for Bayesian computation: the
  choice of test quantities shapes sensitivity", Bayesian Analysis (2023).
- T. Säilynoja, P.-C. Bürkner and A. Vehtari, "Graphical test for discrete uniformity
  and its applications in goodness-of-fit evaluation and multiple sample comparison",
  Statistics and Computing 32 (2022).
"""

from __future__ import annotations

import functools
import json
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ._validation import DEFAULT_PRIORS, check_int, check_priors
from .parallel import map_pieces
from .priors import GammaPriors

__all__ = [
    "SBCResult",
    "default_sampler",
    "invariant_quantities",
    "prior_sampler",
    "rank_uniformity",
    "run_sbc",
    "simulate",
]

Sampler = Callable[..., xr.DataTree]
"""``sampler(V, n_components, *, priors, random_seed) -> DataTree`` with ``posterior``
``W`` (chain, draw, row, component) and ``H`` (chain, draw, component, column)."""

# ---------------------------------------------------------------------------------------
# simulation and test quantities


def simulate(
    shape: tuple[int, int],
    n_components: int,
    priors: GammaPriors = DEFAULT_PRIORS,
    *,
    random_seed: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw W, H from their Gamma priors and V from the Poisson likelihood.

    Parameters
    ----------
    shape : tuple of int
        (F, N), the shape of V.
    n_components : int
        K.
    priors : GammaPriors
        Gamma(shape, rate) priors of W and H.
    random_seed : int, numpy.random.Generator or None
        Seed.

    Returns
    -------
    W : numpy.ndarray, shape (F, K)
    H : numpy.ndarray, shape (K, N)
    V : numpy.ndarray of int64, shape (F, N)
    """
    F, N = shape
    rng = np.random.default_rng(random_seed)
    aw, bw, ah, bh = priors.arrays(F, N, n_components)
    W = rng.gamma(aw, 1.0 / bw)
    H = rng.gamma(ah, 1.0 / bh)
    return W, H, rng.poisson(W @ H).astype(np.int64)


def _default_entries(F: int, N: int, n: int = 4) -> list[tuple[int, int]]:
    rows = np.linspace(0, F - 1, n).round().astype(int)
    cols = np.linspace(0, N - 1, n).round().astype(int)
    return sorted({(int(f), int(c)) for f, c in zip(rows, cols, strict=True)})


def invariant_quantities(
    W: np.ndarray,
    H: np.ndarray,
    V: np.ndarray,
    *,
    entries: Sequence[tuple[int, int]] | None = None,
) -> xr.DataArray:
    """Quantities that the order and scale of the components cannot change.

    Parameters
    ----------
    W : numpy.ndarray, shape (..., F, K)
        W, one or many draws (leading dims e.g. chain, draw).
    H : numpy.ndarray, shape (..., K, N)
        H with the same leading dims.
    V : numpy.ndarray, shape (F, N)
        The counts (for the log-likelihood).
    entries : sequence of (f, n), optional
        Entries of WH to include (positions); default four spread along the diagonal.

    Returns
    -------
    xarray.DataArray, shape (..., Q)
        Leading dims ``dim_0, ...`` then ``quantity`` (coordinate: names such as
        ``"lambda[0,0]"``, ``"row_sum[3]"``, ``"col_sum[1]"``, ``"total"``,
        ``"log_likelihood"``, ``"mass[1]"`` (largest)).
    """
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    V = np.asarray(V)
    F, K = W.shape[-2:]
    N = H.shape[-1]
    if H.shape[-2] != K or V.shape != (F, N):
        raise ValueError(
            f"shapes do not match: W {W.shape}, H {H.shape}, V {V.shape}; "
            "need W (..., F, K), H (..., K, N), V (F, N)"
        )
    pairs = _default_entries(F, N) if entries is None else [(int(f), int(n)) for f, n in entries]
    if any(not (0 <= f < F and 0 <= n < N) for f, n in pairs):
        raise ValueError(f"entries must be (f, n) positions inside V's shape {(F, N)}, got {pairs}")
    lam = W @ H
    mass = W.sum(axis=-2) * H.sum(axis=-1)  # (..., K)
    parts: dict[str, np.ndarray] = {}
    for f, n in pairs:
        parts[f"lambda[{f},{n}]"] = lam[..., f, n]
    row, col = lam.sum(axis=-1), lam.sum(axis=-2)
    for f in range(F):
        parts[f"row_sum[{f}]"] = row[..., f]
    for n in range(N):
        parts[f"col_sum[{n}]"] = col[..., n]
    parts["total"] = lam.sum(axis=(-2, -1))
    parts["log_likelihood"] = stats.poisson.logpmf(V, lam).sum(axis=(-2, -1))
    ordered = -np.sort(-mass, axis=-1)
    for j in range(K):
        parts[f"mass[{j + 1}]"] = ordered[..., j]
    values = np.stack(list(parts.values()), axis=-1)
    dims = [f"dim_{i}" for i in range(values.ndim - 1)] + ["quantity"]
    return xr.DataArray(values, dims=dims, coords={"quantity": list(parts)})


# ---------------------------------------------------------------------------------------
# samplers


def default_sampler(draws: int = 300, tune: int = 300, chains: int = 2, **kwargs: Any) -> Sampler:
    """:func:`poisson_nmf.sample_posterior` with small settings, as an SBC sampler.

    Parameters
    ----------
    draws, tune, chains : int
        Passed to :func:`~poisson_nmf.sample_posterior`.
    **kwargs
        Other keywords of :func:`~poisson_nmf.sample_posterior` (default
        ``pointwise_draws=0``: SBC needs only W and H).

    Returns
    -------
    callable
        ``sampler(V, n_components, *, priors, random_seed) -> DataTree``.
    """
    from .sampling.api import sample_posterior

    kwargs.setdefault("pointwise_draws", 0)
    return functools.partial(sample_posterior, draws=draws, tune=tune, chains=chains, **kwargs)


def prior_sampler(draws: int = 300, chains: int = 2) -> Sampler:
    """Return a sampler that ignores the data and draws W, H from the prior.

    The negative control "likelihood dropped": quantities of W and H alone still get
    uniform ranks (the truth is also a prior draw), the log-likelihood does not.

    Parameters
    ----------
    draws, chains : int
        Draws per chain and chains.

    Returns
    -------
    callable
        ``sampler(V, n_components, *, priors, random_seed) -> DataTree``.
    """

    def sample(
        V: Any, n_components: int, *, priors: GammaPriors, random_seed: Any = None
    ) -> xr.DataTree:
        F, N = np.shape(V)
        rng = np.random.default_rng(random_seed)
        aw, bw, ah, bh = priors.arrays(F, N, n_components)
        W = rng.gamma(aw, 1.0 / bw, size=(chains, draws, F, n_components))
        H = rng.gamma(ah, 1.0 / bh, size=(chains, draws, n_components, N))
        post = xr.Dataset(
            {
                "W": (("chain", "draw", "row", "component"), W),
                "H": (("chain", "draw", "component", "column"), H),
            }
        )
        return xr.DataTree.from_dict({"posterior": post})

    return sample


# ---------------------------------------------------------------------------------------
# ranks and their uniformity


def _thin_index(n_chains: int, n_draws: int, n_keep: int) -> list[np.ndarray]:
    """Draw positions kept in each chain: ``n_keep`` in all, evenly spread."""
    if n_keep > n_chains * n_draws:
        raise ValueError(
            f"n_draws={n_keep} thinned draws asked for, but the sampler returned only "
            f"{n_chains} x {n_draws}; ask for fewer or sample more"
        )
    per_chain = [len(a) for a in np.array_split(np.arange(n_keep), n_chains)]
    return [np.linspace(0, n_draws - 1, m).round().astype(int) for m in per_chain]


def _rank_bins(n_ranks: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges of ``n_bins`` near-equal bins of the ranks 0..n_ranks-1, and their probabilities.

    Returns the first rank of each bin followed by ``n_ranks`` (length ``n_bins + 1``)
    and the probability of each bin under uniform ranks.
    """
    sizes = np.array([len(b) for b in np.array_split(np.arange(n_ranks), n_bins)])
    return np.concatenate([[0], np.cumsum(sizes)]), sizes / n_ranks


def _n_bins(n_simulations: int, n_bins: int | None, n_ranks: int) -> int:
    if n_bins is None:
        n_bins = min(20, max(2, n_simulations // 5))
    if not 2 <= n_bins <= n_ranks:
        raise ValueError(f"n_bins must be in [2, {n_ranks}] (rank values), got {n_bins}")
    return int(n_bins)


def rank_uniformity(
    ranks: Any,
    n_draws: int,
    *,
    n_bins: int | None = None,
    alpha: float = 0.01,
    random_seed: Any = None,
) -> pd.DataFrame:
    """Test each column of SBC ranks for uniformity on {0, ..., n_draws}.

    Parameters
    ----------
    ranks : array_like of int, shape (S, Q), or DataArray (simulation, quantity)
        Rank of the true value among ``n_draws`` posterior draws, per simulation and
        quantity.
    n_draws : int
        L, the number of draws ranked against (ranks lie in 0..L).
    n_bins : int, optional
        Bins of the chi-square test (default ``min(20, max(2, S // 5))``).
    alpha : float
        Family-wise level over all quantities and both tests (Bonferroni).
    random_seed : int, Generator or None
        Seeds the randomisation of the PIT values of the ``pot_c`` test.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``quantity``: ``chi2`` (statistic), ``df``, ``p_chi2``, ``p_pot_c``,
        ``p_value`` (both tests, Bonferroni), ``p_adjusted`` (times Q, capped at 1)
        and ``passed`` (``p_adjusted >= alpha``).
    """
    from arviz_stats.base import array_stats

    r, names = _as_rank_matrix(ranks)
    S, Q = r.shape
    L = int(n_draws)
    if np.any(r < 0) or np.any(r > L):
        raise ValueError(f"ranks must lie in 0..{L}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    B = _n_bins(S, n_bins, L + 1)
    edges, prob = _rank_bins(L + 1, B)
    which = np.searchsorted(edges[1:-1], r, side="right")  # (S, Q) bin of each rank
    counts = np.stack([np.bincount(which[:, q], minlength=B) for q in range(Q)])
    chi = stats.chisquare(counts, f_exp=np.broadcast_to(prob * S, counts.shape), axis=1)
    pit = _randomised_pit(r, L, np.random.default_rng(random_seed))
    p_pot = np.asarray(array_stats.uniformity_test(pit.T, axis=-1, method="pot_c")[0])
    p = np.minimum(1.0, 2.0 * np.minimum(chi.pvalue, p_pot))
    p_adj = np.minimum(1.0, Q * p)
    return pd.DataFrame(
        {
            "chi2": chi.statistic,
            "df": B - 1,
            "p_chi2": chi.pvalue,
            "p_pot_c": p_pot,
            "p_value": p,
            "p_adjusted": p_adj,
            "passed": p_adj >= alpha,
        },
        index=pd.Index(names, name="quantity"),
    )


def _as_rank_matrix(ranks: Any) -> tuple[np.ndarray, list[str]]:
    if isinstance(ranks, xr.DataArray):
        names = [str(q) for q in ranks["quantity"].values]
        r = ranks.transpose("simulation", "quantity").values
    else:
        r = np.asarray(ranks)
        if r.ndim == 1:
            r = r[:, None]
        names = [f"q{i}" for i in range(r.shape[1])]
    if r.ndim != 2 or r.shape[0] < 2 or not np.issubdtype(r.dtype, np.integer):
        raise ValueError(f"ranks must be integers of shape (S >= 2, Q), got {r.dtype} {r.shape}")
    return r, names


def _randomised_pit(r: np.ndarray, L: int, rng: np.random.Generator) -> np.ndarray:
    return (r + rng.random(r.shape)) / (L + 1)


# ---------------------------------------------------------------------------------------
# the harness


@dataclass(frozen=True)
class SBCResult:
    """Ranks of an SBC run and their uniformity tests.

    Attributes
    ----------
    ranks : xarray.DataArray of int, dims (simulation, quantity)
        Rank of the true value among ``n_draws`` thinned draws.
    pit : xarray.DataArray of float, dims (simulation, quantity)
        The randomised PIT values ``(rank + U) / (n_draws + 1)`` the ``pot_c`` test uses.
    n_draws : int
        L: ranks lie in 0..L.
    table : pandas.DataFrame
        Per quantity: ``chi2``, ``df``, ``p_chi2``, ``p_pot_c``, ``p_value``,
        ``p_adjusted``, ``passed`` (see :func:`rank_uniformity`).
    alpha : float
        Family-wise level.
    simulations : pandas.DataFrame
        Per simulation: ``seed`` (the sampler's), ``time_s``, ``n_divergent``,
        ``n_modes`` (from ``attrs["modes"]`` when the sampler reports them),
        ``min_ess_bulk`` (smallest bulk ESS of the quantities over all draws; compare
        with ``n_draws``) and ``warnings`` (categories and counts of warnings caught).
    elapsed_s : float
        Wall time of the whole run.
    settings : dict
        Shape, K, priors, n_simulations, n_draws, n_bins, alpha, seed.
    """

    ranks: xr.DataArray
    pit: xr.DataArray
    n_draws: int
    table: pd.DataFrame
    alpha: float
    simulations: pd.DataFrame
    elapsed_s: float
    settings: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether every quantity passes at the Bonferroni-corrected level."""
        return bool(self.table["passed"].all())

    @property
    def failed(self) -> list[str]:
        """Quantities whose ranks are not uniform at the corrected level."""
        return [str(q) for q in self.table.index[~self.table["passed"]]]

    def summary(self) -> str:
        """Return a text report: the table, the verdict and the run's figures."""
        S = self.ranks.sizes["simulation"]
        t = self.simulations["time_s"]
        with pd.option_context("display.width", 120, "display.max_rows", 200):
            body = self.table.to_string(
                formatters={
                    "chi2": "{:.2f}".format,
                    "p_chi2": "{:.3g}".format,
                    "p_pot_c": "{:.3g}".format,
                    "p_value": "{:.3g}".format,
                    "p_adjusted": "{:.3g}".format,
                }
            )
        verdict = "PASS" if self.passed else f"FAIL ({', '.join(self.failed)})"
        ess = self.simulations["min_ess_bulk"]
        lines = [
            f"SBC: {S} simulations, ranks among L = {self.n_draws} thinned draws, "
            f"{len(self.table)} quantities, family-wise alpha = {self.alpha} (Bonferroni)",
            body,
            f"verdict: {verdict}",
            f"time: {self.elapsed_s:.1f} s in all, {t.mean():.2f} s per simulation "
            f"(max {t.max():.2f} s)",
        ]
        if ess.notna().any():
            lines.append(
                f"min bulk ESS over quantities: median {ess.median():.0f}, "
                f"below L in {(ess < self.n_draws).mean():.0%} of simulations"
            )
        n_div = self.simulations["n_divergent"]
        if n_div.notna().any():
            lines.append(f"divergences: {int(n_div.sum())} in {int((n_div > 0).sum())} runs")
        return "\n".join(lines)

    def plot(self, kind: str = "hist", *, prob: float = 0.99) -> Any:
        """Plot the ranks: histograms with a binomial band, or the ECDF difference.

        Parameters
        ----------
        kind : {"hist", "ecdf"}
            ``"hist"``: one rank histogram per quantity (the bins of the chi-square
            test), with the central ``prob`` interval of each bin count under
            uniformity (Talts et al.). ``"ecdf"``: ``arviz_plots.plot_ecdf_pit`` of the
            PIT values (ECDF minus the uniform CDF, with the unadjusted ``pot_c``
            p-value of each quantity).
        prob : float
            Probability of the band (``"hist"``) or the highlight threshold
            (``"ecdf"``).

        Returns
        -------
        matplotlib.figure.Figure or arviz_plots.PlotCollection
        """
        if kind == "ecdf":
            from arviz_plots import plot_ecdf_pit

            dt = xr.DataTree.from_dict({"prior_sbc": xr.Dataset({"pit": self.pit})})
            return plot_ecdf_pit(
                dt, group="prior_sbc", sample_dims=["simulation"], envelope_prob=prob,
                backend="matplotlib",
            )  # fmt: skip
        if kind != "hist":
            raise ValueError(f"kind must be 'hist' or 'ecdf', got {kind!r}")
        import matplotlib.pyplot as plt

        r = self.ranks.transpose("simulation", "quantity").values
        S, Q = r.shape
        L = self.n_draws
        edges, p_bin = _rank_bins(L + 1, int(self.table["df"].iloc[0]) + 1)
        lo_edges = edges - 0.5
        lo, hi = stats.binom.interval(prob, S, p_bin)
        ncol = min(6, Q)
        nrow = -(-Q // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.2 * ncol, 1.8 * nrow),
                                 sharex=True, squeeze=False)  # fmt: skip
        for q, ax in enumerate(axes.flat):
            if q >= Q:
                ax.set_axis_off()
                continue
            ax.stairs(lo, lo_edges, baseline=hi, fill=True, color="0.85", lw=0)
            ax.hist(r[:, q], bins=lo_edges, histtype="step", color="C0")
            row = self.table.iloc[q]
            ax.set_title(f"{self.table.index[q]}\np = {row['p_adjusted']:.2g}", fontsize=8,
                         color="k" if row["passed"] else "C3")  # fmt: skip
            ax.tick_params(labelsize=7)
        fig.suptitle(f"SBC rank histograms ({S} simulations, L = {L}; band: {prob:.0%})")
        fig.tight_layout()
        return fig


def _sampler_stats(tree: xr.DataTree) -> tuple[float, float]:
    n_div = float("nan")
    if "sample_stats" in tree.children and "diverging" in tree["sample_stats"]:
        n_div = float(tree["sample_stats"]["diverging"].sum())
    n_modes = float("nan")
    if "modes" in tree.attrs:
        n_modes = float(json.loads(tree.attrs["modes"])["n_modes"])
    return n_div, n_modes


def _one_simulation(
    rs: np.random.Generator,
    *,
    shape: tuple[int, int],
    n_components: int,
    priors: GammaPriors,
    sampler: Sampler,
    entries: Sequence[tuple[int, int]],
    n_draws: int,
) -> tuple[np.ndarray, dict, list[str]]:
    """One SBC simulation: simulate, sample, rank the truth (a piece for map_pieces)."""
    from arviz_stats.base import array_stats

    W0, H0, V = simulate(shape, n_components, priors, random_seed=rs)
    seed = int(rs.integers(0, 2**31 - 1))
    t_s = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tree = sampler(V, n_components, priors=priors, random_seed=seed)
    t_s = time.perf_counter() - t_s
    post = tree["posterior"]
    W = post["W"].transpose("chain", "draw", ...).values
    H = post["H"].transpose("chain", "draw", ...).values
    q_draws = invariant_quantities(W, H, V, entries=entries)  # (chain, draw, Q)
    q_true = invariant_quantities(W0, H0, V, entries=entries)  # (Q,)
    names = [str(n) for n in q_true["quantity"].values]
    C, D = W.shape[:2]
    kept = np.concatenate(
        [q_draws.values[c, idx] for c, idx in enumerate(_thin_index(C, D, n_draws))]
    )
    ess = np.asarray(
        array_stats.ess(np.moveaxis(q_draws.values, -1, 0), chain_axis=-2, draw_axis=-1)
    )
    n_div, n_modes = _sampler_stats(tree)
    kinds = Counter(w.category.__name__ for w in caught)
    row = {
        "seed": seed,
        "time_s": t_s,
        "n_divergent": n_div,
        "n_modes": n_modes,
        "min_ess_bulk": float(np.nanmin(ess)) if np.isfinite(ess).any() else np.nan,
        "warnings": ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items())),
    }
    return (kept < q_true.values).sum(axis=0), row, names


def run_sbc(
    n_simulations: int = 100,
    *,
    shape: tuple[int, int] = (8, 6),
    n_components: int = 2,
    priors: GammaPriors = DEFAULT_PRIORS,
    sampler: Sampler | None = None,
    n_draws: int = 99,
    entries: Sequence[tuple[int, int]] | None = None,
    n_bins: int | None = None,
    alpha: float = 0.01,
    random_seed: Any = None,
    progress: bool = False,
    executor: Any = None,
) -> SBCResult:
    """Simulation-based calibration of a posterior sampler of Poisson NMF.

    Parameters
    ----------
    n_simulations : int
        S, the number of simulated data sets.
    shape : tuple of int
        (F, N) of each simulated V.
    n_components : int
        K, both simulated and fitted.
    priors : GammaPriors
        Priors that W and H are simulated from and that the sampler is given.
    sampler : callable, optional
        ``sampler(V, n_components, *, priors, random_seed) -> DataTree`` with
        ``posterior`` ``W`` (chain, draw, row, component) and ``H`` (chain, draw,
        component, column), in any normalisation and component order. Default:
        :func:`default_sampler` (``sample_posterior`` with 300 draws, 300 tuning steps,
        2 chains).
    n_draws : int
        L, the draws (thinned evenly within each chain) each true value is ranked
        among. The default 99 gives 100 rank values, which split evenly into 2, 4, 5,
        10 or 20 bins.
    entries : sequence of (f, n), optional
        Entries of WH ranked (default: four along the diagonal).
    n_bins : int, optional
        Bins of the chi-square test (default ``min(20, max(2, S // 5))``).
    alpha : float
        Family-wise level of the uniformity tests (Bonferroni over quantities and
        tests); see the module docstring.
    random_seed : int, Generator or None
        Seeds the simulations, the sampler (one spawned seed per simulation) and the
        PIT randomisation.
    progress : bool
        Show a progress bar (tqdm) counting finished simulations.
    executor : None, concurrent.futures.Executor or dask.distributed.Client
        Where the simulations run (:func:`poisson_nmf.parallel.map_pieces`); each
        carries its own spawned generator, so the result equals the serial run's.
        With processes or Dask the sampler must be picklable (:func:`default_sampler`
        is; :func:`prior_sampler` is not).

    Returns
    -------
    SBCResult
        Ranks, the per-quantity table, per-simulation diagnostics and times.
    """
    t0 = time.perf_counter()
    check_int(n_simulations, "n_simulations", 2)
    check_int(n_draws, "n_draws", 2)
    check_priors(priors, allow_flat=False)
    F, N = (int(s) for s in shape)
    sampler = default_sampler() if sampler is None else sampler
    rng = np.random.default_rng(random_seed)
    rng_pit, *rng_sims = rng.spawn(n_simulations + 1)
    entries = _default_entries(F, N) if entries is None else entries

    one = functools.partial(_one_simulation, shape=(F, N), n_components=n_components,
                            priors=priors, sampler=sampler, entries=entries,
                            n_draws=n_draws)  # fmt: skip
    out = map_pieces(one, rng_sims, executor=executor, progress=progress, desc="SBC")
    ranks = [o[0] for o in out]
    rows = [o[1] for o in out]
    names = out[0][2]
    r = xr.DataArray(
        np.array(ranks, dtype=np.int64),
        dims=("simulation", "quantity"),
        coords={"simulation": np.arange(n_simulations), "quantity": names},
        name="rank",
    )
    B = _n_bins(n_simulations, n_bins, n_draws + 1)
    pit_seed = int(rng_pit.integers(0, 2**63 - 1))
    table = rank_uniformity(r, n_draws, n_bins=B, alpha=alpha, random_seed=pit_seed)
    pit = r.copy(data=_randomised_pit(r.values, n_draws, np.random.default_rng(pit_seed)))
    settings = {
        "shape": [F, N],
        "n_components": int(n_components),
        "priors": {k: np.asarray(getattr(priors, k)).tolist()
                   for k in ("w_shape", "w_rate", "h_shape", "h_rate")},
        "n_simulations": int(n_simulations),
        "n_draws": int(n_draws),
        "n_bins": B,
        "alpha": alpha,
        "entries": [list(e) for e in entries],
        "random_seed": random_seed if isinstance(random_seed, int | None) else repr(random_seed),
    }  # fmt: skip
    return SBCResult(
        ranks=r,
        pit=pit.rename("pit"),
        n_draws=int(n_draws),
        table=table,
        alpha=alpha,
        simulations=pd.DataFrame(rows, index=pd.Index(range(n_simulations), name="simulation")),
        elapsed_s=time.perf_counter() - t0,
        settings=settings,
    )
