"""The reference method of "Map the Flow", for checking videolens against it.

One full forward of the unmodified HF model with eager attention per condition, with a
dense additive float mask ``(1, heads, N, N)`` (0 where allowed, the dtype's minimum
where blocked or in the future) substituted for the attention mask in exactly the chosen
layers. videolens' knockouts must give the same logits. The substitution uses forward
pre-hooks (removed in ``finally``), not a patched ``forward``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from jaxtyping import Bool, Float

from videolens.core.hooked import HookedVideoLLM
from videolens.core.layout import TokenLayout
from videolens.core.prompt import VideoPrompt
from videolens.errors import InputError, InterventionError
from videolens.interventions.knockout import EdgeKnockout

Edges = Sequence[tuple[torch.Tensor, torch.Tensor]]


def knockout_edges(knockout: EdgeKnockout, layout: TokenLayout) -> dict[int, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The ``(src keys, dst queries)`` edge lists per layer of a group-based knockout."""
    out: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for part in knockout.parts:
        if part.pointwise:
            raise InterventionError("knockout_edges handles group knockouts, not from_mask ones.")
        pairs = part.edges(layout)
        for layer in part.layers:
            out.setdefault(layer, []).extend(pairs)
    return out


def dense_allowed(seq_len: int, edges: Edges, device: torch.device | str = "cpu") -> Bool[torch.Tensor, "q_pos k_pos"]:
    """Causal mask with the listed ``(src keys, dst queries)`` edges removed."""
    allowed = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
    for src, dst in edges:
        allowed[dst.long().to(device)[:, None], src.long().to(device)[None, :]] = False
    return allowed


def additive_mask(allowed: torch.Tensor, n_heads: int, dtype: torch.dtype) -> Float[torch.Tensor, "1 head q_pos k_pos"]:
    """The reference's float mask: 0 where allowed, ``finfo.min`` elsewhere, repeated per head."""
    mask = (~allowed).to(dtype) * torch.finfo(dtype).min
    return mask[None, None].repeat(1, n_heads, 1, 1)


@torch.no_grad()
def reference_logits(
    model: HookedVideoLLM, prompt: VideoPrompt, edges_by_layer: Mapping[int, Edges]
) -> Float[torch.Tensor, "1 pos d_vocab"]:
    """Logits of the HF model itself with dense masks swapped into the given layers.

    The HF model must use eager attention (``attn_implementation="eager"``), as in the
    reference implementation.
    """
    hf = model.hf_model
    impl = model.adapter.text_config(hf.config)._attn_implementation
    if impl != "eager":
        raise InputError(f"The reference method needs eager attention; this model uses {impl!r}.")
    n, dtype = prompt.seq_len, next(hf.parameters()).dtype
    handles = []
    try:
        for layer, edges in edges_by_layer.items():
            mask = additive_mask(dense_allowed(n, edges, model.cfg.device), model.cfg.n_heads, dtype)
            attn = model.blocks[layer].attn.hf_module

            def swap(_module, args, kwargs, mask=mask):
                kwargs["attention_mask"] = mask
                return args, kwargs

            handles.append(attn.register_forward_pre_hook(swap, with_kwargs=True))
        return hf(**model.hf_inputs(prompt.inputs)).logits
    finally:
        for handle in handles:
            handle.remove()
