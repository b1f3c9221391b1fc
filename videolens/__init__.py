"""videolens: mechanistic interpretability for video large language models.

Load a Hugging Face VideoLLM with :class:`HookedVideoLLM`, see every attention pattern
and residual stream by name, cut attention edges between frames, video, question and
answer with :class:`EdgeKnockout`, and run the analyses of "Map the Flow".

Names are imported lazily, so ``import videolens.data.synthetic`` (e.g. in a training
job) does not pull in TransformerLens or plotting libraries.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "EdgeKnockout": "interventions.knockout",
    "GroupError": "errors",
    "HookedVideoLLM": "core.hooked",
    "InterventionError": "errors",
    "LayerRangeError": "errors",
    "LayoutError": "errors",
    "LogitLens": "analyses.lens",
    "PAPER_ANSWER_PREFIX": "core.prompt",
    "PAPER_INSTRUCTION": "core.prompt",
    "PAPER_SYSTEM": "core.prompt",
    "PromptBatch": "core.prompt",
    "Sample": "data.sample",
    "SweepEngine": "engine.sweep",
    "TemporalProbe": "analyses.probe",
    "TokenLayout": "core.layout",
    "UnsupportedModelError": "errors",
    "Video": "io.video",
    "VideoDecodeError": "errors",
    "VideoLLMConfig": "core.hooked",
    "VideoLensError": "errors",
    "VideoPrompt": "core.prompt",
    "load_video": "io.video",
}

__all__ = [
    "EdgeKnockout",
    "GroupError",
    "HookedVideoLLM",
    "InterventionError",
    "LayerRangeError",
    "LayoutError",
    "LogitLens",
    "PAPER_ANSWER_PREFIX",
    "PAPER_INSTRUCTION",
    "PAPER_SYSTEM",
    "PromptBatch",
    "Sample",
    "SweepEngine",
    "TemporalProbe",
    "TokenLayout",
    "UnsupportedModelError",
    "Video",
    "VideoDecodeError",
    "VideoLLMConfig",
    "VideoLensError",
    "VideoPrompt",
    "load_video",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'videolens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from videolens.analyses.lens import LogitLens
    from videolens.analyses.probe import TemporalProbe
    from videolens.core.hooked import HookedVideoLLM, VideoLLMConfig
    from videolens.core.layout import TokenLayout
    from videolens.core.prompt import PAPER_ANSWER_PREFIX, PAPER_INSTRUCTION, PAPER_SYSTEM, PromptBatch, VideoPrompt
    from videolens.data.sample import Sample
    from videolens.engine.sweep import SweepEngine
    from videolens.errors import (
        GroupError,
        InterventionError,
        LayerRangeError,
        LayoutError,
        UnsupportedModelError,
        VideoDecodeError,
        VideoLensError,
    )
    from videolens.interventions.knockout import EdgeKnockout
    from videolens.io.video import Video, load_video

# Pathway discovery (videolens.discovery).
_EXPORTS.update({"GroupPathway": "discovery.spec", "discover_pathway": "discovery.search"})
__all__ += ["GroupPathway", "discover_pathway"]
