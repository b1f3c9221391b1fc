"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``).

Each frame's features are pooled 2x (bilinear) to a square grid; after the last frame the
model appends ONE learned newline token for the whole video. The layout keeps it as the
``video_extra`` group: part of ``video``, in no frame.

Tiny model: SigLIP tower on 32x32 frames with patch 8 (4x4 patches), pooled 2x -> 4 tokens
per frame, plus the newline: 8 * 4 + 1 = 33 ``<video>`` tokens for 8 frames; Qwen2 text
tower; ChatML chat template.
"""

from __future__ import annotations

from typing import Any

from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter, square_grids
from videolens.testing.sizes import LLAVA_IMAGE_SIZE, LLAVA_PATCH_SIZE, TINY_TOWER, TextDims, tiny_grid_pinpoints
from videolens.testing.spec import LayoutFacts, SupportRow, TinySpec
from videolens.testing.tokenizer import CHATML_TOKENS


def tiny_config(dims: TextDims, tokenizer: Any) -> Any:
    """SigLIP vision tower + Qwen2 text tower, wired to the tiny tokenizer's ids."""
    from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

    vision = SiglipVisionConfig(
        **TINY_TOWER, image_size=LLAVA_IMAGE_SIZE, patch_size=LLAVA_PATCH_SIZE, vision_use_head=False
    )
    return LlavaOnevisionConfig(
        vision_config=vision,
        text_config=Qwen2Config(**dims.text_kwargs(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=tiny_grid_pinpoints(),
        vision_aspect_ratio="anyres_max_9",
    )


def tiny_processor(tokenizer: Any) -> Any:
    """Real LLaVA-OneVision processor resizing every frame to the tiny square size."""
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    size = {"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE}
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=tiny_grid_pinpoints()),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        num_image_tokens=(LLAVA_IMAGE_SIZE // LLAVA_PATCH_SIZE) ** 2,
        vision_feature_select_strategy="full",
        chat_template=tokenizer.chat_template,
        vision_aspect_ratio="anyres_max_9",
    )


@register_adapter
class LlavaOnevisionAdapter(VideoLLMAdapter):
    architectures = ("LlavaOnevisionForConditionalGeneration",)
    family = "llava_onevision"
    tiny = TinySpec(
        config=tiny_config,
        processor=tiny_processor,
        tokenizer=CHATML_TOKENS,
        layout=LayoutFacts(tokens_per_unit=4, extra_tokens=1),  # 2x2 per frame, one newline at the end
    )
    support = SupportRow(
        name="LLaVA-OneVision",
        frames="one grid per input frame, plus one newline token (`video_extra`)",
        tokens_per_unit="`h * w`",
        notes="one newline after the last frame (`trailing`)",
    )

    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        n_frames = int(inputs["pixel_values_videos"][item].shape[0])
        return square_grids(n_tokens, n_frames, trailing={"newline": 1})
