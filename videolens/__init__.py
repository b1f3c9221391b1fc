"""videolens: mechanistic interpretability for video large language models.

Load a Hugging Face VideoLLM with :class:`HookedVideoLLM`, see every attention pattern
and residual stream by name, cut attention edges between frames, video, question and
answer with :class:`EdgeKnockout`, and run the analyses of "Map the Flow".
"""

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

__version__ = "0.1.0"

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
