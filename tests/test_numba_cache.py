from pathlib import Path

from poisson_nmf import numba_cache


def test_stale_cache_is_cleared(tmp_path, monkeypatch):
    monkeypatch.setattr(numba_cache, "_cache_dir", lambda: tmp_path)
    fresh = numba_cache.ensure_fresh.__wrapped__
    (tmp_path / "kernels._lik_dense-248.py312.1.nbc").write_bytes(b"old code")
    (tmp_path / "kernels._lik_dense-248.py312.nbi").write_bytes(b"old index")
    (tmp_path / numba_cache._STAMP).write_text("0" * 64)  # compiled from other source
    assert fresh() is False
    assert not list(tmp_path.glob("*.nb*"))
    assert (tmp_path / numba_cache._STAMP).read_text() == numba_cache.source_hash()
    (tmp_path / "kl._cd_half-278.py312.1.nbc").write_bytes(b"new code")
    assert fresh() is True  # same source: the cache is kept
    assert (tmp_path / "kl._cd_half-278.py312.1.nbc").exists()


def test_hash_covers_the_sampling_package_and_every_numba_module():
    package = Path(numba_cache.__file__).parent
    files = {p.relative_to(package).as_posix() for p in numba_cache.hashed_files()}
    # every file of sampling/, compiled or not (an edit anywhere there recompiles)
    assert {p.relative_to(package).as_posix() for p in (package / "sampling").glob("*.py")} <= files
    assert {"sampling/kernels.py", "sampling/api.py", "optim/kl.py", "vecmath.py"} <= files
    # fit_loadings' sampler kernels: an edit there cannot load stale compiled code
    assert "loadings_kernels.py" in files
    assert "report.py" not in files  # an edit elsewhere does not force a recompile
    assert len(numba_cache.source_hash()) == 64


def test_real_cache_stamped():
    # the package's own cache directory carries the stamp of the source in use
    numba_cache.ensure_fresh()
    d = numba_cache._cache_dir()
    assert d is not None
    assert (Path(d) / numba_cache._STAMP).read_text() == numba_cache.source_hash()
