"""The observed_data layouts: a round trip through netCDF gives back the same counts."""

import numpy as np
import pytest
import scipy.sparse as sp
import xarray as xr

import poisson_nmf as pnmf
from poisson_nmf.observed import (
    observed_counts,
    observed_group,
    observed_layout,
    observed_values_at,
)
from tests.conftest import named_rng


def _tree(counts: pnmf.Counts, layout: str = "auto") -> xr.DataTree:
    post = xr.Dataset(
        {"W": (("row", "component"), np.ones((counts.shape[0], 1)))},
        coords={"row": counts.row, "column": counts.column},
    )
    return xr.DataTree.from_dict(
        {"posterior": post, "observed_data": observed_group(counts, layout)}
    )


def _same(a: pnmf.Counts, b: pnmf.Counts) -> None:
    np.testing.assert_array_equal(a.dense(), b.dense())
    np.testing.assert_array_equal(a.observed(), b.observed())
    assert list(a.row) == list(b.row) and list(a.column) == list(b.column)
    assert a.total == b.total and a.n_observed == b.n_observed


@pytest.fixture
def table() -> np.ndarray:
    X = named_rng("observed").poisson(0.4, size=(7, 9)).astype(float)
    X[0, 0] = 3.0  # at least one non-zero in the first row and column
    return X


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("layout", ["auto", "grid", "entries"])
def test_round_trip_through_netcdf(table, tmp_path, sparse, masked, layout):
    X = table.copy()
    mask = None
    if masked:
        mask = np.zeros(X.shape, bool)
        mask[1, 2] = mask[4, 0] = True
    V = sp.csr_array(X) if sparse else X
    counts = pnmf.as_counts(V, mask=mask)
    tree = _tree(counts, layout)
    # a 7 x 9 table is small: "auto" keeps the grid for sparse input, but a mask lists
    # the observed entries (as the pointwise groups of a masked fit do)
    want = "entries" if layout == "entries" or (layout == "auto" and masked) else "grid"
    assert observed_layout(tree["observed_data"]) == want
    tree.to_netcdf(tmp_path / "t.nc", engine="h5netcdf")
    back = xr.open_datatree(tmp_path / "t.nc", engine="h5netcdf").load()
    got = observed_counts(back)
    _same(got, counts)
    assert got.is_sparse == (want == "entries")


def test_entries_layout_stores_only_the_non_zeros(table):
    counts = pnmf.as_counts(sp.csr_array(table))
    obs = observed_group(counts, "entries")
    assert obs["V"].dims == ("entry",)
    assert obs.sizes["entry"] == int((table != 0).sum())
    assert (obs["V"].values > 0).all()
    assert obs.attrs["shape"] == [7, 9] and obs["V"].dtype == np.int32


def test_large_sparse_input_leaves_the_grid(monkeypatch):
    import poisson_nmf.observed as observed

    counts = pnmf.as_counts(sp.csr_array(np.eye(30, 40)))
    assert observed_layout(observed_group(counts)) == "grid"  # 1,200 cells
    monkeypatch.setattr(observed, "GRID_MAX_ENTRIES", 1000)
    assert observed_layout(observed_group(counts)) == "entries"
    assert observed_layout(observed_group(pnmf.as_counts(np.eye(30, 40)))) == "grid"  # dense


def test_listed_entries_are_kept_in_their_order_and_must_hold_every_non_zero(table):
    counts = pnmf.as_counts(sp.csr_array(table))
    r, c = np.nonzero(table)
    z = np.argwhere(table == 0)[:3]
    rows, cols = np.r_[r, z[:, 0]][::-1], np.r_[c, z[:, 1]][::-1]
    obs = observed_group(counts, entries=(rows, cols))
    np.testing.assert_array_equal(obs["V"].values, table[rows, cols])
    _same(observed_counts(_tree_of(counts, obs)), counts)
    with pytest.raises(ValueError, match="every observed non-zero"):
        observed_group(counts, entries=(r[1:], c[1:]))


