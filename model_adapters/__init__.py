"""One module per VideoLLM family; importing this package registers them all.

Each module declares where the family's HF modules live and how its video tokens are
laid out (see ``videolens.adapters.VideoLLMAdapter`` and docs/adapters.md).
"""

from model_adapters import (
    internvl,
    llava_next_video,
    llava_onevision,
    pllava,
    qwen2_5_vl,
    qwen2_vl,
    qwen3_vl,
    video_llava,
    videollama3,
)

__all__ = [
    "internvl",
    "llava_next_video",
    "llava_onevision",
    "pllava",
    "qwen2_5_vl",
    "qwen2_vl",
    "qwen3_vl",
    "video_llava",
    "videollama3",
]
