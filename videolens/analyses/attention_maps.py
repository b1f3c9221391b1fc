"""Attention maps ("Map the Flow", Fig. 6): how much the question attends each frame, per layer.

Patterns are reduced inside the hook (query rows of one group, key columns pooled per
frame), so no full ``(heads, N, N)`` pattern of any layer is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import pandas as pd
import torch

from videolens.analyses.common import iterate, prompt_for, sample_id
from videolens.core.hooked import HookedVideoLLM
from videolens.core.layout import resolve_group
from videolens.core.prompt import VideoPrompt
from videolens.errors import InputError
from videolens.interventions.knockout import EdgeKnockout


def frame_attention(
    model: HookedVideoLLM,
    prompt: VideoPrompt,
    *,
    queries: Any = "question",
    interventions: Sequence[EdgeKnockout] = (),
    layers: Iterable[int] | None = None,
    head_reduce: Literal["mean", "max"] = "mean",
) -> torch.Tensor:
    """``(layers, frames)``: attention from the query group to each frame, summed over the
    frame's keys, averaged over queries and reduced over heads."""
    if head_reduce not in ("mean", "max"):
        raise InputError(f"head_reduce={head_reduce!r} is not a reduction over heads; use 'mean' or 'max'.")
    layout = prompt.layout
    rows = resolve_group(layout, queries)
    frames = [layout.frame(t) for t in range(layout.n_frames)]
    chosen = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    out = torch.zeros(len(chosen), len(frames))

    def reduce(pattern: torch.Tensor, hook: Any) -> None:
        layer = int(hook.name.split(".")[1])
        sub = pattern[0][:, rows]  # (head, query, key)
        per_frame = torch.stack([sub[..., cols].sum(-1) for cols in frames], dim=-1).mean(1)  # (head, frame)
        out[chosen.index(layer)] = (per_frame.mean(0) if head_reduce == "mean" else per_frame.amax(0)).float().cpu()

    hooks = [(f"blocks.{layer}.attn.hook_pattern", reduce) for layer in chosen]
    with torch.no_grad():
        model.run_with_hooks(prompt, fwd_hooks=hooks, interventions=list(interventions))
    return out


def attention_maps(
    model: HookedVideoLLM,
    samples: Iterable[Any],
    *,
    knockout: EdgeKnockout | None = None,
    queries: Any = "question",
    layers: Iterable[int] | None = None,
    head_reduce: Literal["mean", "max"] = "mean",
    progress: bool = True,
    **prepare_kwargs: Any,
) -> pd.DataFrame:
    """Question-to-frame attention for the baseline and under a knockout (default: cross-frame, all layers).

    Returns:
        Rows ``sample_id, condition, layer, frame, attention``.
    """
    if head_reduce not in ("mean", "max"):
        raise InputError(f"head_reduce={head_reduce!r} is not a reduction over heads; use 'mean' or 'max'.")
    knockout = knockout or EdgeKnockout.cross_frame(range(model.cfg.n_layers))
    chosen = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    rows = []
    for index, sample in iterate(samples, "attention maps", progress):
        prompt = sample if isinstance(sample, VideoPrompt) else prompt_for(model, sample, **prepare_kwargs)
        for condition, ivs in (("baseline", []), ("knockout", [knockout])):
            grid = frame_attention(
                model, prompt, queries=queries, interventions=ivs, layers=chosen, head_reduce=head_reduce
            )
            for i, layer in enumerate(chosen):
                for t in range(grid.shape[1]):
                    rows.append(
                        {
                            "sample_id": sample_id(sample, index),
                            "condition": condition,
                            "layer": layer,
                            "frame": t,
                            "attention": float(grid[i, t]),
                        }
                    )
    return pd.DataFrame(rows)
