"""Video-LLaVA (``VideoLlavaForConditionalGeneration``).

Every frame goes through the CLIP video tower on its own and its *whole* last-but-one
hidden state is kept: the CLS token and then the ``(H/p) x (W/p)`` patch tokens, row-major,
with no pooling. A frame is therefore ``1 + h * w`` tokens, frame after frame, and nothing
after the last one. The layout keeps the CLS token in its frame (``frame(t)`` covers it,
so cross-frame knockouts block it) as the frame's prefix, while ``grid(t)`` /
``patch(t, h, w)`` / ``video_coords()`` cover only the patches.

Video-LLaVA applies ``vision_feature_select_strategy`` to images only: video frames keep
the CLS token (``get_video_features`` takes the whole hidden state), and the processor
counts ``num_additional_image_tokens`` (1) extra tokens per frame. The config's
``video_seq_length`` is informational. The model has two CLIP towers (``image_tower`` and
``video_tower``) of the same config.

Tiny model: CLIP towers on 32x32 frames with patch 8 -> 1 + 4x4 = 17 tokens per frame, 136
``<video>`` tokens for 8 frames (the real 224 px / patch-14 model: 1 + 256 = 257 per frame);
Llama text tower; the Vicuna tokens and template of LLaVA-NeXT-Video.
"""

from __future__ import annotations

from typing import Any

from model_adapters.llava_next_video import llava_kwargs
from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter
from videolens.errors import LayoutError
from videolens.testing.sizes import LLAVA_IMAGE_SIZE, LLAVA_PATCH_SIZE, TextDims
from videolens.testing.spec import LayoutFacts, SupportRow, TinySpec
from videolens.testing.tokenizer import VICUNA_TOKENS

_PATCHES = (LLAVA_IMAGE_SIZE // LLAVA_PATCH_SIZE) ** 2


def tiny_config(dims: TextDims, tokenizer: Any) -> Any:
    """CLIP video/image towers + Llama text tower; video frames keep their CLS token."""
    from transformers import VideoLlavaConfig

    return VideoLlavaConfig(
        **llava_kwargs(dims, tokenizer),
        image_seq_length=_PATCHES,
        video_seq_length=8 * (_PATCHES + 1),
    )


def tiny_processor(tokenizer: Any) -> Any:
    """Real Video-LLaVA processor resizing/cropping every frame to the tiny size."""
    from transformers import VideoLlavaImageProcessor, VideoLlavaProcessor, VideoLlavaVideoProcessor

    common = {
        "size": {"shortest_edge": LLAVA_IMAGE_SIZE},
        "crop_size": {"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE},
    }
    return VideoLlavaProcessor(
        image_processor=VideoLlavaImageProcessor(**common),
        video_processor=VideoLlavaVideoProcessor(**common),
        tokenizer=tokenizer,
        patch_size=LLAVA_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template,
    )


@register_adapter
class VideoLlavaAdapter(VideoLLMAdapter):
    architectures = ("VideoLlavaForConditionalGeneration",)
    family = "video_llava"
    #: The tower that encodes video frames (``image_tower`` encodes images).
    vision_tower = "model.video_tower"
    #: Tokens before each frame's patch grid: CLIP's CLS token.
    cls_tokens = 1
    tiny = TinySpec(
        config=tiny_config,
        processor=tiny_processor,
        tokenizer=VICUNA_TOKENS,
        layout=LayoutFacts(tokens_per_unit=17, frame_prefix=1),  # 1 CLS + 4x4 patches per frame
    )
    support = SupportRow(
        name="Video-LLaVA",
        frames=(
            "one grid per input frame (no pooling) led by the frame's CLS token: `frame(t)` includes the CLS, "
            "`grid(t)`/`patch` only the patches"
        ),
        tokens_per_unit="`1 + h * w`",
        notes="CLS first (`frame_prefix=1`), no pooling",
    )

    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        n_frames, _, height, width = (int(x) for x in inputs["pixel_values_videos"][item].shape)
        patch = int(config.vision_config.patch_size)
        h, w = height // patch, width // patch
        if n_frames * (self.cls_tokens + h * w) != n_tokens:
            raise LayoutError(
                f"{n_tokens} video tokens are not {n_frames} frames of {self.cls_tokens} CLS + {h}x{w} patch "
                "tokens; the processor and the adapter disagree about the frame layout."
            )
        return VideoStructure([(h, w)] * n_frames, [(t,) for t in range(n_frames)], frame_prefix=self.cls_tokens)
