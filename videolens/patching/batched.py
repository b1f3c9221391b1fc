"""Exact activation patching, batched through the sweep engine.

Patching an activation at layer ``l`` and positions ``P`` leaves every layer below ``l``,
and every position before ``min(P)`` at every layer, exactly as in the corrupted run
(attention only looks back). So, as for knockouts (:mod:`videolens.engine.sweep`), the
corrupted run is done once, and each patch recomputes only layers ``>= l`` and positions
``>= min(P)``, attending to the corrupted run's cached keys and values of the prefix.
Patches at the same layer and hook point run as one batched forward (a hook writes each
row's clean values into its own row), so a whole ``(layer, position)`` grid costs a few
batched partial forwards instead of one full forward per cell.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float

from videolens.core.hooked import HookedVideoLLM
from videolens.core.prompt import VideoPrompt
from videolens.engine.sweep import SweepEngine
from videolens.errors import InputError

#: ``metric(logits) -> scalar tensor``; ``logits`` is ``(1, 1, d_vocab)``: the last position only.
Metric = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Patch:
    """Write ``value`` into one activation of the corrupted run.

    Attributes:
        layer: the layer of the hook point (``blocks.{layer}.…``).
        hook: the hook name within the block, e.g. ``"hook_resid_pre"`` or ``"attn.hook_z"``.
        positions: the sequence positions patched (query rows for a pattern).
        value: what those positions take, as the hook point holds them at those positions
            (``(len(positions), ...)``; for ``attn.hook_pattern`` ``(heads, len(positions), k_pos)``).
        heads: for per-head hook points, the heads patched (None: the value covers all heads).
    """

    layer: int
    hook: str
    positions: tuple[int, ...]
    value: torch.Tensor
    heads: tuple[int, ...] | None = None


class PatchRunner:
    """Last-position logits of a corrupted prompt under many patches, reusing its run.

    Args:
        model: the hooked model.
        corrupted: the prompt whose run is patched.
        max_batch: the most patches run together in one forward.
        max_tokens: the most recomputed positions (patches x positions) in one forward.
    """

    def __init__(self, model: HookedVideoLLM, corrupted: VideoPrompt, max_batch: int = 32, max_tokens: int = 16384):
        self.model, self.max_batch, self.max_tokens = model, max_batch, max_tokens
        self.engine = SweepEngine(model, corrupted)

    @property
    def corrupted_last_logits(self) -> Float[torch.Tensor, " d_vocab"]:
        return self.engine.clean_last_logits

    @torch.no_grad()
    def last_logits(self, patches: Sequence[Patch]) -> Float[torch.Tensor, "patch d_vocab"]:
        """Logits at the last position of the corrupted prompt under each patch."""
        out = torch.empty(len(patches), self.model.cfg.d_vocab, dtype=self.corrupted_last_logits.dtype)
        groups: dict[tuple[int, str], list[int]] = defaultdict(list)
        for i, patch in enumerate(patches):
            groups[(patch.layer, patch.hook)].append(i)
        with self.model.driving():
            for (layer, hook), members in groups.items():
                members.sort(key=lambda i: min(patches[i].positions))
                for chunk in self._chunks(members, patches):
                    logits = self._run(layer, hook, [patches[i] for i in chunk])
                    out[chunk] = logits.to(out.device, out.dtype)
        return out

    def _chunks(self, members: list[int], patches: Sequence[Patch]) -> list[list[int]]:
        chunks, current, q0 = [], [], None
        n = self.engine.seq_len
        for i in members:
            start = min(patches[i].positions) if q0 is None else min(q0, min(patches[i].positions))
            if current and (len(current) >= self.max_batch or (len(current) + 1) * (n - start) > self.max_tokens):
                chunks.append(current)
                current, start = [], min(patches[i].positions)
            current.append(i)
            q0 = start
        if current:
            chunks.append(current)
        return chunks

    def _run(self, layer: int, hook: str, chunk: list[Patch]) -> torch.Tensor:
        q0 = min(min(p.positions) for p in chunk)
        resid = self.engine.resid_pre[layer][:, q0:].expand(len(chunk), -1, -1).contiguous()
        name = f"blocks.{layer}.{hook}"
        with self.model.hooks(fwd_hooks=[(name, _writer(hook, chunk, q0))]):
            return self.engine.continue_from(layer, q0, resid)


def _writer(hook: str, chunk: list[Patch], q0: int) -> Callable:
    """A hook function writing each patch's value into its own batch row."""
    pattern = hook.endswith("hook_pattern") or hook.endswith("hook_attn_scores")

    def write(x: torch.Tensor, hook) -> torch.Tensor:
        x = x.clone()
        for row, patch in enumerate(chunk):
            sub = x[row]  # a view of this patch's row
            rows = torch.as_tensor(patch.positions, device=x.device) - q0
            value = patch.value.to(x.device, x.dtype)
            if pattern:  # (head, q_pos, k_pos): the patched query rows
                heads = range(sub.shape[0]) if patch.heads is None else patch.heads
                for j, head in enumerate(heads):
                    sub[head, rows] = value[j]
            elif patch.heads is not None:  # (pos, head, d)
                sub[rows[:, None], torch.as_tensor(patch.heads, device=x.device)[None, :]] = value
            else:  # (pos, d)
                sub[rows] = value
        return x

    return write


def check_same_layout(clean: VideoPrompt, corrupted: VideoPrompt) -> None:
    """Patching needs the two prompts to line up position by position; name the groups that do not."""
    if not isinstance(clean, VideoPrompt) or not isinstance(corrupted, VideoPrompt):
        raise InputError("Patching takes two VideoPrompts from model.prepare(...): the clean and the corrupted one.")
    a, b = clean.layout.leaves, corrupted.layout.leaves
    differ = sorted(
        name
        for name in set(a) | set(b)
        if name not in a or name not in b or not torch.equal(torch.as_tensor(a[name]), torch.as_tensor(b[name]))
    )
    if differ or clean.seq_len != corrupted.seq_len:
        resized = [n for n in differ if len(a.get(n, [])) != len(b.get(n, []))]
        shown = resized or differ  # the groups whose sizes differ are the cause; the rest only moved
        sizes = ", ".join(f"{n} ({len(a.get(n, []))} vs {len(b.get(n, []))} tokens)" for n in shown[:6])
        raise InputError(
            f"The clean and corrupted prompts do not line up (lengths {clean.seq_len} vs {corrupted.seq_len}); "
            f"groups that differ: {sizes or 'none'}. Use the same question, options and frame count, changing "
            "only what you want to patch (e.g. the video, or an option's text with the same token count)."
        )
