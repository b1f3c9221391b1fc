"""The attention masks of one group of sweep conditions, built once and picked per layer.

A sweep over layers blocks the same few edge sets in many layers: in the paper's
four-target sweep ("Map the Flow") each pathway has one blocked-edge mask, shared by the
32 conditions of its layer sweep. :class:`MaskPalette` turns each distinct mask of a group
of conditions (same first query ``q0``) into the form the attention kernel takes, once:
row 0 is the plain causal mask, row ``i`` the causal mask with mask ``i``'s edges removed.
Each layer of a batched forward then takes one broadcast view (all rows of the batch use
the same mask) or one gather (rows differ), instead of building a fresh ``(batch, heads,
q_pos, k_pos)`` mask condition by condition.

On CUDA the palette holds additive biases in the model's dtype (0 allowed, ``-inf``
blocked) with 8-aligned rows, which keeps ``scaled_dot_product_attention`` on its
memory-efficient kernel; on the CPU it holds boolean masks, used as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float

from videolens.core.attention import causal_allowed

if TYPE_CHECKING:
    from videolens.engine.sweep import Condition, SweepEngine


class MaskPalette:
    """Distinct masks of a group of conditions sharing ``q0``, and which one each uses in each layer.

    Args:
        engine: the sweep engine (its sequence length, layer count, device and dtype).
        q0: the group's first recomputed position.
        members: the group's conditions, in the order their batch rows will have.
    """

    additive: bool | None = None  # additive biases (True), booleans (False), or None: biases on CUDA only

    def __init__(self, engine: SweepEngine, q0: int, members: Sequence[Condition]) -> None:
        n, n_layers = engine.seq_len, engine.model.cfg.n_layers
        ref = engine.resid_pre[0]
        device, dtype = ref.device, ref.dtype
        slot: dict[int, int] = {}
        masks: list[torch.Tensor] = []
        table = [[0] * len(members) for _ in range(n_layers)]
        for col, cond in enumerate(members):
            for layer, mask in cond.blocked.items():
                if id(mask) not in slot:
                    slot[id(mask)] = len(masks) + 1
                    masks.append(mask)
                table[layer][col] = slot[id(mask)]
        heads = max([1] + [m.shape[1] for m in masks])
        causal = causal_allowed(n - q0, n, device)
        allowed = torch.stack(
            [causal.expand(heads, -1, -1)] + [(causal & ~m[0, :, q0:]).expand(heads, -1, -1) for m in masks]
        )
        self.n = n
        self.table = table
        # One query per row (knockouts into the last token): the attention adds the bias in place.
        additive = (allowed.is_cuda or n - q0 == 1) if self.additive is None else self.additive
        self.full = _kernel_form(allowed, dtype) if additive else allowed.contiguous()
        # On the device before the group's kernels are queued, copied without waiting for them.
        host_table = torch.tensor(table, dtype=torch.long)
        if device.type == "cuda":
            host_table = host_table.pin_memory()
        self._device_table = host_table.to(device, non_blocking=True)

    def layer_mask(
        self, layer: int, start: int, stop: int
    ) -> Bool[torch.Tensor, "batch head_or_1 q_pos k_pos"] | Float[torch.Tensor, "batch head_or_1 q_pos k_pos"]:
        """The mask for batch rows ``start..stop-1`` of the members in ``layer`` (batch 1 when they agree)."""
        slots = self.table[layer][start:stop]
        if all(s == slots[0] for s in slots):
            return self.full[slots[0] : slots[0] + 1, ..., : self.n]
        return self.full.index_select(0, self._device_table[layer, start:stop])[..., : self.n]


def _kernel_form(
    allowed: Bool[torch.Tensor, "slot head q_pos k_pos"], dtype: torch.dtype
) -> Float[torch.Tensor, "slot head q_pos k_pos_padded"]:
    """Additive biases (0 allowed, ``-inf`` blocked) whose rows are padded to a multiple of 8.

    The padding columns are never read: callers slice ``[..., :n]``, which keeps the rows
    8-aligned in memory, as SDPA's memory-efficient kernel needs to run without a copy.
    """
    n = allowed.shape[-1]
    bias = torch.zeros(*allowed.shape[:-1], n + (-n) % 8, dtype=dtype, device=allowed.device)
    bias[..., :n].masked_fill_(~allowed, float("-inf"))
    return bias
