"""The result of :func:`poisson_nmf.select_rank`: the elpd table, the chosen K, plots.

How the numbers are made (cross-validation or PSIS-LOO, the rules) is in
:mod:`poisson_nmf.rank`; this module only holds and shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["RankSelection"]


@dataclass(frozen=True)
class RankSelection:
    """The result of :func:`select_rank`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per K, in increasing K: ``n_components``, ``elpd``, ``se``,
        ``elpd_diff`` (>= 0, 0 at the highest elpd), ``se_diff`` (paired),
        ``n_params`` ((F + N) K); with ``method="loo"`` also ``weight`` (ArviZ's
        stacking weight), ``p_loo`` and ``n_bad_k`` (entries with Pareto k > 0.7).
    best : int
        The chosen K.
    rule : str
        How ``best`` was chosen (``"one_se"`` or ``"best"``), in words in
        :attr:`rule_text`.
    method : str
        ``"cv"`` or ``"loo"``.
    folds : pandas.DataFrame
        Per-fold values (``method="cv"``): ``repeat``, ``fold``, ``n_components``,
        ``elpd`` (weighted sum over the fold's held-out entries), ``n_heldout``.
    wins : pandas.DataFrame
        Per K: ``fold_wins`` (folds where it had the highest held-out elpd, over all
        repeats) and ``repeat_wins`` (repeats whose own table chose it by ``rule``).
        Not applicable, NaN: ``repeat_wins`` with one repeat, both with
        ``method="loo"`` (no folds).
    pointwise : numpy.ndarray, shape (n_K, n_entries)
        The score of every entry scored, per K (averaged over repeats).
    weights : numpy.ndarray, shape (n_entries,)
        Each entry's weight in the sums (1 unless subsampled).
    settings : dict
        The arguments, JSON-ready.
    elapsed_s : float
        Wall time of the whole selection.
    """

    table: pd.DataFrame
    best: int
    rule: str
    method: str
    folds: pd.DataFrame
    wins: pd.DataFrame
    pointwise: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    settings: dict = field(repr=False)
    elapsed_s: float = 0.0

    @property
    def rule_text(self) -> str:
        """The rule that chose :attr:`best`, in words."""
        if self.rule == "one_se":
            return "the smallest K whose elpd is within one paired standard error of the best"
        return "the K with the highest elpd"

    @property
    def stability(self) -> float:
        """Share of repeats (or, with one repeat, of folds) whose choice is :attr:`best`."""
        w = self.wins.set_index("n_components")
        col = "repeat_wins" if w["repeat_wins"].sum() > 1 else "fold_wins"
        total = w[col].sum()
        return float(w[col].get(self.best, 0) / total) if total else float("nan")

    def summary(self) -> str:
        """Return the table, the choice, the rule and the stability as text."""
        with pd.option_context("display.float_format", "{:.1f}".format, "display.width", 120):
            text = self.table.to_string(index=False)
        w = self.wins[(self.wins["fold_wins"] > 0) | (self.wins["repeat_wins"] > 0)]
        counts = ", ".join(
            f"K={k}: {f} fold(s)" + (f", {r} repeat(s)" if self.wins["repeat_wins"].sum() else "")
            for k, f, r in zip(w["n_components"], w["fold_wins"], w["repeat_wins"], strict=True)
        )
        kind = "plug-in MAP cross-validation" if self.method == "cv" else "PSIS-LOO"
        return (
            f"{text}\nchosen K = {self.best} ({self.rule_text}; elpd by {kind})\n"
            f"wins: {counts or 'none'}"
        )

    def plot(self, ax: Any = None) -> Any:
        """Plot elpd with +-1 se error bars against K, the chosen K marked.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw (default: a new figure).

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 3.5))
        t = self.table
        ax.errorbar(t["n_components"], t["elpd"], yerr=t["se"], fmt="o-", color="C0",
                    capsize=3, label="elpd +- se")  # fmt: skip
        best_row = t[t["n_components"] == self.best].iloc[0]
        ax.errorbar([self.best], [best_row["elpd"]], yerr=[best_row["se_diff"]], fmt="o",
                    color="C3", ms=9, capsize=5, label=f"chosen K = {self.best}")  # fmt: skip
        top = t["elpd"].max()
        if self.rule == "one_se":
            ax.axhline(top, color="0.6", lw=0.8, ls="--")
        ax.set_xlabel("K (components)")
        label = "held-out elpd (CV, plug-in MAP)" if self.method == "cv" else "elpd (PSIS-LOO)"
        ax.set_ylabel(label)
        ax.set_xticks(list(t["n_components"]))
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title(f"choosing K: {self.rule_text}", fontsize=8)
        return ax
