import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import xarray as xr

import poisson_nmf as pnmf
from poisson_nmf.data import ZeroRowsColumnsWarning, csr_index
from tests.conftest import named_rng


def test_numpy_input_gets_dims_and_default_coords():
    c = pnmf.as_counts(np.array([[1, 0, 2], [0, 3, 4]]))
    assert c.shape == (2, 3)
    assert c.values.dtype == np.float64
    np.testing.assert_array_equal(c.row, [0, 1])
    np.testing.assert_array_equal(c.column, [0, 1, 2])
    np.testing.assert_array_equal(c.nz_values, [1, 2, 3, 4])
    da = c.to_dataarray()
    assert da.dims == ("row", "column")
    assert da.dtype == np.int64


def test_dataframe_and_dataarray_keep_coordinates():
    df = pd.DataFrame([[1, 2], [3, 0]], index=["a", "b"], columns=["x", "y"])
    c = pnmf.as_counts(df)
    assert list(c.row) == ["a", "b"] and list(c.column) == ["x", "y"]
    da = xr.DataArray(df.values, dims=("cell", "gene"), coords={"cell": [10, 20]})
    c2 = pnmf.as_counts(da)
    assert list(c2.row) == [10, 20]
    assert list(c2.column) == [0, 1]
    assert c2.to_dataarray().dims == ("row", "column")


def test_sparse_stays_sparse_and_matches_dense():
    rng = np.random.default_rng(sum(map(ord, "sparse_stays")))
    X = rng.poisson(0.3, size=(40, 30))
    cd = pnmf.as_counts(X)
    cs = pnmf.as_counts(sp.csr_matrix(X))
    assert cs.is_sparse and not cd.is_sparse
    for a, b in [(cd.nz_rows, cs.nz_rows), (cd.nz_cols, cs.nz_cols), (cd.nz_values, cs.nz_values)]:
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(cs.dense(), X)


def test_integer_valued_floats_are_fine():
    c = pnmf.as_counts(np.array([[2.0, 0.0], [1.0, 5.0]]))
    assert c.total == 8


def test_mask_allows_nan_and_drops_entries():
    X = np.array([[1.0, np.nan], [2.0, 3.0]])
    mask = np.array([[False, True], [False, False]])
    c = pnmf.as_counts(X, mask=mask)
    assert c.n_observed == 3
    assert c.has_mask
    np.testing.assert_array_equal(c.observed(), ~mask)
    cs = pnmf.as_counts(sp.csr_matrix(np.nan_to_num(X, nan=7.0)), mask=sp.csr_matrix(mask))
    np.testing.assert_array_equal(cs.nz_values, c.nz_values)


def test_zero_rows_and_columns_warn_and_are_kept():
    with pytest.warns(ZeroRowsColumnsWarning, match=r"1 all-zero row\(s\) and 1 all-zero"):
        c = pnmf.as_counts(np.array([[1, 0], [0, 0]]))
    assert c.shape == (2, 2)


@pytest.mark.parametrize(
    ("V", "mask"),
    [
        (np.array([[1, 0], [0, 0]]), None),
        (sp.csr_array(np.array([[1, 0], [0, 0]])), None),
        (np.array([[1, 2], [np.nan, 0]]), np.array([[False, False], [True, False]])),
        (sp.csr_array(np.array([[1, 2], [np.nan, 0]])), np.array([[0, 0], [1, 0]], bool)),
    ],
    ids=["dense", "sparse", "dense-masked", "sparse-masked"],
)
def test_zero_rows_warning_points_at_the_public_call(V, mask):
    # as_counts warns at its caller's caller: the user's line that called the public
    # function (kl_divergence here), not a line inside the library
    with pytest.warns(ZeroRowsColumnsWarning) as rec:
        pnmf.kl_divergence(V, np.ones((2, 2)), mask=mask)
    assert [w.filename for w in rec] == [__file__]


