"""How much the variational posterior understates the uncertainty: VI against NUTS.

On problems where NUTS is clean (its ``diagnose`` verdict is printed beside each), per
entry of W and H: the ratio of VI's posterior sd to NUTS's, and the share of NUTS's
draws inside VI's central 90 % interval (0.90 if VI were right). Both trees are
normalised the same way (columns of W sum to one); VI's components are matched to
NUTS's by their means (:func:`poisson_nmf.match_components`). Also VI's PSIS k-hat
against the exact posterior, and the time of each.

    python benchmarks/vi_vs_nuts.py           # digits slice and five simulated problems
    python benchmarks/vi_vs_nuts.py --quick   # one tiny problem (the tests run it)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np


def simulated(name: str, F: int, N: int, K: int, shape: float, scale: float) -> np.ndarray:
    rng = np.random.default_rng(sum(map(ord, name)))
    return rng.poisson(rng.gamma(shape, 1.0, (F, K)) @ rng.gamma(shape, scale, (K, N)))


def compare(name: str, V, K: int, nuts: dict, seed: int = 0) -> dict:
    import poisson_nmf as pnmf

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = pnmf.sample_posterior(V, K, random_seed=seed, pointwise_draws=0, **nuts)
    t1 = time.perf_counter()
    vi = pnmf.sample_posterior(V, K, method="vi", random_seed=seed, pointwise_draws=0)
    t2 = time.perf_counter()
    verdict = pnmf.diagnose(ex).verdict
    pe, pv = ex["posterior"], vi["posterior"]
    Wm, Hm = (pe[v].mean(("chain", "draw")).values for v in ("W", "H"))
    Wv = pv["W"].values[0].astype(np.float64)  # (draw, F, K)
    Hv = pv["H"].values[0].astype(np.float64)
    perm = pnmf.match_components(Wv.mean(0), Hv.mean(0), Wm, Hm)
    Wv, Hv = Wv[..., perm], Hv[:, perm, :]
    out = {"problem": name, "shape": list(np.shape(V)), "K": K, "nuts_verdict": verdict}
    for var, xv in (("W", Wv), ("H", Hv)):
        xe = pe[var].values.reshape(-1, *pe[var].shape[2:])  # (chain * draw, ...)
        ratio = (xv.std(0, ddof=1) / xe.std(0, ddof=1)).ravel()
        lo, hi = np.quantile(xv, [0.05, 0.95], axis=0)
        inside = ((xe >= lo) & (xe <= hi)).mean(0).ravel()
        out[f"{var}_sd_ratio_q10_50_90"] = np.quantile(ratio, [0.1, 0.5, 0.9]).round(2).tolist()
        out[f"{var}_in_vi90_mean_min"] = [round(float(inside.mean()), 3),
                                          round(float(inside.min()), 3)]  # fmt: skip
    info = json.loads(vi.attrs["vi"])
    out["vi_khat"] = round(info["psis"]["khat"], 2)
    out["restart_tv"] = round(info["restart_max_tv_distance_w"], 3)
    out["nuts_s"], out["vi_s"] = round(t1 - t0, 1), round(t2 - t1, 1)
    print(json.dumps(out), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one tiny problem")
    args = p.parse_args(argv)
    print(f"load {os.getloadavg()}, cpus {os.cpu_count()}", flush=True)
    if args.quick:
        compare("tiny", simulated("tiny", 12, 10, 2, 1.0, 3.0), 2,
                {"draws": 200, "tune": 200, "chains": 2})  # fmt: skip
        return 0
    import poisson_nmf as pnmf

    nuts = {"draws": 1000, "tune": 1000, "chains": 4}
    digits = pnmf.load_digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compare("digits[:100], K=3", digits[:100], 3, nuts)
    problems = [
        ("sim 30x20 K=2", 30, 20, 2, 1.0, 3.0),
        ("sim 50x40 K=3", 50, 40, 3, 1.0, 3.0),
        ("sim 60x30 K=2 sparse", 60, 30, 2, 0.3, 2.0),
        ("sim 40x40 K=4", 40, 40, 4, 1.0, 5.0),
        ("sim 100x20 K=3 low counts", 100, 20, 3, 1.0, 0.5),
    ]
    for name, F, N, K, shape, scale in problems:
        compare(name, simulated(name, F, N, K, shape, scale), K, nuts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
