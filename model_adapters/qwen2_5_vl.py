"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``), and the tiny-model pieces the Qwen families share.

The vision tower patches ``temporal_patch_size`` (2) consecutive frames into one
temporal unit and merges ``spatial_merge_size`` x ``spatial_merge_size`` patches into a
token, so ``frame(t)`` is the model's t-th *pair* of input frames; the layout records
which input frames each unit covers. Positions are M-RoPE ids (temporal, height, width)
computed by HF's own code from ``video_grid_thw`` and ``second_per_grid_ts``; the frame
rate therefore matters and is passed to the processor as video metadata (without it the
processor assumes 24 fps, see docs/transformers-quirks.md).

Tiny model: frames pinned to 56x56 pixels (min = max), patch 14 -> 4x4 patches, pairs of
frames and a 2x2 merge -> 4 tokens per temporal unit: ``video_grid_thw = (4, 4, 4)`` and 16
``<|video_pad|>`` tokens for 8 frames. Qwen2-VL and Qwen3-VL build on the helpers here.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter
from videolens.testing.sizes import (
    QWEN_FRAME_SIZE,
    QWEN_MERGE_SIZE,
    QWEN_PATCH_SIZE,
    QWEN_TEMPORAL_PATCH,
    VISION_HEADS,
    VISION_HIDDEN,
    VISION_LAYERS,
    TextDims,
    token_ids,
)
from videolens.testing.spec import LayoutFacts, SupportRow, TinySpec
from videolens.testing.tokenizer import QWEN_TOKENS

#: Patching of the Qwen processors (their argument names).
PROCESSOR_PATCHING = {
    "patch_size": QWEN_PATCH_SIZE,
    "merge_size": QWEN_MERGE_SIZE,
    "temporal_patch_size": QWEN_TEMPORAL_PATCH,
}


def qwen_vision(**sizes: Any) -> dict[str, Any]:
    """A Qwen vision-tower config dict: the tiny depth, heads and patching, plus ``sizes``."""
    return {
        "depth": VISION_LAYERS,
        "num_heads": VISION_HEADS,
        "patch_size": QWEN_PATCH_SIZE,
        "spatial_merge_size": QWEN_MERGE_SIZE,
        "temporal_patch_size": QWEN_TEMPORAL_PATCH,
        **sizes,
    }


def qwen_text(model_type: str, dims: TextDims, tokenizer: Any, **rope: Any) -> dict[str, Any]:
    """A Qwen text-tower config dict; ``rope`` are its ``rope_parameters`` (``mrope_section``, ...)."""
    return {
        "model_type": model_type,
        **dims.common_kwargs(),
        **token_ids(tokenizer),
        "rope_parameters": {"rope_type": "default", **rope},
    }


def qwen_config(config_class: str, text: dict[str, Any], vision: dict[str, Any], tokenizer: Any) -> Any:
    """transformers' ``config_class`` around the towers, with the tokenizer's media and vision ids."""
    import transformers

    ids = {
        f"{name}_token_id": tokenizer.convert_tokens_to_ids(f"<|{token}|>")
        for name, token in (
            ("image", "image_pad"),
            ("video", "video_pad"),
            ("vision_start", "vision_start"),
            ("vision_end", "vision_end"),
        )
    }
    return getattr(transformers, config_class)(text_config=text, vision_config=vision, **ids, tie_word_embeddings=False)


def mrope_section(head_dim: int) -> list[int]:
    """Split the rotary half-dimension into (temporal, height, width) parts.

    Mirrors the real 1/4, 3/8, 3/8 split ([16, 24, 24] for head_dim 128).
    """
    half = head_dim // 2
    temporal = max(1, half // 4)
    height = (half - temporal) // 2
    return [temporal, height, half - temporal - height]


def qwen_processor(tokenizer: Any, processor_class: str) -> Any:
    """transformers' ``processor_class`` (Qwen2-VL's or Qwen2.5-VL's), every frame pinned to 56x56.

    ``cap_pixels_per_frame=False`` silences the Qwen2-VL video processor's warning
    (irrelevant at 56x56).
    """
    import transformers
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    shared = {"size": QWEN_FRAME_SIZE, **PROCESSOR_PATCHING}
    return getattr(transformers, processor_class)(
        image_processor=Qwen2VLImageProcessor(**shared),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**shared, cap_pixels_per_frame=False),
        chat_template=tokenizer.chat_template,
    )