BAD_INPUTS = [
    (
        np.array([[1, -1]]),
        ValueError,
        r"V contains negative values \(first -1 at row 0, column 1\)",
    ),
    (np.array([[1, 2.5]]), ValueError, r"non-integer values \(first 2.5 at row 0, column 1\)"),
    (
        np.array([[1, np.nan]]),
        ValueError,
        r"V has 1 missing value\(s\) \(NaN, pd.NA or an empty cell\), the first at row 0, "
        r"column 1; to leave them out .*as_counts\(V, missing='mask'\) "
        r".*\(.*command line: --missing mask\)",
    ),
    (np.array([[np.inf, 1]]), ValueError, r"V contains inf \(first at row 0, column 0\)"),
    (np.zeros((0, 3)), ValueError, r"V is empty: it has no rows \(shape \(0, 3\)\)"),
    (np.zeros((3, 0)), ValueError, r"V is empty: it has no columns \(shape \(3, 0\)\)"),
    (np.array([1, 2, 3]), ValueError, r"V must be 2-D .* got 1-D"),
    (np.ones((2, 2, 2)), ValueError, r"V must be 2-D .* got 3-D"),
    (np.array([[True, False]]), TypeError, r"V has boolean dtype"),
    (np.array([[1, "a"]], dtype=object), TypeError, r"V has dtype object"),
    (np.array([["1", "2"]]), TypeError, r"V has dtype <U1"),
    ("counts.csv", TypeError, r"V must be a 2-D array of counts, got str"),
    (np.zeros((2, 3)), ValueError, r"V is all zeros \(shape \(2, 3\)\)"),
    (np.array([[1e19, 1.0]]), ValueError, r"past 2\*\*53 = 9007199254740992 \(first 1e\+19"),
    (np.array([[2**63 + 5, 1]], dtype=np.uint64), ValueError, r"past 2\*\*53"),
    (
        sp.csr_matrix(np.array([[0, -2.0]])),
        ValueError,
        r"negative values \(first -2.0 at row 0, column 1\)",
    ),
    (sp.csr_matrix(np.array([[0, 0.5]])), ValueError, r"non-integer values"),
]


@pytest.mark.parametrize(("V", "exc", "match"), BAD_INPUTS)
def test_bad_input_raises_with_a_message(V, exc, match):
    with pytest.raises(exc, match=match):
        pnmf.as_counts(V)


def test_mask_of_wrong_shape():
    with pytest.raises(ValueError, match=r"mask has shape \(3,\) but V has shape \(2, 2\)"):
        pnmf.as_counts(np.ones((2, 2)), mask=np.zeros(3, bool))
    with pytest.raises(TypeError, match=r"mask must be boolean or integers 0 / 1"):
        pnmf.as_counts(np.ones((2, 2)), mask=np.full((2, 2), 0.5))


@pytest.mark.parametrize(
    ("k", "exc", "match"),
    [
        (0, ValueError, r"n_components must be a positive integer, got 0"),
        (-3, ValueError, r"got -3"),
        (1.5, TypeError, r"got 1.5 \(float\)"),
        ("2", TypeError, r"got '2' \(str\)"),
        (True, TypeError, r"got True \(bool\)"),
    ],
)
def test_invalid_number_of_components(k, exc, match):
    with pytest.raises(exc, match=match):
        pnmf.check_n_components(k)


def test_numpy_integer_components_accepted():
    assert pnmf.check_n_components(np.int64(4)) == 4


def test_load_digits(digits):
    assert digits.shape == (1797, 64)
    assert digits.dims == ("row", "column")
    assert digits.dtype == np.int64
    assert int(digits.min()) == 0 and int(digits.max()) == 16
    assert set(np.unique(digits["digit"].values)) == set(range(10))


# --- the handed input kinds (issue 18, parts 3.3-3.5 and 4) --------------------------


def test_duplicated_labels_are_refused_by_name():
    df = pd.DataFrame([[1, 2, 3], [4, 5, 6]], index=["g1", "g1"], columns=["s1", "s2", "s1"])
    with pytest.raises(
        ValueError, match=r"duplicated row labels \(1 label\(s\) more than once: 'g1'\)"
    ):
        pnmf.as_counts(df)
    with pytest.raises(ValueError, match=r"duplicated column labels .*: 's1'\).*duplicates='sum'"):
        pnmf.as_counts(df.iloc[:1])


@pytest.mark.parametrize(
    "dtype", ["Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float64"]
)
def test_nullable_dtypes_are_accepted(dtype):
    df = pd.DataFrame({"a": [1, 0, 7], "b": [0, 3, 4]}, index=list("xyz")).astype(dtype)
    c = pnmf.as_counts(df)
    np.testing.assert_array_equal(c.dense(), [[1, 0], [0, 3], [7, 4]])
    assert list(c.row) == ["x", "y", "z"] and list(c.column) == ["a", "b"]


