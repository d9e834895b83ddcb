"""Command line: ``poisson-nmf ...`` and ``python -m poisson_nmf ...``.

Bad input is answered by a one-line error on standard error and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from . import kl_divergence, load_digits, loglik_constant, poisson_loglik
    from .data import ZeroRowsColumnsWarning, as_counts
    from .kl import kl_nmf

    V = load_digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroRowsColumnsWarning)
        counts = as_counts(V)
    F, N = counts.shape
    print(f"data: {V.attrs['description']}")
    print(
        f"      V is {F} x {N} counts (0..{int(V.max())}), "
        f"{counts.nz_values.size / (F * N):.1%} non-zero, total {counts.total:.0f}"
    )
    K = args.components
    t = time.perf_counter()
    res = kl_nmf(counts, K, random_seed=args.seed)
    print(
        f"KL-NMF, K = {K}: D(V || WH) = {res.objective:.2f} after {res.n_iter} iterations "
        f"({time.perf_counter() - t:.1f} s, converged: {res.converged})"
    )
    rng = np.random.default_rng(args.seed)
    const = loglik_constant(counts)
    print("identity log p(V | WH) + D(V || WH) = constant, checked at the fit and 3 random points:")
    points = [(res.W, res.H)] + [
        (rng.gamma(1.0, 1.0, (F, K)), rng.gamma(1.0, 1.0, (K, N))) for _ in range(3)
    ]
    worst = 0.0
    for W, H in points:
        ll, kl = poisson_loglik(counts, (W, H)), kl_divergence(counts, (W, H))
        rel = abs(ll + kl - const) / abs(const)
        worst = max(worst, rel)
        print(f"  loglik {ll:14.4f} + KL {kl:14.4f} = {ll + kl:.6f}   (relative error {rel:.1e})")
    print(f"  constant Σ[v log v - v - log v!] = {const:.6f}")
    if worst > 1e-10:
        print(f"error: the identity fails (relative error {worst:.1e})", file=sys.stderr)
        return 1
    print("the maximum-likelihood (W, H) is the KL-minimising (W, H): the identity holds")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="poisson-nmf",
        description="Bayesian Poisson NMF in PyMC: MAP = KL-NMF, posteriors, ArviZ reports.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="the main job on the bundled digits")
    d.add_argument("--out", default="reports/demo", help="report folder (default reports/demo)")
    d.add_argument("--components", type=int, default=10, help="K (default 10)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    d.set_defaults(func=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"poisson-nmf: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
