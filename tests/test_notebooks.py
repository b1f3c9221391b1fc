"""The example notebooks execute top to bottom on CPU with the shipped toy model."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", allow_errors=False, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    shown = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    rich = [o for o in shown if o.output_type in ("display_data", "execute_result")]
    assert rich, f"{path.name} shows no table or figure a reader could look at"
