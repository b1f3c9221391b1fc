"""InternVL, the transformers-native class (``InternVLForConditionalGeneration``).

Frames go through the vision tower as images; the processor writes each frame as
``Frame{i}: <img><IMG_CONTEXT>...</img>`` lines in place of the ``<video>`` placeholder.
The layout keeps each frame's ``IMG_CONTEXT`` run as ``frame(t)`` (a square grid after the
pixel shuffle: 16x16 for 448 px) and the label text as ``video_text`` /
``layout.frames[t].text``.
"""

from __future__ import annotations

from typing import Any

from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter, square_grids


@register_adapter
class InternVLAdapter(VideoLLMAdapter):
    architectures = ("InternVLForConditionalGeneration",)
    family = "internvl"

    def video_token_id(self, config: Any) -> int:
        return int(config.image_token_id)

    def placeholder_token_id(self, processor: Any, config: Any) -> int:
        tokenizer = getattr(processor, "tokenizer", processor)
        return int(tokenizer.convert_tokens_to_ids(processor.video_token))

    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        return square_grids(n_tokens, n_tokens // int(config.image_seq_length))
