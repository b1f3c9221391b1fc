"""LLaVA-NeXT-Video (``LlavaNextVideoForConditionalGeneration``).

Frames are encoded one by one and pooled spatially (``spatial_pool_stride``); each frame
becomes a square grid of tokens, laid out frame after frame with nothing in between.

Tiny model: CLIP tower on 32x32 frames with patch 8 (4x4 patches, the CLS token dropped by
``vision_feature_select_strategy="default"``), average-pooled with stride 2 -> 4 tokens per
frame; Llama text tower; Vicuna chat template.
"""

from __future__ import annotations

import functools
from typing import Any

from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter, square_grids
from videolens.testing.sizes import LLAVA_IMAGE_SIZE, LLAVA_PATCH_SIZE, TextDims, clip_tower, tiny_grid_pinpoints
from videolens.testing.spec import LayoutFacts, SupportRow, TinySpec
from videolens.testing.tokenizer import VICUNA_TOKENS


def llava_kwargs(dims: TextDims, tokenizer: Any, vision: Any = None) -> dict[str, Any]:
    """Config arguments of the CLIP + Llama LLaVA families (LLaVA-NeXT-Video, Video-LLaVA).

    ``vision`` defaults to the tiny CLIP tower; features are taken at layer -2 with the
    ``"default"`` strategy (CLS dropped for images); media ids from the Vicuna tokens.
    """
    from transformers import LlamaConfig

    return {
        "vision_config": vision or clip_tower(),
        "text_config": LlamaConfig(**dims.text_kwargs(tokenizer)),
        "image_token_index": tokenizer.convert_tokens_to_ids("<image>"),
        "video_token_index": tokenizer.convert_tokens_to_ids("<video>"),
        "vision_feature_select_strategy": "default",
        "vision_feature_layer": -2,
    }


def tiny_config(dims: TextDims, tokenizer: Any) -> Any:
    """CLIP vision tower + Llama text tower, wired to the tiny tokenizer's ids."""
    from transformers import LlavaNextVideoConfig

    patches = (LLAVA_IMAGE_SIZE // LLAVA_PATCH_SIZE) ** 2
    return LlavaNextVideoConfig(
        **llava_kwargs(dims, tokenizer),
        image_grid_pinpoints=tiny_grid_pinpoints(),
        spatial_pool_mode="average",
        spatial_pool_stride=2,
        image_seq_length=patches,
        video_seq_length=patches // 4,
    )


def llava_next_video_processor(
    tokenizer: Any,
    image_size: int = LLAVA_IMAGE_SIZE,
    patch_size: int = LLAVA_PATCH_SIZE,
    grid_pinpoints: list[list[int]] | None = None,
) -> Any:
    """The real LLaVA-NeXT-Video processor, resizing/cropping every frame to ``image_size``.

    Shared by the tiny test model, the toy model and the 7B-shaped benchmark model.
    ``num_additional_image_tokens=1``: the CLS token the ``"default"`` strategy drops,
    which the processor must know about for images (videos ignore it).
    """
    from transformers import LlavaNextImageProcessor, LlavaNextVideoProcessor, LlavaNextVideoVideoProcessor

    common = {"size": {"shortest_edge": image_size}, "crop_size": {"height": image_size, "width": image_size}}
    pinpoints = grid_pinpoints or [[image_size, image_size]]
    return LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(**common),
        image_processor=LlavaNextImageProcessor(**common, image_grid_pinpoints=pinpoints),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


@register_adapter
class LlavaNextVideoAdapter(VideoLLMAdapter):
    architectures = ("LlavaNextVideoForConditionalGeneration",)
    family = "llava_next_video"
    #: The selected features go through the pooling resampler, then the projector.
    vision_features_input = "model.vision_resampler"
    tiny = TinySpec(
        config=tiny_config,
        processor=functools.partial(llava_next_video_processor, grid_pinpoints=tiny_grid_pinpoints()),
        tokenizer=VICUNA_TOKENS,
        layout=LayoutFacts(tokens_per_unit=4),  # 4x4 patches pooled 2x -> 2x2 per frame
    )
    support = SupportRow(
        name="LLaVA-NeXT-Video",
        frames="one square grid per input frame (pooled)",
        tokens_per_unit="`h * w` (pooled)",
    )

    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        n_frames = int(inputs["pixel_values_videos"][item].shape[0])
        return square_grids(n_tokens, n_frames)