def test_convert_dtypes_frame_and_pd_na():
    df = pd.DataFrame({"a": [1, 2, None], "b": [0, 3, 4]}, index=list("xyz")).convert_dtypes()
    assert str(df.dtypes.iloc[0]) == "Int64"
    with pytest.raises(
        ValueError,
        match=r"1 missing value\(s\) .* first at row 'z', column 'a'; to leave them out",
    ):
        pnmf.as_counts(df)
    c = pnmf.as_counts(df, missing="mask")
    assert (c.missing_rows.tolist(), c.missing_cols.tolist()) == ([2], [0])
    assert c.n_observed == 5 and c.total == 10.0
    with pytest.raises(ValueError, match="missing must be 'raise' or 'mask'"):
        pnmf.as_counts(df, missing="zero")


def test_nullable_float_must_hold_whole_numbers():
    df = pd.DataFrame({"a": [1.0, 2.5]}).astype("Float64")
    with pytest.raises(ValueError, match=r"non-integer values \(first 2.5 at row 1, column 'a'\)"):
        pnmf.as_counts(df)


def test_sparse_frame_stays_sparse_and_nan_masks():
    X = sp.csr_array(np.array([[0, 2, 0], [1, 0, 0], [0, 0, 3]], dtype=float))
    df = pd.DataFrame.sparse.from_spmatrix(X, index=list("abc"), columns=["u", "v", "w"])
    c = pnmf.as_counts(df)
    assert c.is_sparse and list(c.row) == ["a", "b", "c"]
    np.testing.assert_array_equal(c.dense(), X.toarray())
    Y = sp.csr_array(np.array([[0, np.nan], [1, 2]]))
    with pytest.raises(ValueError, match="first at row 0, column 1; to leave them out"):
        pnmf.as_counts(Y)
    c = pnmf.as_counts(Y, missing="mask")
    assert c.is_sparse and (c.missing_rows.tolist(), c.missing_cols.tolist()) == ([0], [1])


def test_header_without_rows_says_no_rows():
    df = pd.DataFrame(columns=["a", "b"])  # object dtype, no rows
    with pytest.raises(ValueError, match=r"V is empty: it has no rows \(shape \(0, 2\)\)"):
        pnmf.as_counts(df)


def test_string_cell_is_named():
    df = pd.DataFrame({"a": [1, 2], "b": ["3", "x"]}, index=["g1", "g2"])
    with pytest.raises(TypeError, match=r"'x' at row 'g2', column 'b' is not a number"):
        pnmf.as_counts(df)


def test_exact_range_at_the_float64_edge():
    edge = np.array([[2**53, 1]], dtype=np.int64)
    assert pnmf.as_counts(edge).nz_values[0] == 2**53
    for dt in (np.int64, np.uint64):
        with pytest.raises(
            ValueError, match=r"past 2\*\*53 = 9007199254740992 \(first 9007199254740993"
        ):
            pnmf.as_counts(np.array([[2**53 + 1, 1]], dtype=dt))
    big = pd.DataFrame({"a": [2**53 + 1, 1]}).astype("UInt64")
    with pytest.raises(ValueError, match=r"first 9007199254740993 at row 0, column 'a'"):
        pnmf.as_counts(big)


def test_masked_entries_are_not_called_zeros():
    with pytest.warns(ZeroRowsColumnsWarning, match="masked entries are not counted as zeros"):
        c = pnmf.as_counts(np.array([[1.0, np.nan], [2.0, np.nan]]), missing="mask")
    assert c.n_observed == 2


def test_new_mask_adds_to_the_missing_entries_of_counts():
    # a mask given with Counts that already have missing entries combines with them: the
    # NaN cells stay missing (once they were silently fitted as observed zeros)
    rng = named_rng("test_new_mask_adds_to_the_missing_entries_of_counts")
    V = rng.poisson(5.0, (20, 15)).astype(float)
    nan = rng.random(V.shape) < 0.2
    V[nan] = np.nan
    c = pnmf.as_counts(V, missing="mask")
    extra = np.zeros(V.shape, dtype=bool)
    extra[~nan] = rng.random((~nan).sum()) < 0.1
    both = pnmf.as_counts(c, mask=extra)
    assert both.n_observed == V.size - (nan | extra).sum()
    np.testing.assert_array_equal(both.observed(), ~(nan | extra))
    assert both.row.tolist() == c.row.tolist()


