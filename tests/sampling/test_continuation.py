"""Chains continued with a stored step size and mass matrix (no new warm-up)."""

import numpy as np
import pytest

from poisson_nmf.sampling.continuation import (
    FIXED_KW,
    TUNE_KW,
    continued_chains,
    state_from_tree,
    state_group,
    tuned_state,
)
from poisson_nmf.sampling.coordinates import Coords, ridge_stretch
from poisson_nmf.sampling.density import log_density
from poisson_nmf.sampling.nutpie_model import nutpie_model


@pytest.fixture(scope="module")
def tuned(small_counts):
    """A chain of the small table tuned for 150 steps: its density, coordinates, state."""
    import nutpie

    dens = log_density(small_counts, 2)
    x0 = np.zeros(dens.n_dim)
    beta, scale = ridge_stretch(dens, x0)
    coords = Coords(dens.F, dens.N, beta, scale, np.zeros((dens.n_dim, 0)), np.zeros(0))
    model = nutpie_model(dens, coords.to_y(x0), coords)
    tr = nutpie.sample(model, draws=1, tune=150, chains=1, cores=1, seed=3, progress_bar=False,
                       **TUNE_KW)  # fmt: skip
    return dens, coords, tuned_state(tr)


def test_continued_chain_runs_the_tuned_kernel(tuned):
    """nutpie's first mass matrix of the continued chain is the tuned one (in the
    sampler's coordinates y), its step size is the tuned one, and neither changes."""
    import nutpie

    dens, coords, state = tuned
    models, starts, kws = continued_chains(dens, coords, [state], single=False)
    assert kws[0]["step_size_adapt_method"] == repr(state.step_size)
    assert kws[0]["mass_matrix_switch_freq"] == FIXED_KW["mass_matrix_switch_freq"]
    inner = models[0].shared_data["inner"]
    np.testing.assert_allclose(starts[0] * inner, coords.to_y(state.x), rtol=1e-12)
    tr = nutpie.sample(models[0], draws=30, tune=1, chains=1, cores=1, seed=4,
                       progress_bar=False, save_warmup=True, store_mass_matrix=True,
                       **kws[0])  # fmt: skip
    first = tr["warmup_sample_stats"]["mass_matrix_inv"].values[0, 0]  # sds in z
    # float64 kernel: the same gradient both times, so equal to rounding
    np.testing.assert_allclose(inner * first, state.stds, rtol=1e-9)
    kept = tr["sample_stats"]
    assert np.isnan(kept["mass_matrix_inv"].values).all()  # never updated after
    np.testing.assert_array_equal(kept["step_size_bar"].values, state.step_size)
    # nutpie's usual jitter of the step size around it, within +-10 %
    ratio = kept["step_size"].values / state.step_size
    assert np.all((ratio > 0.9) & (ratio < 1.1)) and np.ptp(ratio) > 0


def test_state_group_round_trip(tuned):
    import xarray as xr

    dens, coords, state = tuned
    tree = xr.DataTree.from_dict({"sampler_state": state_group(coords, [state, state])})
    back_coords, back = state_from_tree(tree, dens.F, dens.N)
    assert len(back) == 2 and back[1].step_size == state.step_size
    np.testing.assert_array_equal(back[0].x, state.x)
    np.testing.assert_array_equal(back[0].stds, state.stds)
    np.testing.assert_array_equal(back_coords.scale, coords.scale)
    assert back_coords.U.shape == (dens.n_dim, 0) and back_coords.inner.size == 0
    assert state_from_tree(xr.DataTree(), dens.F, dens.N) is None
