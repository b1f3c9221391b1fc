"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``).

The vision tower patches ``temporal_patch_size`` (2) consecutive frames into one
temporal unit and merges ``spatial_merge_size`` x ``spatial_merge_size`` patches into a
token, so ``frame(t)`` is the model's t-th *pair* of input frames; the layout records
which input frames each unit covers. Positions are M-RoPE ids (temporal, height, width)
computed by HF's own code from ``video_grid_thw`` and ``second_per_grid_ts``; the frame
rate therefore matters and is passed to the processor as video metadata.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.video_utils import VideoMetadata

from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter


@register_adapter
class Qwen2_5_VLAdapter(VideoLLMAdapter):
    architectures = ("Qwen2_5_VLForConditionalGeneration",)
    family = "qwen2_5_vl"
    video_placeholder = "<|vision_start|><|video_pad|><|vision_end|>"
    uses_time = True
    default_fps = 2.0

    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        t, h, w = (int(x) for x in inputs["video_grid_thw"][item])
        merge = config.vision_config.spatial_merge_size
        span = config.vision_config.temporal_patch_size
        grids = [(h // merge, w // merge)] * t
        covered = [tuple(range(i * span, (i + 1) * span)) for i in range(t)]
        return VideoStructure(grids, covered)

    def processor_kwargs(self, fps: float | None, n_frames: int) -> dict[str, Any]:
        return {"video_metadata": [VideoMetadata(total_num_frames=n_frames, fps=fps)]}

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