def test_dataarray_read_by_dim_name():
    da = xr.DataArray(
        [[1, 2], [3, 4]], dims=("column", "row"), coords={"row": ["x", "y"], "column": ["a", "b"]}
    )
    c = pnmf.as_counts(da)
    assert c.row.tolist() == ["x", "y"] and c.column.tolist() == ["a", "b"]
    np.testing.assert_array_equal(c.dense(), [[1, 3], [2, 4]])


@pytest.mark.filterwarnings("ignore::poisson_nmf.exceptions.ZeroRowsColumnsWarning")
def test_frames_with_mixed_sparse_columns():
    want = [[0, 0], [1, 2], [0, 0]]
    mixed_subtypes = pd.DataFrame(
        {"a": pd.arrays.SparseArray([0.0, 1.0, 0.0]), "b": pd.arrays.SparseArray([0, 2, 0])}
    )
    sparse_and_dense = pd.DataFrame({"a": pd.arrays.SparseArray([0, 1, 0]), "b": [0, 2, 0]})
    for df in (mixed_subtypes, sparse_and_dense):
        np.testing.assert_array_equal(pnmf.as_counts(df).dense(), want)


def test_csr_index_matches_scipy():
    # the one CSR builder (kl's layout; the sampler's to follow): against scipy's CSR
    rng = named_rng("test_csr_index")
    rows, cols = rng.integers(0, 7, 40), rng.integers(0, 5, 40)
    keep = np.unique(rows * 5 + cols, return_index=True)[1]  # one entry per cell
    rows, cols, vals = rows[keep], cols[keep], rng.random(keep.size)
    indptr, indices, order = csr_index(rows, cols, 8)  # row 7 has no entry
    ref = sp.csr_array((vals, (rows, cols)), shape=(8, 5))
    ref.sort_indices()
    np.testing.assert_array_equal(indptr, ref.indptr)
    np.testing.assert_array_equal(indices, ref.indices)
    np.testing.assert_array_equal(vals[order], ref.data)
    assert indptr.dtype == indices.dtype == np.int64


def test_a_fully_masked_table_is_called_missing_not_zeros():
    X = np.array([[1.0, np.nan], [np.nan, np.nan]])
    with pytest.raises(
        ValueError, match=r"V has no observed entries: every entry \(shape \(2, 2\)\) is missing"
    ):
        pnmf.as_counts(X, mask=np.array([[True, False], [False, False]]), missing="mask")
    with pytest.raises(ValueError, match=r"V has no observed entries"):  # by the mask alone
        pnmf.as_counts(np.ones((3, 2)), mask=np.ones((3, 2), bool))
    with pytest.raises(ValueError, match=r"no observed entries"):
        pnmf.as_counts(sp.csr_matrix(np.ones((3, 2))), mask=sp.csr_matrix(np.ones((3, 2), bool)))
    # zeros are not missing: the observed ones are named as zeros, the masked counted apart
    with pytest.raises(
        ValueError, match=r"V's observed entries are all zeros \(1 observed, 1 missing"
    ):
        pnmf.as_counts(np.array([[0.0, np.nan]]), missing="mask")


@pytest.mark.parametrize("sparse", [False, True])
def test_masks_are_boolean_or_zero_one_integers(sparse):
    V = np.arange(1, 7).reshape(2, 3)
    as_mask = sp.csr_matrix if sparse else np.asarray
    for ok in (
        np.array([[1, 0, 0], [0, 0, 1]]),
        np.array([[True, False, False], [False, False, True]]),
    ):
        c = pnmf.as_counts(V, mask=as_mask(ok))
        assert c.missing_rows.tolist() == [0, 1] and c.missing_cols.tolist() == [0, 2]
    with pytest.raises(TypeError, match=r"integers other than 0 and 1 \(first 2\)"):
        pnmf.as_counts(V, mask=as_mask(np.array([[2, 0, 0], [0, 0, 2]])))
    with pytest.raises(TypeError, match=r"mask must be boolean or integers 0 / 1 .* dtype float64"):
        pnmf.as_counts(V, mask=as_mask(np.array([[1.0, 0, 0], [0, 0, 1]])))


def _labelled(index=None, columns=None, sparse=False):
    V = np.random.default_rng(4).poisson(2.0, (6, 5)) + 1
    df = pd.DataFrame(V, index=index, columns=columns)
    return df.astype(pd.SparseDtype("int64", 0)) if sparse else df


