import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
import xarray as xr

import poisson_nmf as pnmf
from poisson_nmf.io import (
    FIT_FORMAT,
    FIT_FORMAT_VERSION,
    MODEL_TAG,
    FitFormatError,
    read_counts,
    save_fit,
)
from tests._fits import digits_fit, digits_report
from tests.diagnostics.trees import hand_tree


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


def test_fit_of_an_older_format_is_refused_with_what_to_do(tmp_path):
    # format 1 held the checks' thresholds as strings; its draws are stored as today
    assert FIT_FORMAT_VERSION == 2
    tree = hand_tree()
    tree.attrs = {"settings": "{}"}
    path = save_fit(tree, tmp_path / "fit.nc")
    old = xr.open_datatree(path, engine="h5netcdf").load()
    old.attrs["format_version"] = 1
    old.to_netcdf(tmp_path / "old.nc", engine="h5netcdf")  # bypasses save_fit's tag
    with pytest.raises(FitFormatError, match="in fit format 1, older than .* format 2") as e:
        pnmf.load_fit(tmp_path / "old.nc")
    assert "Re-run the fit with this version" in str(e.value)
    # the way out the message gives: re-save the draws with this version
    save_fit(xr.open_datatree(tmp_path / "old.nc", engine="h5netcdf").load(), tmp_path / "old.nc")
    back = pnmf.load_fit(tmp_path / "old.nc")
    assert back.attrs["format_version"] == 2
    xr.testing.assert_identical(back["posterior"].to_dataset(), tree["posterior"].to_dataset())


def _forged(tmp_path, **attrs):
    """A small saved fit whose root attrs are changed behind save_fit's back."""
    tree = hand_tree()
    tree.attrs = {"settings": "{}"}
    good = xr.open_datatree(save_fit(tree, tmp_path / "fit.nc"), engine="h5netcdf").load()
    good.attrs.update(attrs)
    for k in [k for k, v in attrs.items() if v is None]:
        del good.attrs[k]
    good.to_netcdf(tmp_path / "forged.nc", engine="h5netcdf")
    return tmp_path / "forged.nc"


@pytest.mark.parametrize(
    ("version", "match"),
    [
        (
            3,
            r"written by a newer poisson-nmf \(fit format 3; this poisson-nmf .* reads "
            r"format 2\): upgrade poisson-nmf",
        ),
        (-1, r"has format_version -1, which is not a fit format \(a positive integer\)"),
        (0, r"has format_version 0, which is not a fit format"),
        ("two", r"has format_version 'two', which is not a fit format"),
        (2.5, r"has format_version 2.5, which is not a fit format"),
        ("\u00b2", r"has format_version '\u00b2', which is not a fit format"),  # isdigit()
        (None, r"has no format_version: it was not written by save_fit"),
    ],
)
def test_format_versions_that_cannot_be_read_are_named(tmp_path, version, match):
    with pytest.raises(FitFormatError, match=match) as e:
        pnmf.load_fit(_forged(tmp_path, format_version=version))
    assert "format -1" not in str(e.value)  # no sentinel leaks into a message


def test_format_version_as_text_is_read(tmp_path):
    assert pnmf.load_fit(_forged(tmp_path, format_version="2")).attrs["format_version"] == "2"


@pytest.mark.parametrize("method", ["map", "posterior"])
def test_a_loadings_tree_round_trips(tmp_path, method):
    rng = np.random.default_rng(sum(map(ord, "loadings round trip")))
    W = rng.dirichlet(np.full(12, 0.5), size=2).T  # columns sum to one
    V = pd.DataFrame(rng.poisson(W @ rng.gamma(2.0, 20.0, (2, 5))),
                     columns=[f"s{j}" for j in range(5)])  # fmt: skip
    kw = dict(draws=60, tune=50, chains=2) if method == "posterior" else {}
    L = pnmf.fit_loadings(V, W, priors=None, method=method, random_seed=0, **kw)
    back = pnmf.load_fit(save_fit(L, tmp_path / "L.nc"))
    xr.testing.assert_identical(back["posterior"].to_dataset(), L["posterior"].to_dataset())
    assert back.attrs["point_estimate"] is (method == "map")  # booleans come back as booleans
    assert back.attrs["approximate"] is False
    d0, d1 = pnmf.diagnose(L), pnmf.diagnose(back)
    assert d1.verdict == d0.verdict and [c.value for c in d1.checks] == pytest.approx(
        [c.value for c in d0.checks], nan_ok=True
    )
    pd.testing.assert_frame_equal(pnmf.posterior_summary(back), pnmf.posterior_summary(L))


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


# --- formats and messages (issue 18, parts 3.3, 3.6 and 3.7) ------------------------


