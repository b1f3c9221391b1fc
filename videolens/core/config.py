"""The wrapped model's dimensions and identity, under TransformerLens' names."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class VideoLLMConfig:
    """Dimensions and identity of the wrapped model (TransformerLens-style names)."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_vocab: int
    family: str
    architecture: str
    dtype: torch.dtype
    device: torch.device
    video_token_id: int
