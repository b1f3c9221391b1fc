"""Attention maps ("Map the Flow", Fig. 6): how much the question attends each frame, and
each video token of each frame, per layer.

Patterns are reduced inside the hook (query rows of one group, key columns pooled per
frame or kept per video token), so no full ``(heads, N, N)`` pattern of any layer is kept.
:func:`video_token_attention` gives the paper's per-token maps (``(layer, frame, h, w)``,
drawn by :func:`videolens.viz.plot_attention_grid`); :func:`frame_attention` and
:func:`attention_maps` pool them per frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import einops
import pandas as pd
import torch
from jaxtyping import Float

from videolens.analyses.common import iterate, prompt_for, sample_id
from videolens.core.hooked import HookedVideoLLM
from videolens.core.layout import resolve_group
from videolens.core.prompt import VideoPrompt
from videolens.errors import InputError
from videolens.interventions.knockout import EdgeKnockout


def _check_head_reduce(head_reduce: str) -> None:
    if head_reduce not in ("mean", "max"):
        raise InputError(f"head_reduce={head_reduce!r} is not a reduction over heads; use 'mean' or 'max'.")


def _query_attention(
    model: HookedVideoLLM,
    prompt: VideoPrompt,
    queries: Any,
    key_groups: Sequence[torch.Tensor],
    interventions: Sequence[EdgeKnockout],
    layers: Iterable[int] | None,
    head_reduce: str,
    per_query: bool = False,
) -> Float[torch.Tensor, "layer *query group"]:
    """Attention from the query group to each key group (summed over the group's keys), averaged
    over queries (or kept per query) and reduced over heads, inside the hook so no pattern is kept."""
    _check_head_reduce(head_reduce)
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    rows = resolve_group(prompt.layout, queries)
    sizes = [len(cols) for cols in key_groups]
    columns = torch.cat(list(key_groups))
    owner = torch.repeat_interleave(torch.arange(len(key_groups)), torch.tensor(sizes))
    out = torch.zeros(len(layers), *((len(rows),) if per_query else ()), len(key_groups))

    def reduce(pattern: torch.Tensor, hook: Any) -> None:
        layer = int(hook.name.split(".")[1])
        sub = pattern[0][:, rows][..., columns].float()  # (head, query, key)
        if not per_query:
            sub = sub.mean(1, keepdim=True)
        per_group = torch.zeros(*sub.shape[:2], len(key_groups), device=sub.device).index_add_(
            2, owner.to(sub.device), sub
        )  # (head, query, group)
        reduced = per_group.mean(0) if head_reduce == "mean" else per_group.amax(0)
        out[layers.index(layer)] = (reduced if per_query else reduced[0]).cpu()

    hooks = [(f"blocks.{layer}.attn.hook_pattern", reduce) for layer in layers]
    with torch.no_grad():
        model.run_with_hooks(prompt, fwd_hooks=hooks, interventions=list(interventions))
    return out


def frame_attention(
    model: HookedVideoLLM,
    prompt: VideoPrompt,
    *,
    queries: Any = "question",
    interventions: Sequence[EdgeKnockout] = (),
    layers: Iterable[int] | None = None,
    head_reduce: Literal["mean", "max"] = "mean",
) -> Float[torch.Tensor, "layer frame"]:
    """``(layers, frames)``: attention from the query group to each frame, summed over the
    frame's keys, averaged over queries and reduced over heads."""
    frames = [prompt.layout.frame(t) for t in range(prompt.layout.n_frames)]
    return _query_attention(model, prompt, queries, frames, interventions, layers, head_reduce)


def video_token_attention(
    model: HookedVideoLLM,
    prompt: VideoPrompt,
    *,
    queries: Any = "question",
    interventions: Sequence[EdgeKnockout] = (),
    layers: Iterable[int] | None = None,
    head_reduce: Literal["mean", "max"] = "mean",
    per_query: bool = False,
) -> Float[torch.Tensor, "layer *query frame h w"]:
    """Attention from the query group to every video patch token, on each frame's patch grid.

    The per-token map of "Map the Flow"'s Fig. 6: attention (of the prefill pass) from query
    tokens to the video tokens, averaged over heads (or their maximum), per layer, laid out as
    ``(t, h, w)``. The paper drew one map per query token (``per_query=True``: shape
    ``(layer, query, frame, h, w)``, heads reduced per query, as it did), for the tokens of
    the question through the answer prompt that match task words; by default the queries'
    maps are averaged (heads then reduced on the average). Pass ``queries`` as any group (a
    name, positions, or ``fn(layout)``), e.g. ``lambda lay: torch.cat([lay["question"],
    lay["tail"]])`` for the paper's candidates. Per-frame tokens that are no patch
    (Video-LLaVA's CLS) are not in the grid; :func:`frame_attention` counts them with their
    frame.

    Raises:
        InputError: if the frames' patch grids differ in shape (no common ``(h, w)``).
    """
    _check_head_reduce(head_reduce)
    layout = prompt.layout
    grids = [layout.grid(t) for t in range(layout.n_frames)]
    if len({tuple(g.shape) for g in grids}) != 1:
        raise InputError(
            "The frames' patch grids differ in shape "
            f"({sorted({tuple(g.shape) for g in grids})}); read one frame at a time with queries/keys of your own."
        )
    tokens = torch.cat([g.reshape(-1) for g in grids])
    flat = _query_attention(
        model, prompt, queries, list(tokens[:, None]), interventions, layers, head_reduce, per_query
    )
    h, w = grids[0].shape
    return einops.rearrange(flat, "... (frame h w) -> ... frame h w", frame=len(grids), h=h, w=w)


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
    _check_head_reduce(head_reduce)
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
