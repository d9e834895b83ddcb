"""The log density (both kernels) against PyMC's, and the float32 kernel."""

import numpy as np
import pytest

import poisson_nmf as pnmf
from poisson_nmf.data import as_counts
from poisson_nmf.model import build_model
from poisson_nmf.sampling.density import LogDensity
from tests.conftest import named_rng


@pytest.mark.parametrize("dense", [True, False], ids=["dense-kernel", "sparse-kernel"])
@pytest.mark.parametrize(
    ("priors", "masked"),
    [
        (pnmf.GammaPriors(), False),
        (pnmf.GammaPriors(w_shape=0.7, w_rate=[1.0, 2.0], h_shape=2.0, h_rate=0.5), False),
        (pnmf.GammaPriors(w_shape=1.5), True),
    ],
)
def test_log_density_equals_pymc(small_counts, priors, masked, dense):
    rng = named_rng("test_log_density_equals_pymc")
    mask = rng.random(small_counts.shape) < 0.2 if masked else None
    dens = LogDensity.build(as_counts(small_counts, mask=mask), 2, priors, dense=dense)
    assert dens.dense is dense
    model = build_model(small_counts, 2, priors=priors, mask=mask, likelihood="dense")
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    for _ in range(3):
        x = rng.normal(0.0, 1.0, dens.n_dim)
        point = {"W_log__": x[:60].reshape(30, 2), "H_log__": x[60:].reshape(2, 12)}
        g = np.empty(dens.n_dim)
        assert dens(x, g) == pytest.approx(float(logp(point)), rel=1e-9)
        np.testing.assert_allclose(g, dlogp(point), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("masked", [False, True], ids=["all-observed", "masked"])
def test_single_precision_kernel_is_close_to_double(small_counts, masked):
    """The sampler's float32 dense kernel against the float64 one. The differences are
    rounding: float32 rates carry about 6e-8 relative error, so the log density (a sum
    of v log rate - rate) moves by about 1e-8 relative and the gradient by about 1e-6
    of its largest entry; the bounds leave a factor 10 (deterministic, not random)."""
    rng = named_rng("test_single_precision_kernel")
    mask = rng.random(small_counts.shape) < 0.2 if masked else None
    dens = LogDensity.build(as_counts(small_counts, mask=mask), 2, pnmf.GammaPriors(), dense=True)
    assert dens.can_single and dens.Vs.dtype == np.float32
    for _ in range(3):
        x = rng.normal(0.0, 1.0, dens.n_dim)
        g64, g32 = np.empty(dens.n_dim), np.empty(dens.n_dim)
        lp64, lp32 = dens(x, g64), dens(x, g32, single=True)
        assert lp32 == pytest.approx(lp64, rel=1e-7)
        assert lp32 != lp64  # the float32 kernel did run
        assert np.max(np.abs(g32 - g64)) <= 1e-5 * np.max(np.abs(g64))
    sparse = LogDensity.build(as_counts(small_counts), 2, pnmf.GammaPriors(), dense=False)
    with pytest.raises(ValueError, match="float32"):
        sparse(np.zeros(sparse.n_dim), single=True)


def test_log_density_is_public(small_counts):
    dens = pnmf.log_density(small_counts, 2)
    assert type(dens) is LogDensity and dens.n_dim == (30 + 12) * 2
