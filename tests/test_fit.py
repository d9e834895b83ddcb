import numpy as np
import pytest

import poisson_nmf as pnmf
from poisson_nmf.compare import kkt_residual, matched_agreement
from poisson_nmf.fit import _block_step, _kappa, _PyMCDerivatives, _Rows
from poisson_nmf.model import build_model
from tests.conftest import named_rng


@pytest.fixture(scope="module")
def small():
    rng = named_rng("small_fit")
    W, H = rng.gamma(1.0, 1.0, (40, 3)), rng.gamma(1.0, 2.0, (3, 25))
    return rng.poisson(W @ H)


def test_fit_map_increases_pymc_logp_and_matches_objective(small):
    seen = []
    res = pnmf.fit_map(
        small, 3, random_seed=1, max_iter=300, tol=1e-10, callback=lambda *a: seen.append(a[0])
    )
    assert res.converged and res.n_calls > 0
    assert seen == sorted(seen) and len(seen) >= 1
    # every accepted iteration raises PyMC's logp; rejected extrapolations repeat the
    # last value, so the history never rises (rounding: 1e-12 relative)
    assert np.all(np.diff(res.history) <= 1e-12 * res.history[0])
    assert res.objective == pytest.approx(pnmf.kl_divergence(small, (res.W, res.H)), rel=1e-12)
    # logp + KL = constant on the PyMC model itself
    assert res.logp + res.objective == pytest.approx(pnmf.loglik_constant(small), rel=1e-12)
    # a stationary point: the KKT residual is at the level the stopping rule leaves
    # (seen: 1.4e-6 to 2.5e-6 for seeds 1..3)
    assert kkt_residual(small, res.W, res.H) < 3e-5


def test_fit_map_is_reproducible_and_validates_init(small):
    a = pnmf.fit_map(small, 2, random_seed=5, max_iter=5, warn=False)
    b = pnmf.fit_map(small, 2, random_seed=5, max_iter=5, warn=False)
    np.testing.assert_array_equal(a.W, b.W)
    with pytest.warns(pnmf.ConvergenceWarning, match="max_iter=2"):
        pnmf.fit_map(small, 2, random_seed=5, max_iter=2)
    with pytest.raises(ValueError, match=r"init W0 has shape \(3, 2\)"):
        pnmf.fit_map(small, 2, init=(np.ones((3, 2)), np.ones((2, 25))))
    with pytest.raises(ValueError, match="has no mode"):
        pnmf.fit_map(small, 2, priors=pnmf.GammaPriors(h_shape=0.5))


def test_fit_map_leaves_a_dead_component_in_its_start():
    # 6 x 8 Poisson(5), K = 2, W0[:, 1] = 0 and H0[1] = 0: the floored start is a saddle
    # point, and fit_map stayed at the rank-1 optimum (13.04 against 5.28)
    V = np.random.default_rng(0).poisson(5, size=(6, 8))
    W0, H0 = pnmf.initial_factors(V, 2, random_seed=0)
    W0[:, 1], H0[1] = 0.0, 0.0
    with pytest.warns(pnmf.TrappedZerosWarning, match=r"dead component\(s\) \[1\]"):
        res = pnmf.fit_map(V, 2, init=(W0, H0))
    best = pnmf.kl_nmf(V, 2, n_restarts=8, random_seed=0, tol=1e-12, max_iter=5000)
    # both at the optimum to their stopping rules (about 1e-9 relative here)
    assert res.objective == pytest.approx(best.objective, rel=1e-7)
    assert best.objective < 0.5 * pnmf.kl_nmf(V, 1).objective


@pytest.mark.parametrize("priors", [None, pnmf.GammaPriors(w_shape=1.5, h_shape=1.2)])
def test_block_step_lowers_every_rows_objective(small, priors):
    """The certified step lengths: each row's own objective (NumPy) decreases."""
    rng = named_rng("block_step")
    K = 3
    W, H = pnmf.initial_factors(small, K, random_seed=2)
    W[:, 0] *= rng.uniform(0.01, 100.0, W.shape[0])  # badly scaled rows: long Newton steps
    fn = _PyMCDerivatives(build_model(small, K, priors=priors))
    rows = _Rows(fn, "W")
    state = fn.value_grad(W, H)
    aw, bw, _, _ = (None,) * 4 if priors is None else priors.arrays(*small.shape, K)

    def row_objective(W):
        lam = W @ H
        out = (lam - small * np.log(lam)).sum(axis=1)
        if priors is not None:
            out += (bw * W - (aw - 1.0) * np.log(W)).sum(axis=1)
        return out

    kappa = _kappa(priors, *small.shape, K)
    assert kappa == (1.0 if priors is None else pytest.approx(1.0 / np.sqrt(0.2)))
    for exact in (True, False):
        A = rows.blocks(W, H) if exact else np.eye(K) * np.ones((W.shape[0], 1, 1))
        W1, _, new_state = _block_step(rows, W, H, state, A, exact, 1e-12, kappa)
        before, after = row_objective(W), row_objective(W1)
        # no row gets worse (rounding of a sum of 25 terms allowed), most improve
        assert np.all(after <= before + 1e-12 * np.abs(before))
        assert np.mean(after < before) > 0.9
        assert new_state[0] > state[0]
        np.testing.assert_allclose(new_state[1], fn.value_grad(W1, H)[1], rtol=1e-12)