def tiny_config(dims: TextDims, tokenizer: Any) -> Any:
    """Qwen2.5-VL vision tower (window attention, 2x2 merger) + Qwen2.5-VL text tower."""
    vision = qwen_vision(
        hidden_size=VISION_HIDDEN,
        intermediate_size=2 * VISION_HIDDEN,
        tokens_per_second=2,
        window_size=112,
        out_hidden_size=dims.hidden_size,
        fullatt_block_indexes=[VISION_LAYERS - 1],
    )
    sections = mrope_section(dims.hidden_size // dims.num_heads)
    text = qwen_text("qwen2_5_vl_text", dims, tokenizer, rope_theta=1_000_000.0, mrope_section=sections)
    return qwen_config("Qwen2_5_VLConfig", text, vision, tokenizer)


@register_adapter
class Qwen2_5_VLAdapter(VideoLLMAdapter):
    architectures = ("Qwen2_5_VLForConditionalGeneration",)
    family = "qwen2_5_vl"
    #: The Qwen towers (Qwen2-VL and Qwen3-VL inherit these): blocks, then the patch merger as projector.
    vision_tower = "model.visual"
    vision_layers = "blocks"
    vision_attn = "attn"
    vision_features_input = "model.visual.merger"
    projector = "model.visual.merger"
    video_placeholder = "<|vision_start|><|video_pad|><|vision_end|>"
    uses_time = True
    default_fps = 2.0
    #: The processor's per-token modality ids (0 text, 1 image, 2 video), padded with the prompt.
    token_input_keys = (*VideoLLMAdapter.token_input_keys, "mm_token_type_ids")
    tiny = TinySpec(
        config=tiny_config,
        processor=functools.partial(qwen_processor, processor_class="Qwen2_5_VLProcessor"),
        tokenizer=QWEN_TOKENS,
        layout=LayoutFacts(tokens_per_unit=4, frames_per_unit=2),  # 2x2 tokens per pair of frames
    )
    support = SupportRow(
        name="Qwen2.5-VL",
        frames="one grid per *pair* of input frames (`temporal_patch_size=2`); M-RoPE positions from HF",
        tokens_per_unit="`h * w` per pair of frames",
        notes="M-RoPE; fps sets temporal positions (`uses_time`)",
    )

    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        t, h, w = (int(x) for x in inputs["video_grid_thw"][item])
        merge = config.vision_config.spatial_merge_size
        span = config.vision_config.temporal_patch_size
        grids = [(h // merge, w // merge)] * t
        covered = [tuple(range(i * span, (i + 1) * span)) for i in range(t)]
        return VideoStructure(grids, covered)

    def processor_kwargs(self, fps: float | None, n_frames: int, timestamps: Any = None) -> dict[str, Any]:
        """The frames' rate as video metadata: HF spaces the units' temporal M-RoPE ids by ``2 / fps`` seconds.

        With timestamps the rate is theirs (their mean spacing; M-RoPE spaces the units evenly,
        so a variable-rate clip gets its average), else ``fps``.
        """
        from transformers.video_utils import VideoMetadata

        span = float(timestamps[-1] - timestamps[0]) if timestamps is not None and len(timestamps) > 1 else 0.0
        rate = (len(timestamps) - 1) / span if span > 0 else fps
        return {"video_metadata": [VideoMetadata(total_num_frames=n_frames, fps=rate)]}

    @staticmethod
    def _three_rows(position_ids: torch.Tensor) -> torch.Tensor:
        if position_ids.ndim == 3 and position_ids.shape[0] == 4:  # text ids prepended (packing)
            return position_ids[1:]
        if position_ids.ndim == 2:
            return position_ids[None].expand(3, -1, -1)
        return position_ids

    def position_embeddings(self, lm: nn.Module, hidden: torch.Tensor, position_ids: torch.Tensor):
        return lm.rotary_emb(hidden, self._three_rows(position_ids))

    def default_position_ids(self, batch: int, start: int, length: int, device: torch.device) -> torch.Tensor:
        return torch.arange(start, start + length, device=device).view(1, 1, -1).expand(3, batch, -1)

    def next_position_ids(self, position_ids: torch.Tensor, n_new: int) -> torch.Tensor:
        rows = self._three_rows(position_ids)
        last = rows.amax(dim=0, keepdim=True)[..., -1:].expand(rows.shape[0], -1, -1)
        return last + torch.arange(1, n_new + 1, device=rows.device)
