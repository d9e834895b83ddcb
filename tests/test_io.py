import json

import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
import xarray as xr

import poisson_nmf as pnmf
from poisson_nmf.io import FIT_FORMAT, MODEL_TAG, FitFormatError, read_counts, save_fit
from tests._fits import digits_fit, digits_report


@pytest.fixture
def table():
    rng = np.random.default_rng(sum(map(ord, "test_io.table")))
    V = rng.poisson(3.0, size=(5, 4))
    return pd.DataFrame(V, index=[f"r{i}" for i in range(5)], columns=list("abcd"))


def _dense(x):
    return x.toarray() if sp.issparse(x) else np.asarray(x)


@pytest.mark.parametrize("ext, sep", [(".csv", ","), (".tsv", "\t")])
def test_read_text_tables(tmp_path, table, ext, sep):
    path = tmp_path / f"V{ext}"
    table.to_csv(path, sep=sep)
    V = read_counts(path)
    assert isinstance(V, xr.DataArray) and V.dims == ("row", "column")
    np.testing.assert_array_equal(V.values, table.values)
    assert list(V["row"].values) == list(table.index)
    assert list(V["column"].values) == list(table.columns)
    c = pnmf.as_counts(V)
    assert list(c.column) == ["a", "b", "c", "d"]


def test_read_matrix_market_npz_npy(tmp_path, table):
    V = table.to_numpy()
    scipy.io.mmwrite(tmp_path / "V.mtx", sp.coo_array(V))
    sp.save_npz(tmp_path / "V.npz", sp.csr_array(V))
    np.save(tmp_path / "V.npy", V)
    for name in ("V.mtx", "V.npz", "V.npy"):
        got = read_counts(tmp_path / name)
        np.testing.assert_array_equal(_dense(got), V, err_msg=name)
    assert sp.issparse(read_counts(tmp_path / "V.npz"))


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_counts(tmp_path / "missing.csv")
    (tmp_path / "V.xlsx").write_text("x")
    with pytest.raises(ValueError, match="unknown extension '.xlsx'"):
        read_counts(tmp_path / "V.xlsx")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read DATA file"):
        read_counts(tmp_path / "bad.npz")
    pd.DataFrame({"a": [1, -2]}).to_csv(tmp_path / "neg.csv")
    with pytest.raises(ValueError, match="negative values"):
        pnmf.as_counts(read_counts(tmp_path / "neg.csv"))


def test_save_and_load_round_trip(tmp_path):
    idata = digits_fit()
    path = save_fit(idata, tmp_path / "fit.nc")
    back = pnmf.load_fit(path)
    for group in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive",
                  "observed_data", "reference"):  # fmt: skip
        xr.testing.assert_identical(back[group].to_dataset(), idata[group].to_dataset())
    assert back.attrs["format"] == FIT_FORMAT and back.attrs["model"] == MODEL_TAG
    assert json.loads(back.attrs["settings"]) == json.loads(idata.attrs["settings"])
    assert back["sample_stats"]["diverging"].dtype == bool
    assert not list(tmp_path.glob("*.part"))


def _retag(tmp_path, **attrs):
    tree = pnmf.load_fit(digits_report() / "fit.nc")
    tree.attrs = {**tree.attrs, **attrs}
    path = tmp_path / "other.nc"
    tree.to_netcdf(path, engine="h5netcdf")  # bypasses save_fit, which would re-tag it
    return path


def test_fit_of_another_version_is_refused(tmp_path):
    path = _retag(tmp_path, poisson_nmf_version="0.0.1")
    with pytest.raises(FitFormatError, match="written by poisson-nmf 0.0.1"):
        pnmf.load_fit(path)


def test_fit_of_another_model_is_refused(tmp_path):
    path = _retag(tmp_path, model="negative-binomial-nmf")
    with pytest.raises(FitFormatError, match="holds the model 'negative-binomial-nmf'"):
        pnmf.load_fit(path)


def test_other_files_are_refused(tmp_path):
    xr.Dataset({"x": ("i", [1.0, 2.0])}).to_netcdf(tmp_path / "plain.nc", engine="h5netcdf")
    with pytest.raises(FitFormatError, match="is not a poisson-nmf fit"):
        pnmf.load_fit(tmp_path / "plain.nc")
    (tmp_path / "text.nc").write_text("hello")
    with pytest.raises(FitFormatError, match="not a netCDF fit"):
        pnmf.load_fit(tmp_path / "text.nc")
    with pytest.raises(FileNotFoundError):
        pnmf.load_fit(tmp_path / "none.nc")
