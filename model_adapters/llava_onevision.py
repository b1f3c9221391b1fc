"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``).

Each frame's features are pooled 2x (bilinear) to a square grid; after the last frame the
model appends ONE learned newline token for the whole video. The layout keeps it as the
``video_extra`` group: part of ``video``, in no frame.
"""

from __future__ import annotations

from typing import Any

from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter, square_grids


@register_adapter
class LlavaOnevisionAdapter(VideoLLMAdapter):
    architectures = ("LlavaOnevisionForConditionalGeneration",)
    family = "llava_onevision"

    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        n_frames = int(inputs["pixel_values_videos"][item].shape[0])
        return square_grids(n_tokens, n_frames, trailing={"newline": 1})
