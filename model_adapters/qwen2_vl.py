"""Qwen2-VL (``Qwen2VLForConditionalGeneration``).

Laid out like Qwen2.5-VL (whose adapter this one subclasses): ``temporal_patch_size`` (2)
consecutive frames form one temporal unit and ``spatial_merge_size`` x
``spatial_merge_size`` patches merge into one token, so ``frame(t)`` is the model's t-th
*pair* of input frames. The language model is at ``model.language_model`` and its rotary
module takes M-RoPE ids (temporal, height, width), as in Qwen2.5-VL.

The difference is time: Qwen2-VL has no ``second_per_grid_ts``. HF computes the temporal
position of unit ``t`` as ``t`` itself (no frame-rate scaling), so the frame rate never
reaches the model. The processor is called without video metadata and no fps is assumed;
an fps given to ``prepare`` still sets the layout's timestamps.

Tiny model: the sizes, tokenizer and template of Qwen2.5-VL's (16 ``<|video_pad|>`` tokens
for 8 frames). Its vision config names the tower width ``embed_dim`` (``hidden_size`` is the
merger's output, i.e. the text width) and has no window attention or ``tokens_per_second``.
"""

from __future__ import annotations

import functools
from typing import Any

from model_adapters.qwen2_5_vl import (
    Qwen2_5_VLAdapter,
    mrope_section,
    qwen_config,
    qwen_processor,
    qwen_text,
    qwen_vision,
)
from videolens.adapters import register_adapter
from videolens.testing.sizes import VISION_HIDDEN, TextDims
from videolens.testing.spec import LayoutFacts, SupportRow, TinySpec
from videolens.testing.tokenizer import QWEN_TOKENS


def tiny_config(dims: TextDims, tokenizer: Any) -> Any:
    """Qwen2-VL vision tower (full attention, 2x2 merger) + Qwen2-VL text tower."""
    vision = qwen_vision(embed_dim=VISION_HIDDEN, hidden_size=dims.hidden_size, mlp_ratio=2)
    sections = mrope_section(dims.hidden_size // dims.num_heads)
    text = qwen_text("qwen2_vl_text", dims, tokenizer, rope_theta=1_000_000.0, mrope_section=sections)
    return qwen_config("Qwen2VLConfig", text, vision, tokenizer)


@register_adapter
class Qwen2VLAdapter(Qwen2_5_VLAdapter):
    architectures = ("Qwen2VLForConditionalGeneration",)
    family = "qwen2_vl"
    uses_time = False
    tiny = TinySpec(
        config=tiny_config,
        processor=functools.partial(qwen_processor, processor_class="Qwen2VLProcessor"),
        tokenizer=QWEN_TOKENS,
        layout=LayoutFacts(tokens_per_unit=4, frames_per_unit=2),  # 2x2 tokens per pair of frames
    )
    support = SupportRow(
        name="Qwen2-VL",
        frames="as Qwen2.5-VL (pairs of input frames, M-RoPE from HF); temporal positions ignore the frame rate",
        tokens_per_unit="`h * w` per pair of frames",
        notes="M-RoPE; temporal position = unit index (fps unused)",
    )

    def processor_kwargs(self, fps: float | None, n_frames: int, timestamps: Any = None) -> dict[str, Any]:
        """Nothing: HF's Qwen2-VL gives temporal unit ``t`` the temporal position ``t``; no input carries time."""
        return {}
