"""The corpus case: a real sparse term-document table through ``poisson-nmf fit``.

The documents are the docstrings that ship inside SciPy (every public function and
class of its public submodules with a docstring of at least 1500 characters, the
first 400 in name order): a real text corpus available offline. They are counted with
scikit-learn's ``CountVectorizer`` (English stop words left out, words of two letters
or more, the 4000 most frequent), saved as a SciPy ``.npz``, and fitted by the command
line as a new user would, under GNU time (``/usr/bin/time -v``) for the peak memory
(maximum resident set size of the process).

    python benchmarks/corpus.py --out /tmp/corpus                  # the defaults
    python benchmarks/corpus.py --out /tmp/corpus -- --draws 200 --chains 2

Arguments after ``--`` go to ``poisson-nmf fit``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

SUBMODULES = (
    "cluster", "constants", "fft", "integrate", "interpolate", "io", "linalg", "ndimage",
    "odr", "optimize", "signal", "sparse", "spatial", "special", "stats",
)  # fmt: skip


def documents(n_docs: int = 400, min_chars: int = 1500) -> tuple[list[str], list[str]]:
    """Names and docstrings of SciPy's public functions and classes (deterministic)."""
    docs: dict[str, str] = {}
    for sub in SUBMODULES:
        mod = importlib.import_module(f"scipy.{sub}")
        for name in sorted(getattr(mod, "__all__", dir(mod))):
            if name.startswith("_"):
                continue
            obj = getattr(mod, name, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            doc = inspect.getdoc(obj) or ""
            if len(doc) >= min_chars and doc not in docs.values():
                docs[f"scipy.{sub}.{name}"] = doc
    names = sorted(docs)[:n_docs]
    return names, [docs[n] for n in names]


def build(path: Path, n_terms: int = 4000) -> sp.csr_array:
    from sklearn.feature_extraction.text import CountVectorizer

    names, texts = documents()
    vec = CountVectorizer(stop_words="english", max_features=n_terms,
                          token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")  # fmt: skip
    X = sp.csr_array(vec.fit_transform(texts))
    sp.save_npz(path, X)
    return X


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="/tmp/corpus", help="folder for X.npz and the report")
    p.add_argument("--components", default="10")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    X = build(out / "X.npz")
    F, N = X.shape
    print(f"corpus: {F} documents x {N} terms, {X.nnz} non-zeros "
          f"({X.nnz / (F * N):.1%}), {int(X.sum())} counts")  # fmt: skip
    cmd = [sys.executable, "-m", "poisson_nmf", "fit", str(out / "X.npz"),
           "--components", a.components, "--out", str(out / "report"), *extra]  # fmt: skip
    timed = ["/usr/bin/time", "-v", *cmd] if os.path.exists("/usr/bin/time") else cmd
    print("load", os.getloadavg(), "cores", os.cpu_count())
    print("$", " ".join(cmd))
    t = time.perf_counter()
    r = subprocess.run(timed, capture_output=True, text=True)
    print(r.stdout[-4000:])
    err = r.stderr
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    print("\n".join(line for line in err.splitlines() if "poisson-nmf" in line)[-3000:])
    print(f"exit code {r.returncode}, wall {time.perf_counter() - t:.0f} s, peak RSS "
          + (f"{int(peak.group(1)) / 1e6:.2f} GB" if peak else "unknown"))  # fmt: skip
    print("saved:", sorted(p.name for p in (out / "report").glob("*")) if
          (out / "report").exists() else "nothing")  # fmt: skip
    return int(np.sign(r.returncode))


if __name__ == "__main__":
    sys.exit(main())
