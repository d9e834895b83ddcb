import numpy as np
import pytest

import poisson_nmf as pnmf
from poisson_nmf.model import build_model
from poisson_nmf.optim.compare import kkt_residual
from poisson_nmf.optim.map import PyMCDerivatives, Rows, block_step, concordance_kappa
from tests.conftest import named_rng


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
    fn = PyMCDerivatives(build_model(small, K, priors=priors))
    rows = Rows(fn, "W")
    state = fn.value_grad(W, H)
    aw, bw, _, _ = (None,) * 4 if priors is None else priors.arrays(*small.shape, K)

    def row_objective(W):
        lam = W @ H
        out = (lam - small * np.log(lam)).sum(axis=1)
        if priors is not None:
            out += (bw * W - (aw - 1.0) * np.log(W)).sum(axis=1)
        return out

    kappa = concordance_kappa(priors, *small.shape, K)
    assert kappa == (1.0 if priors is None else pytest.approx(1.0 / np.sqrt(0.2)))
    for exact in (True, False):
        A = rows.blocks(W, H) if exact else np.eye(K) * np.ones((W.shape[0], 1, 1))
        W1, _, new_state = block_step(rows, W, H, state, A, exact, 1e-12, kappa)
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


def test_benchmark_script_runs_quick(capsys):
    import runpy
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "map.py"
    bench = runpy.run_path(str(path), run_name="benchmark")
    rows = bench["main"](["--quick", "--seeds", "1"])
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("ratio find_MAP / fit_map")
    assert rows[0].map_kkt < 1e-3 and np.isfinite(rows[0].pymc_obj)
