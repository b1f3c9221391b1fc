"""Tiny random-initialised models of every registered family, for offline tests.

A family declares its tiny model in its own module in ``model_adapters`` (a
:class:`~videolens.testing.spec.TinySpec` on its adapter); this package holds only generic
helpers:

- :mod:`~videolens.testing.build`: :func:`build_tiny_model` (any family, by name, through the
  adapter registry), :func:`build_tiny_tokenizer`, :func:`save_tiny_model`;
- :mod:`~videolens.testing.spec`: the spec, layout-facts and support-row dataclasses;
- :mod:`~videolens.testing.tokenizer`: BPE training and the token sets families share;
- :mod:`~videolens.testing.templates`: the Vicuna and ChatML chat templates;
- :mod:`~videolens.testing.sizes`: the text/vision tower sizes and frame resolutions;
- :mod:`~videolens.testing.conformance`: the checks every family must pass;
- :mod:`~videolens.testing.support`: the support tables of the docs;
- :mod:`~videolens.testing.video`: :func:`random_video`.

Names are resolved lazily, so family modules can import the spec classes without pulling
in transformers. ``SUPPORTED_TINY_FAMILIES`` is read from the registry on each access.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "LayoutFacts": "videolens.testing.spec",
    "SupportRow": "videolens.testing.spec",
    "TinySpec": "videolens.testing.spec",
    "TokenizerSpec": "videolens.testing.tokenizer",
    "VICUNA_TEMPLATE": "videolens.testing.templates",
    "build_tiny_model": "videolens.testing.build",
    "build_tiny_pllava": "videolens.testing.build",
    "build_tiny_tokenizer": "videolens.testing.build",
    "check_family": "videolens.testing.conformance",
    "llava_next_video_processor": "model_adapters.llava_next_video",
    "random_video": "videolens.testing.video",
    "save_tiny_model": "videolens.testing.build",
    "support_table": "videolens.testing.support",
    "tiny_families": "videolens.testing.build",
    "tiny_spec": "videolens.testing.build",
}

__all__ = ["SUPPORTED_TINY_FAMILIES", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name == "SUPPORTED_TINY_FAMILIES":
        return import_module("videolens.testing.build").tiny_families()
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
