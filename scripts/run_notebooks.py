"""Execute the example notebooks in place, so that they are committed with the outputs of a real run.

    python scripts/run_notebooks.py              # every notebook in examples/
    python scripts/run_notebooks.py 06           # the ones whose name contains "06"

The tests execute the same notebooks (tests/test_notebooks.py); run this after changing one
so the stored outputs are the outputs of the code in the same commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    for cell in nb.cells:  # execution counts and timings are noise in a diff
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    print(f"executed {path.name}")


if __name__ == "__main__":
    wanted = sys.argv[1:]
    for notebook in sorted(EXAMPLES.glob("*.ipynb")):
        if not wanted or any(w in notebook.name for w in wanted):
            run(notebook)
