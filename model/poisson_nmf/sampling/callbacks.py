"""The C callbacks nutpie calls, and the user-data record that carries their data.

nutpie calls a log density ``logp(dim, y, grad, logp, user_data)`` and an expand
function ``expand(dim, n_expanded, y, x, user_data)`` through C pointers: no Python, no
GIL. Every array the kernel reads reaches them as an address in the ``user_data``
record, a uint64 array laid out by :class:`Slot` (sizes and flags first, then array
addresses) and filled by :func:`user_data`; the callbacks read it by slot name.
The Numba maps they call (:mod:`poisson_nmf.sampling.coordinates`) and the kernel
(:mod:`poisson_nmf.sampling.kernels`) are in the same package, whose source hash keys
the disk cache (:mod:`poisson_nmf.numba_cache`).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numba
import numba.extending
import numpy as np

from .coordinates import Coords, lowrank_map, ridge_map
from .density import LogDensity
from .kernels import logp_grad

__all__ = [
    "ARRAY_SLOTS",
    "DENSITY_ARRAYS",
    "SIZE",
    "Slot",
    "expand_callback",
    "logp_callback",
    "user_data",
]


class Slot(IntEnum):
    """Positions in the user-data record: sizes and flags, then array addresses."""

    F = 0
    N = 1
    K = 2
    DENSE = 3  # 1: the dense kernel
    NNZ = 4  # non-zeros
    NM = 5  # masked entries
    NP = 6  # padded columns of Vp
    NO = 7  # columns of Op (0 without a mask)
    MASKED = 8
    SINGLE = 9  # 1: the float32 kernel (Vs, Os hold NP, NO columns)
    INDPTR = 10  # addresses of the density's arrays from here ...
    COLS = 11
    VALS = 12
    M_INDPTR = 13
    M_COLS = 14
    VP = 15
    OP = 16
    VS = 17
    OS = 18
    AW = 19
    BW = 20
    AH = 21
    BH = 22  # ... to here
    BM1 = 23  # the coordinate maps: beta - 1 (K,)
    SCALE = 24  # s (n,)
    CONST = 25  # the density's constant (1,)
    LR_U = 26  # U^T (r, n)
    LR_C = 27  # c (r,)
    LR_R = 28  # r, the rank of the low-rank map (a size, not an address)
    INNER = 29  # the inner scale t (n,) of a continued chain
    INNER_N = 30  # its length: n, or 0 (t = 1, skipped)


SIZE = len(Slot)
#: the arrays of LogDensity the kernel reads, in slot order
DENSITY_ARRAYS = ("indptr", "cols", "vals", "m_indptr", "m_cols", "Vp", "Op", "Vs", "Os",
                  "aw", "bw", "ah", "bh")  # fmt: skip
#: the attribute of LogDensity (or the coordinate array) whose address each slot holds
ARRAY_SLOTS: dict[str, Slot] = {
    "indptr": Slot.INDPTR, "cols": Slot.COLS, "vals": Slot.VALS, "m_indptr": Slot.M_INDPTR,
    "m_cols": Slot.M_COLS, "Vp": Slot.VP, "Op": Slot.OP, "Vs": Slot.VS, "Os": Slot.OS,
    "aw": Slot.AW, "bw": Slot.BW, "ah": Slot.AH, "bh": Slot.BH, "bm1": Slot.BM1,
    "scale": Slot.SCALE, "const": Slot.CONST, "U": Slot.LR_U, "c": Slot.LR_C,
    "inner": Slot.INNER,
}  # fmt: skip


def user_data(
    dens: LogDensity, coords: Coords, single: bool = False
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return the user-data record and the arrays its addresses point into.

    The caller keeps the arrays alive as long as the record is in use. ``single``: the
    float32 kernel where the density allows it (:attr:`LogDensity.can_single`).
    """
    keep = {name: np.ascontiguousarray(getattr(dens, name)) for name in DENSITY_ARRAYS}
    keep["bm1"] = np.ascontiguousarray(coords.beta - 1.0, dtype=np.float64)
    keep["scale"] = np.ascontiguousarray(coords.scale, dtype=np.float64)
    keep["const"] = np.array([dens.lik_const + dens.prior_const])
    keep["U"] = np.ascontiguousarray(coords.U.T, dtype=np.float64)  # (r, n)
    keep["c"] = np.ascontiguousarray(coords.c, dtype=np.float64)
    keep["inner"] = np.ascontiguousarray(coords.inner, dtype=np.float64)
    ud = np.zeros(SIZE, dtype=np.uint64)
    ud[Slot.F], ud[Slot.N], ud[Slot.K] = dens.F, dens.N, dens.K
    ud[Slot.DENSE] = int(dens.dense)
    ud[Slot.NNZ], ud[Slot.NM] = dens.vals.size, dens.m_cols.size
    ud[Slot.NP], ud[Slot.NO] = dens.Vp.shape[1], dens.Op.shape[1]
    ud[Slot.MASKED] = int(dens.masked)
    ud[Slot.SINGLE] = int(single and dens.can_single)
    for name, slot in ARRAY_SLOTS.items():
        ud[slot] = keep[name].ctypes.data
    ud[Slot.LR_R] = coords.c.size
    ud[Slot.INNER_N] = coords.inner.size
    return ud, keep


