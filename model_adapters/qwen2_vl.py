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
"""

from __future__ import annotations

from typing import Any

from model_adapters.qwen2_5_vl import Qwen2_5_VLAdapter
from videolens.adapters import register_adapter


@register_adapter
class Qwen2VLAdapter(Qwen2_5_VLAdapter):
    architectures = ("Qwen2VLForConditionalGeneration",)
    family = "qwen2_vl"
    uses_time = False

    def processor_kwargs(self, fps: float | None, n_frames: int) -> dict[str, Any]:
        return {}
