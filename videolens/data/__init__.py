"""Datasets: the benchmarks of "Map the Flow" from their local downloads, a generic format, synthetic videos.

>>> from videolens.data import load_dataset
>>> samples = load_dataset("tvbench", "/data/TVBench", tasks=["Action Sequence"])  # doctest: +SKIP

Annotations are read at once; each sample's video is decoded when the sample is used,
in background threads (:func:`videolens.data.prefetch.prefetch_decoded`). See
``docs/datasets.md`` for every benchmark's layout. Names are imported lazily, so
``import videolens.data.synthetic`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "AnnotationError": "annotations",
    "MissingVideoError": "annotations",
    "Benchmark": "registry",
    "benchmarks": "registry",
    "get_benchmark": "registry",
    "load_dataset": "registry",
    "PAPER_NUM_FRAMES": "sample",
    "Sample": "sample",
    "prefetch_decoded": "prefetch",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'videolens.data' has no attribute {name!r}")
    return getattr(import_module(f"videolens.data.{_EXPORTS[name]}"), name)
