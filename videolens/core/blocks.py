"""The hooked tree over a Hugging Face decoder: blocks, norms, attention and MLP hook points.

The modules here hold hook points and references to the HF modules (weights are shared,
never copied). Each reads its HF module through a public property (``hf_module``) so the
engine and readouts never reach into private members.

Axis glossary: ``batch``, ``pos``, ``head``, ``kv_head``, ``d_model``, ``d_head``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

if TYPE_CHECKING:
    from videolens.adapters.protocol import VideoLLMAdapter
    from videolens.core.attention import LayerCall


class _HFRef(nn.Module):
    """A hooked module that refers to (but does not own) one HF module."""

    def __init__(self, hf_module: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_hf_module", hf_module)

    @property
    def hf_module(self) -> nn.Module:
        """The Hugging Face module this node wraps (its weights are the model's own)."""
        return self._hf_module


class NormHooks(_HFRef):
    """A norm of the model: callable (HF's own norm, then ``hook_normalized``)."""

    def __init__(self, hf_norm: nn.Module) -> None:
        super().__init__(hf_norm)
        self.hook_normalized = HookPoint()

    def forward(self, resid: Float[torch.Tensor, "... d_model"]) -> Float[torch.Tensor, "... d_model"]:
        return self.hook_normalized(self.hf_module(resid))


class MLPHooks(_HFRef):
    """Hook on the MLP's hidden activation (the input of its output projection)."""

    def __init__(self, hf_mlp: nn.Module) -> None:
        super().__init__(hf_mlp)
        self.hook_post = HookPoint()

    def forward(self, normed: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        return self.hf_module(normed)


class AttentionHooks(_HFRef):
    """Hook points of one attention layer plus TransformerLens-style weight views."""

    def __init__(
        self, hf_attn: nn.Module, adapter: VideoLLMAdapter, n_heads: int, n_kv_heads: int, d_head: int
    ) -> None:
        super().__init__(hf_attn)
        object.__setattr__(self, "_adapter", adapter)
        self.n_heads, self.n_kv_heads, self.d_head = n_heads, n_kv_heads, d_head
        self.hook_q = HookPoint()  # (batch, pos, head, d_head), after rotary
        self.hook_k = HookPoint()  # (batch, pos, kv_head, d_head), after rotary
        self.hook_v = HookPoint()  # (batch, pos, kv_head, d_head)
        self.hook_attn_scores = HookPoint()  # (batch, head, q_pos, k_pos), pre-softmax, masked
        self.hook_pattern = HookPoint()  # (batch, head, q_pos, k_pos)
        self.hook_z = HookPoint()  # (batch, pos, head, d_head)

    @property
    def scaling(self) -> float:
        """The factor HF multiplies q·k by (``1/sqrt(d_head)`` unless the family says otherwise)."""
        return float(getattr(self.hf_module, "scaling", self.d_head**-0.5))

    def _in_proj(self, name: str, heads: int) -> Float[torch.Tensor, "head d_model d_head"]:
        weight = getattr(self.hf_module, getattr(self._adapter, name)).weight
        return weight.view(heads, self.d_head, -1).transpose(1, 2)

    @property
    def W_Q(self) -> Float[torch.Tensor, "head d_model d_head"]:
        return self._in_proj("q_proj", self.n_heads)

    @property
    def W_K(self) -> Float[torch.Tensor, "kv_head d_model d_head"]:
        return self._in_proj("k_proj", self.n_kv_heads)

    @property
    def W_V(self) -> Float[torch.Tensor, "kv_head d_model d_head"]:
        return self._in_proj("v_proj", self.n_kv_heads)

    @property
    def W_O(self) -> Float[torch.Tensor, "head d_head d_model"]:
        weight = getattr(self.hf_module, self._adapter.o_proj).weight
        return weight.view(-1, self.n_heads, self.d_head).permute(1, 2, 0)


class HookedBlock(_HFRef):
    """One decoder layer: HF's own norms, attention and MLP, composed pre-norm, with hooks."""

    def __init__(
        self, hf_layer: nn.Module, adapter: VideoLLMAdapter, n_heads: int, n_kv_heads: int, d_head: int
    ) -> None:
        super().__init__(hf_layer)
        self.hook_resid_pre = HookPoint()
        self.ln1 = NormHooks(getattr(hf_layer, adapter.ln1))
        self.attn = AttentionHooks(getattr(hf_layer, adapter.attn), adapter, n_heads, n_kv_heads, d_head)
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.ln2 = NormHooks(getattr(hf_layer, adapter.ln2))
        self.mlp = MLPHooks(getattr(hf_layer, adapter.mlp))
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    @property
    def hf_layer(self) -> nn.Module:
        return self.hf_module

    def forward(
        self,
        resid: Float[torch.Tensor, "batch pos d_model"],
        call: LayerCall,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        resid = self.hook_resid_pre(resid)
        attn_out = self.attn.hf_module(
            hidden_states=self.ln1(resid), attention_mask=call, position_embeddings=position_embeddings, position_ids=None
        )[0]
        resid = self.hook_resid_mid(resid + self.hook_attn_out(attn_out))
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2(resid)))
        return self.hook_resid_post(resid + mlp_out)