@pytest.mark.parametrize("sparse", [False, True])
def test_mixed_type_labels_are_refused_up_front(sparse):
    # a fit of them could not be saved (netCDF) nor diagnosed (sorting int against str)
    with pytest.raises(
        TypeError,
        match=r"V's row labels mix types: 1 \(int\) and 'a' \(str\).*"
        r"df\.index = df\.index\.astype\(str\)",
    ):
        pnmf.as_counts(_labelled(index=[1, "a", 2, "b", 3, "c"], sparse=sparse))
    with pytest.raises(
        TypeError,
        match=r"V's column labels mix types: 'x' \(str\) and 2 \(int\).*"
        r"df\.columns = df\.columns\.astype\(str\)",
    ):
        pnmf.as_counts(_labelled(columns=["x", 2, "y", 3, "z"], sparse=sparse))
    with pytest.raises(TypeError, match=r"1\.5 \(float\) and 2 \(int\)"):
        pnmf.as_counts(_labelled(index=pd.Index([1.5, 2, 3, 4, 5, 6], dtype=object)))
    fixed = _labelled(index=[1, "a", 2, "b", 3, "c"], sparse=sparse)
    fixed.index = fixed.index.astype(str)  # the remedy the message gives works
    assert pnmf.as_counts(fixed).row.tolist() == ["1", "a", "2", "b", "3", "c"]


def test_mixed_type_coords_of_a_dataarray_are_refused():
    V = xr.DataArray(np.ones((2, 2)), dims=("row", "column"),
                     coords={"column": np.array(["s1", 7], dtype=object)})  # fmt: skip
    with pytest.raises(TypeError, match=r"column labels mix types.*V\.assign_coords\(column="):
        pnmf.as_counts(V)


def test_datetime_and_integer_labels_are_one_type():
    days = pd.date_range("2026-01-01", periods=6)
    c = pnmf.as_counts(_labelled(index=days))
    assert c.row.dtype.kind == "M" and c.row[0] == np.datetime64("2026-01-01")
    c = pnmf.as_counts(_labelled(index=[10, 20, 30, 40, 50, 60], columns=list("abcde")))
    assert c.row.tolist() == [10, 20, 30, 40, 50, 60] and c.column.tolist() == list("abcde")
    # NumPy integers beside Python ints in an object index are one type (int)
    obj = pd.Index([np.int64(1), 2, 3, 4, 5, 6], dtype=object)
    assert pnmf.as_counts(_labelled(index=obj)).row.tolist() == [1, 2, 3, 4, 5, 6]


# --- labelled masks are aligned to V by label -------------------------------------------


def _abc_frame():
    V = pd.DataFrame(np.arange(1, 13).reshape(3, 4), index=list("abc"), columns=list("wxyz"))
    # True on the diagonal of a mask whose rows are V's reversed: (c, w), (b, x), (a, y)
    m = pd.DataFrame(np.eye(3, 4, dtype=bool), index=list("cba"), columns=list("wxyz"))
    return V, m


def _missing_labels(c):
    pairs = zip(c.missing_rows, c.missing_cols, strict=True)
    return sorted((str(c.row[i]), str(c.column[j])) for i, j in pairs)


@pytest.mark.parametrize("sparse", [False, True])
def test_a_dataframe_mask_is_aligned_to_v_by_label(sparse):
    V, m = _abc_frame()
    if sparse:
        V = V.astype(pd.SparseDtype("int64", 0))
    expected = [("a", "y"), ("b", "x"), ("c", "w")]  # not (a, w), (b, x), (c, y) by position
    assert _missing_labels(pnmf.as_counts(V, mask=m)) == expected
    # the same through a Counts, and with both axes shuffled
    assert _missing_labels(pnmf.as_counts(pnmf.as_counts(V), mask=m)) == expected
    assert _missing_labels(pnmf.as_counts(V, mask=m.iloc[::-1, ::-1])) == expected
    # nullable pandas masks without NA are masks too
    assert _missing_labels(pnmf.as_counts(V, mask=m.astype("boolean"))) == expected
    assert _missing_labels(pnmf.as_counts(V, mask=m.astype("Int64"))) == expected
    # a NumPy mask stays positional
    assert _missing_labels(pnmf.as_counts(V, mask=m.to_numpy())) == [
        ("a", "w"), ("b", "x"), ("c", "y")
    ]  # fmt: skip


