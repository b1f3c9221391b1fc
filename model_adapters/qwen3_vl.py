"""Qwen3-VL (``Qwen3VLForConditionalGeneration``).

Laid out like Qwen2.5-VL (whose adapter this one subclasses): ``temporal_patch_size`` (2)
consecutive frames form one temporal unit and ``spatial_merge_size`` x
``spatial_merge_size`` patches merge into one token, so ``frame(t)`` is the model's t-th
*pair* of input frames. Two differences:

- Time is text. The processor expands the prompt's one ``<|video_pad|>`` into, per
  temporal unit, ``<{t:.1f} seconds><|vision_start|><|video_pad|>...<|vision_end|>``
  (inside the template's own ``<|vision_start|>``/``<|vision_end|>``). The timestamp and
  the start/end tokens land in ``video_text`` (``layout.frames[t].text``: the text before
  each unit). The M-RoPE temporal id of each unit is plain (every unit is its own
  ``t = 1`` grid); HF's ``get_rope_index`` computes it. The rotary module interleaves the
  (t, h, w) sections; HF's own module is called, with the three id rows.
- DeepStack. The vision tower also returns features of a few of its intermediate layers;
  the language model adds ``deepstack_visual_embeds[i]`` to the hidden states at the
  visual positions (``visual_pos_masks``) right after decoder layer ``i``. videolens runs
  the layer loop, so :meth:`Qwen3VLAdapter.after_layer` does the same: after
  ``blocks.{i}.hook_resid_post`` and before ``blocks.{i+1}.hook_resid_pre``. The features
  come from ``LMInputs.extra`` (captured with the rest of the language model's inputs);
  ``hook_video_embeds`` edits do not reach them.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.video_utils import VideoMetadata

from model_adapters.qwen2_5_vl import Qwen2_5_VLAdapter
from videolens.adapters import register_adapter


@register_adapter
class Qwen3VLAdapter(Qwen2_5_VLAdapter):
    architectures = ("Qwen3VLForConditionalGeneration",)
    family = "qwen3_vl"

    def processor_kwargs(self, fps: float | None, n_frames: int) -> dict[str, Any]:
        # The frames are already sampled: keep them all; the metadata gives the timestamps.
        metadata = VideoMetadata(total_num_frames=n_frames, fps=fps, frames_indices=list(range(n_frames)))
        return {"video_metadata": [metadata], "do_sample_frames": False}

    def after_layer(
        self, layer: int, resid: torch.Tensor, extra: dict[str, Any] | None, positions: slice | None = None
    ) -> torch.Tensor:
        """DeepStack: add layer ``layer``'s visual features at the visual positions (as HF does)."""
        embeds = (extra or {}).get("deepstack_visual_embeds")
        mask = (extra or {}).get("visual_pos_masks")
        if embeds is None or mask is None or layer >= len(embeds):
            return resid
        mask = mask.to(resid.device)
        if positions is None:
            positions = slice(0, mask.shape[1])
        visual = mask[:, positions]
        if not visual.any():
            return resid
        if visual.shape[1] != resid.shape[1]:
            raise ValueError(
                f"positions {positions} cover {visual.shape[1]} prompt positions; resid has {resid.shape[1]}."
            )
        full = resid.new_zeros(*mask.shape, resid.shape[-1])
        full[mask] = embeds[layer].to(resid.device, resid.dtype)
        add, visual = full[:, positions], visual[..., None]
        if add.shape[0] != resid.shape[0]:  # one prompt, several conditions (sweeps)
            add, visual = add.expand(resid.shape[0], -1, -1), visual.expand(resid.shape[0], -1, -1)
        return torch.where(visual, resid + add, resid)