def _as_pointer_typing(typingctx: Any, src: Any) -> Any:  # pragma: no cover - numba typing
    """Cast an integer address to a void pointer (to read arrays given as user data)."""
    from numba.core import cgutils

    def codegen(cgctx: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return numba.types.voidptr(src), codegen


_as_pointer: Any = numba.extending.intrinsic(_as_pointer_typing)


@numba.njit(nogil=True, cache=True)
def _ud_maps(ud: np.ndarray, n: int) -> Any:  # pragma: no cover
    """Read the coordinate maps from the user data: (F, N, K, bm1, scale, U^T, c, inner)."""
    F, N, K = int(ud[Slot.F]), int(ud[Slot.N]), int(ud[Slot.K])
    r = int(ud[Slot.LR_R])
    bm1 = numba.carray(_as_pointer(ud[Slot.BM1]), (K,), np.float64)
    scale = numba.carray(_as_pointer(ud[Slot.SCALE]), (n,), np.float64)
    UT = numba.carray(_as_pointer(ud[Slot.LR_U]), (r, n), np.float64)
    c = numba.carray(_as_pointer(ud[Slot.LR_C]), (r,), np.float64)
    inner = numba.carray(_as_pointer(ud[Slot.INNER]), (int(ud[Slot.INNER_N]),), np.float64)
    return F, N, K, bm1, scale, UT, c, inner


@numba.njit(nogil=True, cache=True)
def _to_x(y: np.ndarray, ud: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """Map the sampler's y to x = (log W, log H) = L (scale * (M (inner * y)))."""
    F, N, K, bm1, scale, UT, c, inner = _ud_maps(ud, y.size)
    if inner.size:  # a continued chain's inner scale (empty: ones, no copy)
        y = y * inner
    t = y  # M = I while no direction is learned: no copy
    if c.size:
        t = np.empty(y.size)
        lowrank_map(y, UT, c, t)
    ridge_map(t, F, N, K, bm1, scale, True, out)


@numba.njit(nogil=True, cache=True)
def _grad_to_y(gx: np.ndarray, ud: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """Carry a gradient in x to y: inner * (M (scale * (L gx))) (L and M are symmetric)."""
    F, N, K, bm1, scale, UT, c, inner = _ud_maps(ud, gx.size)
    t = np.empty(gx.size) if c.size else out  # M = I while no direction is learned
    ridge_map(gx, F, N, K, bm1, scale, False, t)
    if c.size:
        lowrank_map(t, UT, c, out)
    for i in range(inner.size):
        out[i] *= inner[i]


@numba.njit(nogil=True, cache=True)
def _ud_logp(y: np.ndarray, out: np.ndarray, ud: np.ndarray) -> float:  # pragma: no cover
    F, N, K = int(ud[Slot.F]), int(ud[Slot.N]), int(ud[Slot.K])
    nnz, nm = int(ud[Slot.NNZ]), int(ud[Slot.NM])
    Np, No = int(ud[Slot.NP]), int(ud[Slot.NO])
    indptr = numba.carray(_as_pointer(ud[Slot.INDPTR]), (F + 1,), np.int64)
    cols = numba.carray(_as_pointer(ud[Slot.COLS]), (nnz,), np.int64)
    vals = numba.carray(_as_pointer(ud[Slot.VALS]), (nnz,), np.float64)
    m_indptr = numba.carray(_as_pointer(ud[Slot.M_INDPTR]), (F + 1,), np.int64)
    m_cols = numba.carray(_as_pointer(ud[Slot.M_COLS]), (nm,), np.int64)
    Vp = numba.carray(_as_pointer(ud[Slot.VP]), (F, Np), np.float64)
    Op = numba.carray(_as_pointer(ud[Slot.OP]), (F, No), np.float64)
    single = int(ud[Slot.SINGLE])  # 1: the float32 copies exist (with Np, No columns)
    Vs = numba.carray(_as_pointer(ud[Slot.VS]), (F, Np * single), np.float32)
    Os = numba.carray(_as_pointer(ud[Slot.OS]), (F, No * single), np.float32)
    aw = numba.carray(_as_pointer(ud[Slot.AW]), (F, K), np.float64)
    bw = numba.carray(_as_pointer(ud[Slot.BW]), (F, K), np.float64)
    ah = numba.carray(_as_pointer(ud[Slot.AH]), (K, N), np.float64)
    bh = numba.carray(_as_pointer(ud[Slot.BH]), (K, N), np.float64)
    n = y.size
    const = numba.carray(_as_pointer(ud[Slot.CONST]), (1,), np.float64)[0]
    x = np.empty(n)
    gx = np.empty(n)
    _to_x(y, ud, x)
    val = logp_grad(x, F, N, K, indptr, cols, vals, m_indptr, m_cols, Vp, Op, Vs, Os, aw,
                    bw, ah, bh, const, gx, True, ud[Slot.DENSE] != 0, ud[Slot.MASKED] != 0,
                    single != 0)  # fmt: skip
    _grad_to_y(gx, ud, out)
    return val


def logp_callback(dim, x_, out_, logp_, user_data_):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Nutpie's log density: the value at y into logp_, its gradient into out_; 0 if finite."""
    ud = numba.carray(user_data_, (SIZE,), np.uint64)
    n = int(ud[Slot.N] + ud[Slot.F]) * int(ud[Slot.K])
    if dim != n:
        return -1
    y = numba.carray(x_, (n,))
    out = numba.carray(out_, (n,))
    lp = numba.carray(logp_, ())
    val = _ud_logp(y, out, ud)
    lp[()] = val
    if not np.isfinite(val):
        return 4
    for i in range(n):
        if not np.isfinite(out[i]):
            return 3
    return 0


def expand_callback(dim, expanded, x_, out_, user_data_):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Nutpie's expand function: x = (log W, log H) of the sampler's y, into out_."""
    ud = numba.carray(user_data_, (SIZE,), np.uint64)
    F, N, K = int(ud[Slot.F]), int(ud[Slot.N]), int(ud[Slot.K])
    n = (F + N) * K
    if dim != n or expanded != n:
        return -1
    _to_x(numba.carray(x_, (n,)), ud, numba.carray(out_, (n,)))
    return 0
