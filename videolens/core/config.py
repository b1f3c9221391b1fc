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
    d_mlp: int
    act_fn: str
    n_ctx: int
    model_name: str
    eps: float
    # TransformerLens' own names and switches, with their true values for these decoders:
    # pre-norm RMSNorm with the weights folded into the next weights' views, rotary
    # positions, gated MLPs, grouped-query attention, no parallel attention/MLP.
    normalization_type: str = "RMSPre"
    positional_embedding_type: str = "rotary"
    attn_only: bool = False
    gated_mlp: bool = True
    final_rms: bool = True
    parallel_attn_mlp: bool = False
    original_architecture: str = ""
    default_prepend_bos: bool = True
    tokenizer_prepends_bos: bool = True
    use_attn_result: bool = False
    use_split_qkv_input: bool = False
    use_attn_in: bool = False
    use_hook_mlp_in: bool = False
    n_devices: int = 1

    @property
    def n_key_value_heads(self) -> int:
        """TransformerLens' name for ``n_kv_heads``."""
        return self.n_kv_heads

    @property
    def d_vocab_out(self) -> int:
        return self.d_vocab
