#!/usr/bin/env bash
# Prepare a GPU machine that has torch and transformers but not videolens' other dependencies
# (source it: `. benchmarks/device_setup.sh`). Wheels carried in .whl/ are installed to
# /tmp/site; if the `datasets` package (imported by TransformerLens, unused by videolens) is
# missing, an empty stand-in is put on the path.
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
if ! python3 -c "import datasets" >/dev/null 2>&1; then
  mkdir -p /tmp/stubs/datasets
  printf 'class Dataset: pass\n' > /tmp/stubs/datasets/arrow_dataset.py
  printf 'class IterableDataset: pass\n' > /tmp/stubs/datasets/iterable_dataset.py
  printf 'def load_dataset(*a, **k):\n    raise ImportError("datasets is not installed")\n' > /tmp/stubs/datasets/load.py
  printf 'from .arrow_dataset import Dataset\nfrom .load import load_dataset\n' > /tmp/stubs/datasets/__init__.py
  export PYTHONPATH="/tmp/stubs:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