def test_fit_map_sparse_masked_input_reaches_the_kl_optimum(small):
    import scipy.sparse as sp

    rng = named_rng("fit_map_masked")
    mask = rng.random(small.shape) < 0.2
    init = pnmf.initial_factors(small, 2, random_seed=3)
    # sparse input: the non-zero form of the likelihood, less the masked entries
    fit = pnmf.fit_map(sp.csr_array(small), 2, init=init, mask=mask, tol=1e-12)
    kl = pnmf.kl_nmf(small, 2, init=init, mask=mask, tol=1e-13, max_iter=5000)
    # K = 2 on well-separated data: one optimum from this start, reached by both to
    # their stopping rules (1e-12 / 1e-13 relative per iteration)
    assert fit.objective == pytest.approx(kl.objective, rel=1e-9)  # seen: 1.5e-12
    counts = pnmf.as_counts(small, mask=mask)
    assert fit.objective == pytest.approx(pnmf.kl_divergence(counts, (fit.W, fit.H)), rel=1e-12)
    assert kkt_residual(counts, fit.W, fit.H) < 1e-5  # seen: 7.7e-7


@pytest.mark.parametrize(
    "priors", [None, pnmf.GammaPriors(), pnmf.GammaPriors(w_shape=1.5, h_shape=1.2)]
)
def test_map_and_kl_agree_at_stationary_points(small, priors):
    cmp = pnmf.compare_map_kl(small, 3, priors=priors, random_seed=0)
    # a converged solution polished by the other method moves by less than the
    # stopping rules leave (1e-12 relative per iteration; seen here: ~1e-11 at most)
    assert cmp.objective_gap < 1e-9
    # both are KKT points of both objectives (seen: <= 1e-6 for seeds 0..2)
    assert cmp.kkt_kl_under_map < 1e-5 and cmp.kkt_map_under_kl < 1e-5
    # logp + objective = constant: PyTensor and NumPy sum ~1000 terms of size up to
    # |logp| in a different order, so the identity holds to a few ulp of |logp| (seen:
    # <= 1.2e-15; before the prior parameters were passed as float64, 2e-10)
    assert cmp.identity_error < 1e-13
    # K = 3 on data drawn with K = 3: both fits find the one optimum from this start,
    # the factors agree to the stopping rules (seen: 2e-6 in W, 1.4e-5 in H at most)
    assert cmp.same_optimum
    assert cmp.w_agreement < 1e-4 and cmp.h_agreement < 1e-3
    assert "objective gap" in cmp.summary()


def test_kkt_residual_matches_dense_reference():
    """The non-zero form against the obvious dense formula, with a mask and a = 1 zeros."""
    rng = named_rng("kkt_dense")
    X = rng.poisson(1.5, size=(12, 9))
    mask = rng.random(X.shape) < 0.25
    W, H = rng.gamma(1.0, 1.0, (12, 2)), rng.gamma(1.0, 1.0, (2, 9))
    W[0, 1] = 0.0  # allowed with shape 1 (no log term)
    priors = pnmf.GammaPriors(w_shape=1.0, w_rate=2.0, h_shape=1.3, h_rate=0.5)
    counts = pnmf.as_counts(X, mask=mask)
    obs = ~mask
    lam = W @ H
    ratio = np.where(obs & (X > 0), X / lam, 0.0)
    gW = obs @ H.T - ratio @ H.T + 2.0
    gH = W.T @ obs - W.T @ ratio + 0.5 - 0.3 / H
    scale = max(np.abs(obs @ H.T).max(), np.abs(W.T @ obs).max())
    expected = max(
        np.abs(np.minimum(W / W.mean(), gW)).max(), np.abs(np.minimum(H / H.mean(), gH)).max()
    )
    assert kkt_residual(counts, W, H, priors) == pytest.approx(expected / scale, rel=1e-12)
    assert kkt_residual(counts, W, H, gradient=(gW, gH)) == pytest.approx(expected / scale)


def test_matched_agreement_undoes_permutation_and_scale():
    rng = named_rng("matched_agreement")
    W, H = rng.gamma(1.0, 1.0, (20, 4)), rng.gamma(1.0, 1.0, (4, 7))
    perm = rng.permutation(4)
    d = rng.uniform(0.1, 10, 4)
    w, h, p = matched_agreement(W, H, (W * d)[:, perm], (H / d[:, None])[perm])
    assert w < 1e-12 and h < 1e-12
    np.testing.assert_array_equal(perm[p], np.arange(4))


def test_benchmark_script_runs_quick(capsys):
    import runpy
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "map.py"
    bench = runpy.run_path(str(path), run_name="benchmark")
    rows = bench["main"](["--quick", "--seeds", "1"])
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("ratio find_MAP / fit_map")
    assert rows[0].map_kkt < 1e-3 and np.isfinite(rows[0].pymc_obj)


def test_compare_on_a_table_fitted_exactly():
    # objective ~0: the gap is measured against a floor, not divided by zero
    V = np.outer([1, 2, 3], [2, 4, 6, 8])
    cmp = pnmf.compare_map_kl(V, 1, random_seed=0)
    assert cmp.same_optimum
    assert cmp.objective_gap < 1e-6
    assert pnmf.compare_map_kl(np.array([[3], [7]]), 1, random_seed=0).same_optimum
