"""videolens' attention as one opaque operator inside compiled decoder layers.

:meth:`~videolens.core.hooked.HookedVideoLLM.compile_blocks` runs each decoder layer through
``torch.compile``. The attention itself (:func:`~videolens.core.attention.videolens_attention`)
chooses kernels, slices and cached prefixes from the masks and shapes of each call: Python
the compiler should neither trace nor guard on. Registered as the custom operator
``videolens::attention``, it sits in the layer's graph as one node, so a layer compiles to a
single graph (norms, projections, rotary embedding, MLP and residual adds fused around it)
instead of four pieces split at the attention call, each with its own launch overhead.

The operator takes only the tensors HF computes in the layer; what else the call needs
(the :class:`~videolens.core.attention.LayerCall`: masks, cached keys/values, where to store
new ones) is set by the hooked layer around the compiled call (:func:`layer_call`), outside
the graph, so nothing about it is baked into the compiled code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from jaxtyping import Float
from transformers import AttentionInterface

from videolens.core.attention import ATTN_IMPLEMENTATION, LayerCall, videolens_attention

_CALLS: list[LayerCall] = []


@contextmanager
def layer_call(call: LayerCall) -> Iterator[None]:
    """Make ``call`` the one the attention operator serves while a compiled layer runs."""
    _CALLS.append(call)
    try:
        yield
    finally:
        _CALLS.pop()


@torch.library.custom_op("videolens::attention", mutates_args=())
def attention_op(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float) -> torch.Tensor:
    """``videolens_attention`` for the current :func:`layer_call`; ``(batch, q_pos, head, d_head)``."""
    call = _CALLS[-1]
    z, _ = videolens_attention(None, query, key, value, call, scaling)
    if call.store is not None:
        # The compiled graph owns its intermediate buffers and may reuse them after this
        # node: keys/values kept for later calls must not be one of its inputs.
        kept_k, kept_v = call.store.keys[call.layer], call.store.values[call.layer]
        call.store.keys[call.layer] = kept_k.clone() if kept_k is key else kept_k
        call.store.values[call.layer] = kept_v.clone() if kept_v is value else kept_v
    return z


@attention_op.register_fake
def _attention_shape(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float) -> torch.Tensor:
    batch, heads, q_len, _ = query.shape
    return query.new_empty(batch, q_len, heads, value.shape[-1])


def compilable_attention(
    module: torch.nn.Module,
    query: Float[torch.Tensor, "batch head q_pos d_head"],
    key: Float[torch.Tensor, "batch kv_head q_pos d_head"],
    value: Float[torch.Tensor, "batch kv_head q_pos d_head"],
    attention_mask: LayerCall,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[Float[torch.Tensor, "batch q_pos head d_head"], torch.Tensor | None]:
    """The registered attention while layers are compiled: the operator when traced, the function when eager.

    Only a layer compiled by ``compile_blocks`` sets a :func:`layer_call`; anything else
    traced (a user's own ``torch.compile`` of the whole model) gets the function itself.
    """
    if torch.compiler.is_compiling() and _CALLS:
        return attention_op(query, key, value, float(scaling)), None
    return videolens_attention(module, query, key, value, attention_mask, scaling, dropout, **kwargs)


def use_compiled_attention(enabled: bool = True) -> None:
    """Register :func:`compilable_attention` (``enabled``) or the plain function under ``"videolens"``."""
    AttentionInterface.register(ATTN_IMPLEMENTATION, compilable_attention if enabled else videolens_attention)
