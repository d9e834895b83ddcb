"""Numba's disk cache of the package's compiled code, keyed on a hash of the source.

Numba keys a cached function on its own file's modification time and size, so it
misses an edit to a function it calls in another file (the sampler's kernels call
``vecmath``, the callbacks the coordinate maps), and an editable install or a checkout
that restores times can load code compiled from other source. :func:`ensure_fresh`
closes that gap: it hashes every file of the ``sampling`` package (so that an edit
anywhere in it, compiled or not, cannot load stale kernels) and every other module of
the package that uses Numba (``vecmath``, ``kl``, ...), and when the hash differs from
the one stored beside the cache, removes the cached code before anything loads it. It
runs when a module with cached Numba code is imported, where the sampler's callbacks
load, and in :func:`poisson_nmf.sampling.cache.precompile`.

Two processes that find a stale cache at the same moment may both clear it; each then
compiles again, which costs time, never correctness.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

__all__ = ["ensure_fresh", "hashed_files", "source_hash"]

_PACKAGE = Path(__file__).resolve().parent
_STAMP = "poisson_nmf-numba-source.sha256"


def _probe() -> None:  # pragma: no cover - only its file's location is used
    """Locate Numba's cache directory for this package's source files."""


def _cache_dir() -> Path | None:
    """Numba's cache directory for this package's source files (None: none writable)."""
    from numba.core.caching import FunctionCache

    try:
        return Path(FunctionCache(_probe)._cache_path)
    except RuntimeError:
        return None


def _numba_modules() -> list[Path]:
    return sorted(
        p
        for p in _PACKAGE.rglob("*.py")
        if "import numba" in (text := p.read_text(encoding="utf-8")) or "from numba" in text
    )


def hashed_files() -> list[Path]:
    """Every file of the ``sampling`` package and every other module importing Numba."""
    return sorted({*(_PACKAGE / "sampling").rglob("*.py"), *_numba_modules()})


def source_hash() -> str:
    """SHA-256 of :func:`hashed_files` (paths and contents)."""
    h = hashlib.sha256()
    for p in hashed_files():
        h.update(str(p.relative_to(_PACKAGE)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@functools.cache
def ensure_fresh() -> bool:
    """Remove cached compiled code built from other source; return whether it was fresh.

    Returns
    -------
    bool
        ``True`` when the stored hash matched (or no cache directory can be written, in
        which case Numba compiles in memory and there is nothing stale to load).
    """
    cache_dir = _cache_dir()
    if cache_dir is None:  # no writable cache location: nothing is cached
        return True
    stamp = cache_dir / _STAMP
    want = source_hash()
    if stamp.is_file() and stamp.read_text() == want:
        return True
    for f in [*cache_dir.glob("*.nbi"), *cache_dir.glob("*.nbc")]:
        f.unlink(missing_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(want)
    return False