def _tree_of(counts: pnmf.Counts, obs: xr.Dataset) -> xr.DataTree:
    tree = _tree(counts)
    tree["observed_data"] = xr.DataTree(obs)
    return tree


def test_values_at_reads_zeros_as_zeros_and_masked_as_nan(table):
    mask = np.zeros(table.shape, bool)
    mask[2, 3] = True
    zero = np.argwhere((table == 0) & ~mask)[0]
    nonzero = np.argwhere(table > 0)[0]
    for V in (table, sp.csr_array(table)):
        tree = _tree(pnmf.as_counts(V, mask=mask))
        got = observed_values_at(tree, [zero[0], nonzero[0], 2], [zero[1], nonzero[1], 3])
        np.testing.assert_array_equal(got[:2], [0.0, table[tuple(nonzero)]])
        assert np.isnan(got[2])  # masked: never described as a zero


def test_counts_past_int32_are_kept_exactly():
    big = 2**40 + 1  # past int32, exact in float64 (< 2**53)
    counts = pnmf.as_counts(sp.csr_array(np.array([[big, 0], [1, 2]], dtype=np.int64)))
    obs = observed_group(counts)
    assert obs["V"].dtype == np.int64
    assert int(obs["V"].values.max()) == big


def test_bad_layout_is_refused(table):
    with pytest.raises(ValueError, match="layout must be"):
        observed_group(pnmf.as_counts(table), "coo")


def test_a_large_sparse_masked_fit_pairs_observed_data_with_its_pointwise_groups(
    tmp_path, monkeypatch
):
    # sample, diagnose, save, load and report a fit of sparse, masked input whose
    # pointwise groups leave the grid (thresholds lowered): observed_data lists exactly
    # their entries (non-zeros and sampled zeros), so ArviZ pairs the groups entry by
    # entry, and the report's rootogram gets integer counts
    import poisson_nmf.observed as observed
    from poisson_nmf.sampling import pointwise

    monkeypatch.setattr(pointwise, "ZERO_SUBSAMPLE_ABOVE", 100)
    monkeypatch.setattr(pointwise, "ZERO_SUBSAMPLE_MIN", 50)
    monkeypatch.setattr(observed, "GRID_MAX_ENTRIES", 100)
    rng = named_rng("sparse_fit")
    X = rng.poisson(0.3, (20, 15)) * rng.poisson(4.0, (20, 15))
    X[0, 0] = 5
    mask = np.zeros(X.shape, bool)
    mask[3, 4] = mask[7, 1] = True
    # K = 1: a single mode, so no MultipleModesWarning whatever the seed
    idata = pnmf.sample_posterior(
        sp.csr_array(X), 1, mask=mask, draws=100, tune=150, chains=2, random_seed=3,
        pointwise_draws=40,
    )  # fmt: skip
    obs = idata["observed_data"].to_dataset()
    pp = idata["posterior_predictive"].to_dataset()
    assert observed_layout(obs) == "entries" and obs.sizes["entry"] == pp.sizes["entry"]
    np.testing.assert_array_equal(obs["row"].values, pp["row"].values)
    np.testing.assert_array_equal(obs["column"].values, pp["column"].values)
    import arviz_stats as azs

    azs.loo_pit(idata)  # ArviZ pairs observed_data with the pointwise groups by entry
    diag = pnmf.diagnose(idata)
    assert 0.0 <= diag.ppc["coverage"] <= 1.0
    path = pnmf.save_fit(idata, tmp_path / "fit.nc")
    back = pnmf.load_fit(path)
    _same(observed_counts(back), pnmf.as_counts(X, mask=mask))
    folder = pnmf.write_report(back, tmp_path / "report")
    text = (folder / "report.md").read_text()
    assert f"{int(X[~mask].sum())} counts in all" in text
