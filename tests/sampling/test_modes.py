"""Chains in different posterior modes: detected, reported, selected."""

import json

import numpy as np
import pytest

from poisson_nmf.exceptions import MultipleModesWarning
from poisson_nmf.sampling.api import sample_posterior
from poisson_nmf.sampling.modes import detect_modes, select_chains
from tests.conftest import named_rng


def _three_blocks():
    """Block-diagonal counts with 3 equal blocks and K = 2: which two blocks share a
    component is a discrete choice, so there are 3 well separated local modes."""
    rng = named_rng("three_blocks")
    F, N = 4, 3
    V = np.zeros((3 * F, 3 * N), dtype=np.int64)
    for b in range(3):
        V[b * F : (b + 1) * F, b * N : (b + 1) * N] = rng.poisson(20.0, (F, N))

    def mode(alone):
        W = np.full((3 * F, 2), 1e-3)
        H = np.full((2, 3 * N), 1e-3)
        for b in range(3):
            k = 0 if b == alone else 1
            W[b * F : (b + 1) * F, k] = 4.0
            H[k, b * N : (b + 1) * N] = 5.0
        return W, H

    return V, mode


def test_chains_in_different_modes_are_detected():
    V, mode = _three_blocks()
    init = [mode(0), mode(0), mode(1), mode(1)]
    with pytest.warns(MultipleModesWarning, match="2 modes"):
        tree = sample_posterior(V, 2, draws=60, tune=60, chains=4, init=init, random_seed=1)
    report = json.loads(tree.attrs["modes"])
    assert report["n_modes"] == 2
    assert report["labels"][0] == report["labels"][1] != report["labels"][2] == report["labels"][3]
    again = detect_modes(tree)
    assert again.labels == report["labels"]
    kept = select_chains(tree, again.main_chains)
    assert kept["posterior"].sizes["chain"] == 2
    assert json.loads(kept.attrs["kept_chains"]) == again.main_chains
    # a chain twice would pass for two chains that agree (R-hat, ESS, resume)
    with pytest.raises(ValueError, match=r"chains must not repeat a chain, got \[0, 0\]"):
        select_chains(tree, [0, 0])
    with pytest.warns(MultipleModesWarning):
        main = sample_posterior(
            V, 2, draws=60, tune=60, chains=4, init=init, random_seed=1, keep="main"
        )
    assert main["posterior"].sizes["chain"] == 2


def test_one_mode_from_one_start_is_not_flagged():
    V, mode = _three_blocks()
    tree = sample_posterior(V, 2, draws=60, tune=60, chains=2, init=[mode(0)] * 2, random_seed=2)
    assert json.loads(tree.attrs["modes"])["n_modes"] == 1
