"""Memory-bounded attention readouts: attention pooled over groups, chunk by chunk.

Full attention patterns of a 7B model over thousands of video tokens do not fit in memory
for all layers (``layers x heads x N^2``: 64 frames of LLaVA-NeXT-Video are ~9,300 tokens,
~180 GB in bf16). :func:`pooled_attention` never builds them: each layer's queries and
keys are read from the hooks, the pattern is recomputed ``chunk`` query rows at a time, and
only the pooled mass (query group x key group, per head) is kept, plus full rows for the
positions asked for. The forward itself keeps the fused attention path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from videolens.core.hooked import HookedVideoLLM
from videolens.core.layout import TokenLayout, resolve_group
from videolens.core.prompt import VideoPrompt
from videolens.errors import InputError
from videolens.interventions.knockout import check_layers


@dataclass
class PooledAttention:
    """Attention mass from each query group to each key group.

    Attributes:
        pooled: ``(layer, head, q_group, k_group)``: for each query group, the mean over its
            positions of the attention summed over the key group's positions.
        groups: the group names, in axis order.
        layers: the layers read.
        rows: ``(layer, head, len(row_positions), k_pos)`` full pattern rows, or None.
        row_positions: the query positions of ``rows``.
    """

    pooled: Float[torch.Tensor, "layer head q_group k_group"]
    groups: list[str]
    layers: list[int]
    rows: Float[torch.Tensor, "layer head row k_pos"] | None = None
    row_positions: list[int] | None = None

    def to_frame(self) -> Any:
        """A tidy DataFrame: layer, head, query group, key group, attention."""
        import pandas as pd

        p = self.pooled
        idx = torch.cartesian_prod(*(torch.arange(s) for s in p.shape))
        return pd.DataFrame(
            {
                "layer": [self.layers[i] for i in idx[:, 0].tolist()],
                "head": idx[:, 1].numpy(),
                "query_group": [self.groups[i] for i in idx[:, 2].tolist()],
                "key_group": [self.groups[i] for i in idx[:, 3].tolist()],
                "attention": p.flatten().numpy(),
            }
        )


def frame_groups(layout: TokenLayout, extra: Sequence[str] = ("question", "last")) -> dict[str, torch.Tensor]:
    """One group per frame plus the named text groups (the usual frame x frame readout)."""
    groups = {f"frame({t})": layout.frame(t) for t in range(layout.n_frames)}
    groups.update({name: layout[name] for name in extra})
    return groups


@torch.no_grad()
def pooled_attention(
    model: HookedVideoLLM,
    prompt: VideoPrompt,
    groups: Mapping[str, Any] | None = None,
    *,
    layers: Iterable[int] | None = None,
    rows: Any = None,
    chunk: int = 256,
    device: str | torch.device = "cpu",
) -> PooledAttention:
    """Group-pooled attention of every head in ``layers``, without materialising patterns.

    Args:
        groups: name -> group (layout name, positions, or callable); default one group per
            frame plus ``question`` and ``last``.
        layers: layers to read (default all).
        rows: a group whose full pattern rows to keep (e.g. ``"last"``), or None.
        chunk: query rows per recomputation step (memory ~ ``chunk x heads x N``).
        device: where results are kept.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"chunk={chunk!r} query rows per step: use a whole number of at least 1 (default 256).")
    layout = model.batch(prompt).layouts[0]
    if model.batch(prompt).size != 1:
        raise InputError("pooled_attention reads one prompt at a time; call it once per prompt.")
    named = frame_groups(layout) if groups is None else {k: resolve_group(layout, v) for k, v in groups.items()}
    names = list(named)
    n = layout.seq_len
    chosen = list(range(model.cfg.n_layers)) if layers is None else list(check_layers(layers, model.cfg.n_layers))
    dev = model.cfg.device
    member = torch.zeros(n, len(names), device=dev)
    for j, name in enumerate(names):
        member[named[name].to(dev), j] = 1.0
    q_avg = (member / member.sum(0).clamp_min(1)).T  # (group, pos)
    row_pos = None if rows is None else resolve_group(layout, rows).tolist()
    pooled = torch.zeros(len(chosen), model.cfg.n_heads, len(names), len(names))
    kept = None if row_pos is None else torch.zeros(len(chosen), model.cfg.n_heads, len(row_pos), n)
    state: dict[str, torch.Tensor] = {}

    def grab_q(q: torch.Tensor, hook: Any) -> None:
        state["q"] = q

    def reduce(k: torch.Tensor, hook: Any) -> None:
        layer = int(hook.name.split(".")[1])
        i = chosen.index(layer)
        q = state.pop("q")[0].transpose(0, 1)  # (head, pos, d)
        keys = k[0].transpose(0, 1)  # (kv_head, pos, d)
        keys = keys.repeat_interleave(q.shape[0] // keys.shape[0], dim=0)
        scale = model.blocks[layer].attn.scaling
        acc = torch.zeros(q.shape[0], len(names), len(names), device=dev)
        for r0 in range(0, n, chunk):
            r1 = min(n, r0 + chunk)
            scores = torch.matmul(q[:, r0:r1], keys.transpose(1, 2)).float() * scale  # (head, c, pos)
            future = torch.arange(n, device=dev)[None, :] > torch.arange(r0, r1, device=dev)[:, None]
            pattern = scores.masked_fill(future, float("-inf")).softmax(-1)
            acc += torch.einsum("gc,hcn,nk->hgk", q_avg[:, r0:r1], pattern, member)
            if row_pos is not None:
                for j, pos in enumerate(row_pos):
                    if r0 <= pos < r1:
                        kept[i, :, j] = pattern[:, pos - r0].to(kept.device)
        pooled[i] = acc.cpu()

    hooks = [(f"blocks.{layer}.attn.hook_rot_q", grab_q) for layer in chosen]
    hooks += [(f"blocks.{layer}.attn.hook_rot_k", reduce) for layer in chosen]
    model.run_with_hooks(prompt, fwd_hooks=hooks, stop_at_layer=max(chosen) + 1)
    return PooledAttention(pooled.to(device), names, chosen, None if kept is None else kept.to(device), row_pos)