def test_a_dataarray_mask_is_aligned_by_label_and_dim_name():
    V, m = _abc_frame()
    Vx = xr.DataArray(V.to_numpy(), dims=("row", "column"),
                      coords={"row": list("abc"), "column": list("wxyz")})  # fmt: skip
    mx = xr.DataArray(m.to_numpy().T, dims=("column", "row"),
                      coords={"row": list("cba"), "column": list("wxyz")})  # fmt: skip
    assert _missing_labels(pnmf.as_counts(Vx, mask=mx)) == [("a", "y"), ("b", "x"), ("c", "w")]
    # a DataArray mask without coordinates is positional
    bare = xr.DataArray(m.to_numpy(), dims=("row", "column"))
    assert _missing_labels(pnmf.as_counts(Vx, mask=bare)) == [("a", "w"), ("b", "x"), ("c", "y")]


def test_a_mask_with_other_labels_is_refused_naming_them():
    V, m = _abc_frame()
    with pytest.raises(
        ValueError,
        match=r"mask's row labels are not V's: 1 row label\(s\) of V not in the mask \('a'\); "
        r"1 row label\(s\) of the mask not in V \('q'\).*mask\.to_numpy\(\) to apply it by "
        r"position",
    ):
        pnmf.as_counts(V, mask=m.rename(index={"a": "q"}))
    with pytest.raises(ValueError, match=r"mask's column labels are not V's: 1 column .*\('z'\)"):
        pnmf.as_counts(V, mask=m.iloc[:, :3])
    with pytest.raises(ValueError, match=r"mask has duplicated row labels \('a'\)"):
        pnmf.as_counts(V, mask=m.rename(index={"b": "a"}))
    # through the public fitting functions too (they all take their mask through as_counts)
    with pytest.raises(ValueError, match=r"mask's row labels are not V's"):
        pnmf.kl_nmf(V, 1, mask=pd.DataFrame(m.to_numpy()), random_seed=0)
    with pytest.raises(TypeError, match=r"mask holds a missing value \(first at row 'c', col"):
        pnmf.as_counts(V, mask=m.astype("boolean").where(~m, pd.NA))


# --- labels a saved fit cannot store ------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "kind", "remedy"),
    [
        (
            pd.MultiIndex.from_tuples([(i % 3, f"g{i}") for i in range(6)]),
            r"tuples \(a pandas "
            r"MultiIndex\?\) \(first \(0, 'g0'\)\)",
            ".to_flat_index().map(str)",
        ),
        (pd.period_range("2020-01", periods=6, freq="M"), r"pandas Periods", ".to_timestamp()"),
        (pd.interval_range(0, 6), r"pandas Intervals", ".astype(str)"),
        (
            pd.date_range("2020", periods=6, tz="Europe/Paris"),
            r"timezone-aware datetimes",
            ".tz_localize(None)",
        ),
        (pd.Index([frozenset([i]) for i in range(6)]), r"objects of type frozenset", ".map(str)"),
    ],
    ids=["multiindex", "period", "interval", "tz-aware", "other"],
)
def test_labels_netcdf_cannot_store_are_refused_with_a_remedy_that_works(index, kind, remedy):
    # such a fit could be sampled but then neither saved (save_fit) nor reported
    df = _labelled(index=index)
    with pytest.raises(TypeError, match=rf"V's row labels are {kind}.*netCDF") as err:
        pnmf.as_counts(df)
    assert str(err.value).endswith(f"e.g. df.index = df.index{remedy}")
    df.index = eval(f"df.index{remedy}")  # the remedy the message gives works
    assert pnmf.as_counts(df).row.size == 6
    cols = _labelled(columns=index[:5])
    with pytest.raises(TypeError, match=r"V's column labels .*df\.columns = df\.columns\."):
        pnmf.as_counts(cols)


def test_storable_labels_are_kept():
    for index in (
        pd.Index([1.5, 2.5, 3.0, 4.0, 5.0, 6.0]),
        pd.Index(list("abcdef"), dtype="string"),
        pd.Index([pd.Timestamp(f"202{i}") for i in range(6)], dtype=object),
        pd.timedelta_range(0, periods=6),
    ):
        assert pnmf.as_counts(_labelled(index=index)).row.size == 6


def test_bool_and_int_labels_are_mixed_types_not_duplicates():
    with pytest.raises(TypeError, match=r"row labels mix types: True \(bool\) and 1 \(int\)"):
        pnmf.as_counts(_labelled(index=pd.Index([True, 1, 2, 3, 4, 5], dtype=object)))
