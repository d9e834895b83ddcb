"""The sampler's coordinates and the C callbacks nutpie calls."""

import numpy as np
import pytest

from poisson_nmf.sampling.callbacks import ARRAY_SLOTS, SIZE, Slot
from poisson_nmf.sampling.density import log_density
from tests.conftest import named_rng


def test_sampler_coordinates_and_callback(small_counts):
    """The sampler's coordinates y, x = L (scale * (M y)): the map inverts, and the C
    callbacks that nutpie calls (data passed as addresses) return x (expand) and the
    density of x with its gradient carried to y, M (scale * (L grad_x))."""
    import ctypes

    from poisson_nmf.sampling.coordinates import Coords, lowrank_map, ridge_map, ridge_stretch
    from poisson_nmf.sampling.nutpie_model import nutpie_model

    rng = named_rng("test_sampler_coordinates_and_callback")
    dens = log_density(small_counts, 2, mask=rng.random(small_counts.shape) < 0.1)
    F, N, K = dens.F, dens.N, dens.K
    x = rng.normal(0.0, 1.0, dens.n_dim)
    beta, scale = ridge_stretch(dens, x)
    assert beta.shape == (K,) and np.all(beta >= 1.0)
    assert scale.shape == x.shape and np.all(scale > 0)
    U = np.linalg.qr(rng.standard_normal((dens.n_dim, 3)))[0]
    coords = Coords(F, N, beta, scale, np.ascontiguousarray(U), np.array([0.5, 2.0, -0.3]))
    y = coords.to_y(x)
    dptr = ctypes.POINTER(ctypes.c_double)
    model = nutpie_model(dens, y, coords)
    ud = model.user_data.ctypes.data
    expand = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint64, dptr, dptr,
                              ctypes.c_void_p)(model.compiled_expand_func.address)  # fmt: skip
    back = np.empty_like(x)
    assert expand(y.size, y.size, y.ctypes.data_as(dptr), back.ctypes.data_as(dptr), ud) == 0
    np.testing.assert_allclose(back, x, rtol=1e-10, atol=1e-10)
    fn = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, *(3 * [dptr]), ctypes.c_void_p)(
        model.compiled_logp_func.address
    )
    grad_y = np.empty_like(y)
    lp = np.zeros(1)
    rc = fn(y.size, y.ctypes.data_as(dptr), grad_y.ctypes.data_as(dptr),
            lp.ctypes.data_as(dptr), ud)  # fmt: skip
    assert rc == 0
    grad_x = np.empty_like(x)
    assert lp[0] == pytest.approx(dens(x, grad_x), rel=1e-12)
    t = np.empty_like(x)
    ridge_map(grad_x, F, N, K, beta - 1.0, scale, False, t)
    expected = np.empty_like(x)
    lowrank_map(t, np.ascontiguousarray(coords.U.T), coords.c, expected)
    np.testing.assert_allclose(grad_y, expected, rtol=1e-9, atol=1e-9)
    # WH is unchanged along a ridge e_k, which y crosses beta_k times slower than x
    e = np.zeros_like(x)
    e[np.arange(F) * K] = 1.0
    e[F * K : F * K + N] = -1.0
    t0 = np.empty_like(x)
    ridge_map(e, F, N, K, 1.0 / beta - 1.0, np.ones_like(e), True, t0)
    np.testing.assert_allclose(t0, e / beta[0], rtol=1e-12)
    # a continued chain's inner scale: z = y / inner, and the gradient in z is inner * grad_y
    from dataclasses import replace

    inner = rng.uniform(0.1, 10.0, x.size)
    cont = replace(coords, inner=inner)
    z = cont.to_y(x)
    np.testing.assert_allclose(z, y / inner, rtol=1e-12)
    model2 = nutpie_model(dens, z, cont)
    ud2 = model2.user_data.ctypes.data
    expand2 = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint64, dptr, dptr,
                               ctypes.c_void_p)(model2.compiled_expand_func.address)  # fmt: skip
    assert expand2(z.size, z.size, z.ctypes.data_as(dptr), back.ctypes.data_as(dptr), ud2) == 0
    np.testing.assert_allclose(back, x, rtol=1e-10, atol=1e-10)
    fn2 = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, *(3 * [dptr]), ctypes.c_void_p)(
        model2.compiled_logp_func.address
    )
    grad_z = np.empty_like(z)
    assert fn2(z.size, z.ctypes.data_as(dptr), grad_z.ctypes.data_as(dptr),
               lp.ctypes.data_as(dptr), ud2) == 0  # fmt: skip
    np.testing.assert_allclose(grad_z, inner * grad_y, rtol=1e-9, atol=1e-9)


def test_user_data_layout_is_named_and_complete():
    # every slot once, sizes first, then the addresses, in one contiguous record
    assert SIZE == len(Slot) == 31 and [int(s) for s in Slot] == list(range(SIZE))
    addresses = [*range(Slot.INDPTR, Slot.LR_R), Slot.INNER]
    assert sorted(int(s) for s in ARRAY_SLOTS.values()) == addresses
