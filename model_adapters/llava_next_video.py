"""LLaVA-NeXT-Video (``LlavaNextVideoForConditionalGeneration``).

Frames are encoded one by one and pooled spatially (``spatial_pool_stride``); each frame
becomes a square grid of tokens, laid out frame after frame with nothing in between.
"""

from __future__ import annotations

from typing import Any

from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter, square_grids


@register_adapter
class LlavaNextVideoAdapter(VideoLLMAdapter):
    architectures = ("LlavaNextVideoForConditionalGeneration",)
    family = "llava_next_video"

    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        n_frames = int(inputs["pixel_values_videos"][item].shape[0])
        return square_grids(n_tokens, n_frames)
