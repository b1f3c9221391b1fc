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
    "EdgeKnockout": "interventions",
    "GroupError": "errors",
    "HookedVideoLLM": "hooked",
    "InterventionError": "errors",
    "LayerRangeError": "errors",
    "LayoutError": "errors",
    "LogitLens": "lens",
    "PAPER_ANSWER_PREFIX": "prompt",
    "PAPER_INSTRUCTION": "prompt",
    "PAPER_SYSTEM": "prompt",
    "PromptBatch": "prompt",
    "TemporalProbe": "probe",
    "TokenLayout": "layout",
    "UnsupportedModelError": "errors",
    "Video": "video",
    "VideoDecodeError": "errors",
    "VideoLLMConfig": "hooked",
    "VideoLensError": "errors",
    "VideoPrompt": "prompt",
    "load_video": "video",
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
    from .errors import (
        GroupError,
        InterventionError,
        LayerRangeError,
        LayoutError,
        UnsupportedModelError,
        VideoDecodeError,
        VideoLensError,
    )
    from .hooked import HookedVideoLLM, VideoLLMConfig
    from .interventions import EdgeKnockout
    from .layout import TokenLayout
    from .lens import LogitLens
    from .probe import TemporalProbe
    from .prompt import PAPER_ANSWER_PREFIX, PAPER_INSTRUCTION, PAPER_SYSTEM, PromptBatch, VideoPrompt
    from .video import Video, load_video
