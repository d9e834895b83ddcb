"""Execute notebooks top to bottom at full settings and save them with their outputs.

Usage: ``python tools/execute_notebooks.py notebooks/*.ipynb`` (``make notebooks``).
The tests execute the same notebooks at small settings (``PNMF_SMALL=1``) without saving.
"""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main(paths: list[str]) -> None:
    env_small = os.environ.pop("PNMF_SMALL", None)
    # figures inline, so that they are saved with the notebook (the tests use Agg)
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        for p in map(Path, paths):
            nb = nbformat.read(p, as_version=4)
            t = time.perf_counter()
            client = NotebookClient(
                nb, timeout=3600, kernel_name="python3",
                resources={"metadata": {"path": str(p.parent)}},
            )  # fmt: skip
            client.execute()
            nbformat.write(nb, p)
            print(f"{p}: {time.perf_counter() - t:.0f} s, load {os.getloadavg()[0]:.1f}")
    finally:
        if env_small is not None:
            os.environ["PNMF_SMALL"] = env_small


if __name__ == "__main__":
    main(sys.argv[1:])
