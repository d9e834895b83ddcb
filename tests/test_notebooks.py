"""Execute every notebook top to bottom at small settings (PNMF_SMALL=1)."""

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
# notebooks whose data ship inside a package that make installs with --no-deps
DATA = {"03_signatures.ipynb": "SigProfilerAssignment", "04_topics.ipynb": "lda"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    package = DATA.get(path.name)
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f"its data ship in {package}: pip install --no-deps {package} (make does)")
    monkeypatch.setenv("PNMF_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
