"""A decoder layer for rows that each recompute one position against a shared cached prefix.

Knockouts into the last token (the paper's question-and-options-to-last target, "Map the
Flow") recompute one position per condition: the sweep engine stacks the conditions as
rows of one token each and runs them through the layers against the clean run's keys and
values. The FLOPs of such a layer step are tiny; what it costs is the number of tensor
operations the layer code runs, about 250 through HF's decoder layer, its attention module
and the hooked attention function. :class:`OneTokenLayer` runs the same arithmetic in the
same order with the same HF weights and functions (the norms' arithmetic, the projections,
HF's own ``apply_rotary_pos_emb`` and q/k norms, the shared-prefix attention of
:mod:`videolens.core.attention`, HF's activation), but as one flat function of about 40
operations, so such a step costs about a third of what it did.

It serves a layer only when nothing needs the layer's own code: no hook point of the block
is hooked, no PyTorch or accelerate hook sits on its HF modules, ``use_attn_result`` is
off, no keys/values are stored, and the cached prefix is shared by the whole batch. Its
structure is checked once (the HF layer holds exactly the two norms, the attention with
q/k/v/o projections and optional q/k norms, and the gated MLP the adapter names; every
projection a plain ``nn.Linear``, not a quantized or adapter-wrapped one), each call checks
that those modules are still the ones in place (a LoRA wrapper swapped in later sends the
layer back to its own code), and its first call is checked against the block's own path on
the same inputs; a layer that differs (a family whose layer code does something its modules
do not show) keeps the block's path from then on, with a warning.
"""

from __future__ import annotations

import sys
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from jaxtyping import Float

from videolens.core.attention import _attend_shared_prefix
from videolens.core.blocks import rms_normalize

if TYPE_CHECKING:
    from videolens.adapters.protocol import VideoLLMAdapter
    from videolens.core.attention import LayerCall
    from videolens.core.blocks import HookedBlock

_QK_NORMS = ("q_norm", "k_norm")
# One rotary matrix cache per HF rotary function: the layers of a model share it.
_ROTARIES: dict[Callable, RotaryAtOnePosition] = {}


def _children(module: torch.nn.Module) -> set[str]:
    return {name for name, _ in module.named_children()}