def test_duplicated_labels_in_a_file(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("gene,s1,s2,s1\ng1,1,2,3\ng2,1,1,1\ng1,0,0,0\n")
    with pytest.raises(ValueError, match=r"duplicated row labels .*'g1'\)"):
        read_counts(path)
    V = read_counts(path, duplicates="sum")  # rows g1 summed, then columns s1 summed
    assert list(V["row"].values) == ["g1", "g2"] and list(V["column"].values) == ["s1", "s2"]
    np.testing.assert_array_equal(V.values, [[4, 2], [2, 1]])


def test_lines_ending_in_a_delimiter(tmp_path):
    (tmp_path / "a.csv").write_text("gene,a,b\ng1,1,2,\ng2,3,4,\n")
    with pytest.raises(
        ValueError,
        match=r"header line has 3 names but line 2 has 4 fields: do the lines end with ','",
    ):
        read_counts(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("gene,a,b,\ng1,1,2,\ng2,3,4,\n")
    with pytest.raises(ValueError, match=r"column 4 has no name in the header and no values"):
        read_counts(tmp_path / "b.csv")


def test_empty_cell_is_named_by_label_and_line(tmp_path):
    (tmp_path / "e.csv").write_text("gene,a,b,c\n\ng1,1,2,\ng2,3,4,5\n")  # line 2 is blank
    V = read_counts(tmp_path / "e.csv")
    assert V.shape == (2, 3)
    with pytest.raises(
        ValueError, match=r"row 'g1', column 'c' \(line 3 of the file\); .*--missing mask"
    ):
        pnmf.as_counts(V)
    c = pnmf.as_counts(V, missing="mask")
    assert (c.missing_rows.tolist(), c.missing_cols.tolist()) == ([0], [2])
    (tmp_path / "s.csv").write_text("gene,a\ng1,1\ng2,x\n")
    with pytest.raises(TypeError, match=r"'x' at row 'g2', column 'a' \(line 3 of the file\)"):
        read_counts(tmp_path / "s.csv")


@pytest.mark.parametrize("ext, sep", [(".csv.gz", ","), (".tsv.gz", "\t"), (".txt.gz", "\t")])
def test_gzip_tables(tmp_path, table, ext, sep):
    path = tmp_path / f"V{ext}"
    table.to_csv(path, sep=sep)
    V = read_counts(path)
    np.testing.assert_array_equal(V.values, table.values)
    assert list(V["row"].values) == list(table.index)


def test_transpose_and_no_index(tmp_path, table):
    table.to_csv(tmp_path / "V.csv")
    V = read_counts(tmp_path / "V.csv", transpose=True)
    assert V.dims == ("row", "column") and list(V["row"].values) == list("abcd")
    np.testing.assert_array_equal(V.values, table.values.T)
    table.to_csv(tmp_path / "plain.csv", index=False)
    V = read_counts(tmp_path / "plain.csv", index=False)
    np.testing.assert_array_equal(V.values, table.values)
    assert list(V["row"].values) == [0, 1, 2, 3, 4]


def test_integer_label_column_warns(tmp_path, table):
    from poisson_nmf.io import LabelColumnWarning

    data = pd.DataFrame({"a": [3, 1, 4, 10, 5], "b": [2, 7, 1, 8, 2]})
    data.to_csv(tmp_path / "plain.csv", index=False)  # first column 'a' is data
    with pytest.warns(
        LabelColumnWarning, match=r"holds only integers .* index=False \(command line: --no-index\)"
    ):
        V = read_counts(tmp_path / "plain.csv")
    assert V.shape == (5, 1)
    table.to_csv(tmp_path / "dups.csv", index=False)  # column 'a' repeats a value
    with pytest.raises(ValueError, match=r"more than once: 3\).*--no-index"):
        with pytest.warns(LabelColumnWarning):
            read_counts(tmp_path / "dups.csv")
    table.reset_index(drop=True).to_csv(tmp_path / "numbered.csv")  # 0..4: a row number
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelColumnWarning)
        assert read_counts(tmp_path / "numbered.csv").shape == (5, 4)


def test_parquet(tmp_path, table):
    table.to_parquet(tmp_path / "V.parquet")
    V = read_counts(tmp_path / "V.parquet")
    np.testing.assert_array_equal(V.values, table.values)
    assert list(V["row"].values) == list(table.index)
    table.reset_index(names="gene").to_parquet(tmp_path / "W.parquet")
    assert list(read_counts(tmp_path / "W.parquet")["row"].values) == list(table.index)


def test_tenx_folder(tmp_path, table):
    import gzip

    X = sp.coo_array(table.to_numpy())
    with gzip.open(tmp_path / "matrix.mtx.gz", "wb") as f:
        scipy.io.mmwrite(f, X)
    feats = pd.DataFrame({"id": table.index, "name": "x", "type": "Gene Expression"})
    feats.to_csv(tmp_path / "features.tsv.gz", sep="\t", header=False, index=False)
    pd.Series(table.columns).to_csv(tmp_path / "barcodes.tsv.gz", header=False, index=False)
    V = read_counts(tmp_path)
    c = pnmf.as_counts(V)
    assert c.is_sparse and list(c.row) == list(table.index) and list(c.column) == list("abcd")
    np.testing.assert_array_equal(c.dense(), table.to_numpy())
    assert list(pnmf.as_counts(read_counts(tmp_path, transpose=True)).row) == list("abcd")


def test_h5ad(tmp_path, table):
    anndata = pytest.importorskip("anndata")
    ad = anndata.AnnData(X=sp.csr_matrix(table.to_numpy().astype(np.float32)))
    ad.obs_names, ad.var_names = list(table.index), list(table.columns)
    ad.write_h5ad(tmp_path / "V.h5ad")
    c = pnmf.as_counts(read_counts(tmp_path / "V.h5ad"))
    assert c.is_sparse and list(c.column) == list("abcd")
    np.testing.assert_array_equal(c.dense(), table.to_numpy())


def test_unknown_gz_extension(tmp_path):
    (tmp_path / "V.npz.gz").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unknown extension '.npz.gz'"):
        read_counts(tmp_path / "V.npz.gz")


def test_load_fit_of_a_report_folder_reads_its_fit(tmp_path):
    folder = digits_report()
    back = pnmf.load_fit(folder)
    assert back.attrs["format"] == FIT_FORMAT
    with pytest.raises(FileNotFoundError, match="is a folder without a fit.nc"):
        pnmf.load_fit(tmp_path)
