"""InternVL, the transformers-native class (``InternVLForConditionalGeneration``).

Frames go through the vision tower as images; the processor writes each frame as
``Frame{i}: <img><IMG_CONTEXT>...</img>`` lines in place of the ``<video>`` placeholder.
The layout keeps each frame's ``IMG_CONTEXT`` run as ``frame(t)`` (a square grid after the
pixel shuffle: 16x16 for 448 px) and the label text as ``video_text`` /
``layout.frames[t].text``.

Tiny model: InternViT-style tower on 56x56 frames with patch 14 (4x4 patches), pixel shuffle
0.5 -> 2x2 = 4 ``<IMG_CONTEXT>`` tokens per frame; Qwen2 text tower; ChatML template whose
``<video>\n`` placeholder the processor turns into ``Frame1: <img>...</img>`` lines.
"""

from __future__ import annotations

from typing import Any

from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter, square_grids
from videolens.testing.sizes import QWEN_PATCH_SIZE, TINY_TOWER, TextDims
from videolens.testing.spec import LayoutFacts, SupportRow, TinySpec
from videolens.testing.tokenizer import INTERNVL_TOKENS

#: patch 14 -> 4x4 patches -> pixel shuffle 0.5 -> 2x2 = 4 tokens per frame
_IMAGE_SIZE = 56
_TOKENS_PER_FRAME = 4


def tiny_config(dims: TextDims, tokenizer: Any) -> Any:
    """InternViT-style tower + Qwen2 text tower; each frame becomes 4 ``<IMG_CONTEXT>`` tokens."""
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

    return InternVLConfig(
        vision_config=InternVLVisionConfig(**TINY_TOWER, image_size=_IMAGE_SIZE, patch_size=QWEN_PATCH_SIZE),
        text_config=Qwen2Config(**dims.text_kwargs(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=_TOKENS_PER_FRAME,
        downsample_ratio=0.5,
    )


def tiny_processor(tokenizer: Any) -> Any:
    """Real InternVL processor at the tiny frame size."""
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    size = {"height": _IMAGE_SIZE, "width": _IMAGE_SIZE}
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=False),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=size),
        image_seq_length=_TOKENS_PER_FRAME,
        chat_template=tokenizer.chat_template,
    )


@register_adapter
class InternVLAdapter(VideoLLMAdapter):
    architectures = ("InternVLForConditionalGeneration",)
    family = "internvl"
    unit_closing_tokens = ("</img>",)
    vision_layers = "encoder.layer"
    vision_attn = "attention"
    tiny = TinySpec(
        config=tiny_config,
        processor=tiny_processor,
        tokenizer=INTERNVL_TOKENS,
        # 2x2 tokens per frame; the "FrameN: <img>" labels are video_text, not frame tokens
        layout=LayoutFacts(tokens_per_unit=4, video_text=True),
    )
    support = SupportRow(
        name="InternVL",
        frames=(
            "one grid per input frame (the `<IMG_CONTEXT>` run); the processor's `FrameN: <img>`/`</img>` text "
            "between frames is `video_text` (`layout.frames[t].text`)"
        ),
        tokens_per_unit="`h * w` (`image_seq_length`)",
        notes=(
            "frames as images; `FrameN: <img>` labels between frames are `video_text`; placeholder `<video>` "
            "differs from the feature token (`placeholder_token_id`)"
        ),
    )

    def video_token_id(self, config: Any) -> int:
        return int(config.image_token_id)

    def placeholder_token_id(self, processor: Any, config: Any) -> int:
        tokenizer = getattr(processor, "tokenizer", processor)
        return int(tokenizer.convert_tokens_to_ids(processor.video_token))

    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        return square_grids(n_tokens, n_tokens // int(config.image_seq_length))