class OneTokenLayer:
    """One decoder layer's arithmetic for ``(batch, 1, d_model)`` rows over a batch-1 cached prefix.

    Build it with :meth:`for_block`, which returns None for a layer whose structure it does
    not know. Calls go through :meth:`HookedBlock.forward`, which decides when it applies.
    """

    def __init__(self, block: HookedBlock, adapter: VideoLLMAdapter, rotary: RotaryAtOnePosition) -> None:
        layer, attn, mlp = block.hf_layer, block.attn.hf_module, block.mlp.hf_module
        self.block = block
        self.rotary = rotary
        self.ln1, self.ln2 = block.ln1, block.ln2
        self.q_norm, self.k_norm = (getattr(attn, name, None) for name in _QK_NORMS)
        self.act = mlp.act_fn
        projections = [getattr(attn, getattr(adapter, p)) for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
        mlp_projections = [getattr(mlp, getattr(adapter, p)) for p in ("mlp_gate_proj", "mlp_up_proj", "mlp_out_proj")]
        # The parameter dicts of the norms and projections, read per call: an attribute lookup
        # through ``nn.Module.__getattr__`` costs about a microsecond, and a step has sixteen.
        self._weights = tuple(
            m._parameters for m in (self.ln1.hf_module, self.ln2.hf_module, *projections, *mlp_projections)
        )
        self.n_heads, self.n_kv_heads, self.d_head = block.attn.n_heads, block.attn.n_kv_heads, block.attn.d_head
        self.scaling = block.attn.scaling
        # The modules it computes with, where they sat: a module swapped in later (a LoRA wrapper,
        # a quantized linear) sends the layer back to its own code.
        self._parts = [
            (parent, name, module) for parent in (layer, attn, mlp) for name, module in parent.named_children()
        ]
        self.verified = False

    def _unchanged(self) -> bool:
        return all(parent._modules.get(name) is module for parent, name, module in self._parts)

    @classmethod
    def for_block(cls, block: HookedBlock, adapter: VideoLLMAdapter) -> OneTokenLayer | None:
        """The one-token layer of ``block``, or None when its HF layer is not the pre-norm gated layer it computes."""
        layer = block.hf_layer
        attn, mlp = block.attn.hf_module, block.mlp.hf_module
        projection_names = [getattr(adapter, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
        mlp_names = [adapter.mlp_gate_proj, adapter.mlp_up_proj, adapter.mlp_out_proj]
        rotary = getattr(sys.modules.get(type(attn).__module__), "apply_rotary_pos_emb", None)
        known = (
            None not in mlp_names
            and _children(layer) == {adapter.ln1, adapter.attn, adapter.ln2, adapter.mlp}
            and set(projection_names) <= _children(attn) <= set(projection_names) | set(_QK_NORMS)
            and _children(mlp) == {*mlp_names, "act_fn"}
            # plain linear layers only: a quantized or adapter-wrapped one computes more than weight @ x + bias
            and all(
                type(getattr(parent, name)).forward is torch.nn.Linear.forward
                for parent, names in ((attn, projection_names), (mlp, mlp_names))
                for name in names
            )
            and callable(rotary)
            # accelerate's hooks (a device map, offloading) move inputs and load weights in the layer's own code
            and all(getattr(m, "_hf_hook", None) is None for m in layer.modules())
        )
        if not known:
            return None
        shared = _ROTARIES.get(rotary)
        if shared is None:
            shared = _ROTARIES[rotary] = RotaryAtOnePosition(rotary)
        return cls(block, adapter, shared)

    def applies(self, resid: torch.Tensor, call: LayerCall) -> bool:
        """Whether this call is one this layer computes exactly as the block would."""
        past = call.past
        return (
            resid.shape[1] == 1
            and call.store is None
            and past is not None
            and call.layer in past.keys
            and past.keys[call.layer].shape[0] == 1
            and self._unchanged()
        )

    def __call__(
        self,
        resid: Float[torch.Tensor, "batch 1 d_model"],
        call: LayerCall,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
    ) -> Float[torch.Tensor, "batch 1 d_model"]:
        """The layer's output, checked against the block's own path on the first call."""
        out = self._compute(resid, call, position_embeddings)
        if not self.verified:
            reference = self.block._compute(resid, call, position_embeddings)
            tolerance = max(1e-4, 16 * torch.finfo(reference.dtype).eps)
            error = (out.float() - reference.float()).norm() / reference.float().norm().clamp_min(1e-30)
            if not error <= tolerance:
                warnings.warn(
                    f"Layer {call.layer}: the one-token fast path differs from the layer's own code "
                    f"({type(self.block.hf_layer).__name__}, relative error {float(error):.2g}); "
                    "this layer keeps its own code.",
                    stacklevel=2,
                )
                self.block._one_token = None
                return reference
            self.verified = True
        return out

    def _compute(
        self,
        resid: Float[torch.Tensor, "batch 1 d_model"],
        call: LayerCall,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
    ) -> Float[torch.Tensor, "batch 1 d_model"]:
        rows = resid.shape[0]
        ln1, ln2, q, k, v, o, gate, up, down = self._weights  # (dicts: a weight assigned later is seen)
        x = resid.view(rows, -1)
        hidden = ln1["weight"] * rms_normalize(x, self.ln1.eps)
        query = F.linear(hidden, q["weight"], q["bias"]).view(rows, self.n_heads, self.d_head)
        key = F.linear(hidden, k["weight"], k["bias"]).view(rows, self.n_kv_heads, self.d_head)
        value = F.linear(hidden, v["weight"], v["bias"]).view(rows, self.n_kv_heads, 1, self.d_head)
        if self.q_norm is not None:
            query, key = self.q_norm(query), self.k_norm(key)
        query, key = self.rotary(query, key, position_embeddings)
        z = _attend_shared_prefix(
            query[:, :, None],
            call.past.keys[call.layer],
            call.past.values[call.layer],
            key[:, :, None],
            value,
            call.allowed,
            self.scaling,
            self.n_heads // self.n_kv_heads,
        )
        x = x + F.linear(z.reshape(rows, -1), o["weight"], o["bias"])
        hidden = ln2["weight"] * rms_normalize(x, self.ln2.eps)
        gated = self.act(F.linear(hidden, gate["weight"], gate["bias"])) * F.linear(hidden, up["weight"], up["bias"])
        return (x + F.linear(gated, down["weight"], down["bias"])).view(rows, 1, -1)


class RotaryAtOnePosition:
    """HF's rotary embedding of one position as a ``(d_head, d_head)`` matrix, shared by a model's layers.

    Every rotary embedding HF applies (RoPE, M-RoPE once its rotary module has combined
    the sections, partial rotary) is linear in the vector it rotates, so at one position
    it is a matrix: its rows are HF's own function applied to the unit vectors. Queries
    and keys of every row and head then rotate in one matrix product instead of about
    fifteen elementwise operations. The matrix is rebuilt only when the position
    embeddings given change (a sweep passes the same ones to every layer).
    """

    def __init__(self, apply_rotary: Callable) -> None:
        self.apply_rotary = apply_rotary
        self._for: tuple[weakref.ref, weakref.ref] | None = None  # the embeddings the matrix is for
        self._matrix: torch.Tensor | None = None

    def __call__(
        self,
        query: Float[torch.Tensor, "rows head d_head"],
        key: Float[torch.Tensor, "rows kv_head d_head"],
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[Float[torch.Tensor, "rows head d_head"], Float[torch.Tensor, "rows kv_head d_head"]]:
        cos, sin = position_embeddings
        if cos[..., 0].numel() != 1:  # embeddings per row (rows at different positions): HF's function itself
            rotated_q, rotated_k = self.apply_rotary(query[:, :, None], key[:, :, None], cos, sin)
            return rotated_q[:, :, 0], rotated_k[:, :, 0]
        if self._for is None or self._for[0]() is not cos or self._for[1]() is not sin:
            d = query.shape[-1]
            unit = torch.eye(d, dtype=query.dtype, device=query.device).view(1, d, 1, d)  # d "heads" at 1 position
            self._matrix = self.apply_rotary(unit, unit, cos, sin)[0].reshape(d, d)
            self._for = (weakref.ref(cos), weakref.ref(sin))
        heads = query.shape[1]
        rotated = torch.cat([query, key], dim=1) @ self._matrix
        return rotated[:, :heads], rotated[:, heads:]
