"""Effective pathways ("Map the Flow"'s closing analysis): keep only the pathways the paper found, block the rest.

A :class:`PathwaySpec` says in which layers each pathway stays open (half-open ranges,
0-indexed). Everything else on those pathways is blocked; the share of attention edges
kept is counted exactly over the causal triangle of every layer. The random baseline
blocks the same number of edges, drawn uniformly per layer from a seeded generator.

Differences from the reference, on purpose: the tail (instruction, assistant marker,
answer prefix) is treated like ``last`` when ``close_tail`` is set, since otherwise
video -> tail -> last stays open as a side path (the reference assigns the tail to no
group, so it is never blocked); with ``close_video_gaps`` the text and template tokens
inside and right after the video (InternVL's ``FrameN:`` labels, Qwen3-VL's and
VideoLLaMA3's timestamps, the closing ``<|vision_end|>``) count as video, and each
frame's own text as that frame, since those tokens read the frames and are read by the
question and the last position in every layer, so video -> label -> question (and
frame -> next frame's label -> next frame) would stay open; the random baseline draws
from the whole causal triangle it counts over, never the first key position (so no
query is left with nothing to attend), and is seeded (the reference's is not).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from videolens.analyses.common import ResultWriter, iterate, option_token_ids, prompt_for, sample_id, sample_task
from videolens.analyses.correctness import decoded_letter, is_correct
from videolens.core.hooked import HookedVideoLLM
from videolens.core.layout import TokenLayout
from videolens.engine.sweep import SweepEngine
from videolens.errors import InputError
from videolens.interventions.knockout import EdgeKnockout, blocked_masks

Range = tuple[int, int]


@dataclass(frozen=True)
class PathwaySpec:
    """Where each pathway stays open (0-indexed, half-open layer ranges).

    Attributes:
        n_layers: the model's depth this spec was written for.
        inter_frame: earlier-frame -> later-frame attention.
        video_to_question: video -> question.
        question_to_last: question -> last.
        block_question_self_from: question -> question is blocked from this layer on
            (None: never).
        close_tail: treat the tail like ``last`` (see the module docstring).
        close_video_gaps: treat the text and template tokens inside and right after the
            video like the video, and each frame's text like its frame (see the module
            docstring; nothing changes for a layout without such tokens).
    """

    n_layers: int
    inter_frame: Range
    video_to_question: Range
    question_to_last: Range
    block_question_self_from: int | None
    close_tail: bool = True
    close_video_gaps: bool = True

    def __post_init__(self) -> None:
        n = self.n_layers
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"PathwaySpec n_layers={n!r}: give the depth the spec was written for (e.g. 32).")
        for name in ("inter_frame", "video_to_question", "question_to_last"):
            rng = getattr(self, name)
            if not (len(rng) == 2 and all(isinstance(x, int) for x in rng) and 0 <= rng[0] <= rng[1] <= n):
                raise InputError(
                    f"PathwaySpec {name}={rng!r} is not a half-open layer range (start, stop) with "
                    f"0 <= start <= stop <= n_layers={n}; e.g. (5, 15) keeps layers 5..14 open."
                )
        start = self.block_question_self_from
        if start is not None and not (isinstance(start, int) and 0 <= start <= n):
            raise InputError(f"PathwaySpec block_question_self_from={start!r} must be a layer 0..{n} or None.")

    def scaled(self, n_layers: int) -> PathwaySpec:
        """The same spec stretched to a model of ``n_layers`` layers (rounded)."""

        def s(x: int | None) -> int | None:
            return None if x is None else round(x * n_layers / self.n_layers)

        return replace(
            self,
            n_layers=n_layers,
            inter_frame=(s(self.inter_frame[0]), s(self.inter_frame[1])),
            video_to_question=(s(self.video_to_question[0]), s(self.video_to_question[1])),
            question_to_last=(s(self.question_to_last[0]), s(self.question_to_last[1])),
            block_question_self_from=s(self.block_question_self_from),
        )


#: The layer ranges the paper keeps open per model (its reference code's pathway targets).
PAPER_PATHWAYS: dict[str, PathwaySpec] = {
    "7b": PathwaySpec(32, (5, 15), (5, 20), (15, 25), 25),
    "13b": PathwaySpec(40, (5, 15), (5, 20), (15, 30), 30),
    "internvl": PathwaySpec(32, (5, 15), (5, 20), (10, 30), 30),
    "videollama3": PathwaySpec(28, (0, 15), (5, 20), (20, 28), None),
}


def resolve_pathway_spec(spec: PathwaySpec | str) -> PathwaySpec:
    """A :class:`PathwaySpec`, or the name of one of the paper's (case-insensitive: ``"7B"`` is ``"7b"``)."""
    if isinstance(spec, PathwaySpec):
        return spec
    if isinstance(spec, str) and spec.strip().lower() in PAPER_PATHWAYS:
        return PAPER_PATHWAYS[spec.strip().lower()]
    raise InputError(
        f"Unknown pathway spec {spec!r}; use one of {', '.join(map(repr, PAPER_PATHWAYS))} or a PathwaySpec(...)."
    )


def _outside(rng: Range, n_layers: int) -> list[int]:
    return [x for x in range(n_layers) if not rng[0] <= x < rng[1]]


def pathway_knockout(spec: PathwaySpec, n_layers: int) -> EdgeKnockout:
    """The knockout that keeps only the spec's pathways open.

    A spec written for another depth (the paper's ``"7b"`` on a 28-layer model) is stretched
    with :meth:`PathwaySpec.scaled`, with a warning naming the ranges used; pass
    ``spec.scaled(n_layers)`` (or a spec of this depth) to choose them yourself.
    """
    if spec.n_layers != n_layers:
        stretched = spec.scaled(n_layers)
        warnings.warn(
            f"The pathway spec is for {spec.n_layers} layers and the model has {n_layers}: stretched to "
            f"inter_frame={stretched.inter_frame}, video_to_question={stretched.video_to_question}, "
            f"question_to_last={stretched.question_to_last}, "
            f"block_question_self_from={stretched.block_question_self_from}. "
            "Pass spec.scaled(n_layers) or a PathwaySpec of this depth to choose the ranges yourself.",
            stacklevel=2,
        )
        spec = stretched
    every = range(n_layers)
    last_like = (lambda lay: torch.cat([lay["tail"], lay["last"]])) if spec.close_tail else "last"
    video = "video_block" if spec.close_video_gaps else "video"
    parts = [
        EdgeKnockout(video, last_like, layers=every),
        EdgeKnockout("last", "last", layers=every, allow_self=True),
    ]
    if spec.close_tail:
        tail_self = lambda lay: torch.cat([lay["tail"], lay["last"]])  # noqa: E731
        parts.append(EdgeKnockout("tail", tail_self, layers=every, allow_self=True))
    if outside := _outside(spec.inter_frame, n_layers):
        parts.append(EdgeKnockout.cross_frame(outside, with_text=spec.close_video_gaps))
    if outside := _outside(spec.video_to_question, n_layers):
        parts.append(EdgeKnockout(video, "question", layers=outside))
    if outside := _outside(spec.question_to_last, n_layers):
        parts.append(EdgeKnockout("question", last_like, layers=outside))
    if after := list(range(spec.video_to_question[1], n_layers)):
        parts.append(EdgeKnockout(video, video, layers=after, allow_self=True))
    if spec.block_question_self_from is not None and (after := list(range(spec.block_question_self_from, n_layers))):
        parts.append(EdgeKnockout("question", "question", layers=after, allow_self=True))
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def count_edges(knockout: EdgeKnockout, layout: TokenLayout, n_layers: int, n_heads: int) -> tuple[int, int]:
    """``(kept, total)`` attention edges over all layers: total counts ``N(N+1)/2`` per layer."""
    n = layout.seq_len
    per_layer_total = n * (n + 1) // 2
    masks = blocked_masks([knockout], [layout], n, n_layers, n_heads)
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    blocked = sum(int((mask[0, 0] & causal).sum()) for mask in masks.values())
    total = per_layer_total * n_layers
    return total - blocked, total


def random_knockout(layout: TokenLayout, n_block_per_layer: int, n_layers: int, seed: int) -> EdgeKnockout:
    """Block ``n_block_per_layer`` causal edges per layer, uniformly, from a seeded generator.

    Key position 0 is never blocked, so every query keeps something to attend to.
    """
    n = layout.seq_len
    q_idx, k_idx = torch.tril_indices(n, n)
    eligible = k_idx > 0
    q_idx, k_idx = q_idx[eligible], k_idx[eligible]
    count = min(n_block_per_layer, len(q_idx))
    total: EdgeKnockout | None = None
    for layer in range(n_layers):
        gen = torch.Generator().manual_seed(seed * 100_003 + layer)
        pick = torch.randperm(len(q_idx), generator=gen)[:count]
        mask = torch.zeros(n, n, dtype=torch.bool)
        mask[q_idx[pick], k_idx[pick]] = True
        part = EdgeKnockout.from_mask(lambda _lay, m=mask: m, layers=[layer], label="random")
        total = part if total is None else total + part
    assert total is not None
    return total


@torch.no_grad()
def effective_pathways(
    model: HookedVideoLLM,
    samples: Iterable[Any],
    spec: PathwaySpec | str = "7b",
    *,
    random_baseline: bool = True,
    seed: int = 42,
    out: str | Path | None = None,
    progress: bool = True,
    engine: Literal["sweep", "plain"] = "sweep",
    **prepare_kwargs: Any,
) -> pd.DataFrame:
    """Accuracy with only the effective pathways open, and with a random knockout of the same share.

    Returns:
        One row per (sample, condition) with condition ``"full"``, ``"pathways"`` or
        ``"random"``: ``sample_id, task, condition, answer, gt, correct, kept_edges,
        total_edges, kept_percent, suppressed_percent``. Use :func:`pathway_summary`
        for the task-level numbers (kept share = mean(kept) / mean(total)).
    """
    spec = resolve_pathway_spec(spec)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    ko = pathway_knockout(spec, n_layers)
    writer = ResultWriter(out, table="pathways")
    for index, sample in iterate(samples, "effective pathways", progress, writer=writer):
        prompt = prompt_for(model, sample, **prepare_kwargs)
        option_token_ids(model, prompt)  # refuses prompts whose option letters are not separate next tokens
        kept, total = count_edges(ko, prompt.layout, n_layers, n_heads)
        conditions: list[tuple[str, list[EdgeKnockout], int]] = [("full", [], total), ("pathways", [ko], kept)]
        if random_baseline:
            per_layer_block = round((total - kept) / n_layers)
            rnd = random_knockout(prompt.layout, per_layer_block, n_layers, seed + index)
            rnd_kept, _ = count_edges(rnd, prompt.layout, n_layers, n_heads)
            conditions.append(("random", [rnd], rnd_kept))
        if engine == "sweep":
            all_logits = SweepEngine(model, prompt).last_logits([ivs[0] if ivs else None for _, ivs, _ in conditions])
        else:
            all_logits = [model(prompt, interventions=ivs)[0, -1] for _, ivs, _ in conditions]
        rows = []
        for (name, _, kept_edges), logits in zip(conditions, all_logits):
            answer = int(logits.argmax())
            rows.append(
                {
                    "sample_id": sample_id(sample, index),
                    "task": sample_task(sample),
                    "condition": name,
                    "answer": decoded_letter(model.tokenizer, answer),
                    "gt": prompt.answer_letter,
                    "correct": is_correct(model.tokenizer, answer, prompt.answer_letter),
                    "kept_edges": kept_edges,
                    "total_edges": total,
                    "kept_percent": 100 * kept_edges / total,
                    "suppressed_percent": 100 - 100 * kept_edges / total,
                }
            )
        writer.add(rows)
    return writer.frame()


def pathway_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per task and condition: accuracy (percent) and the share of edges kept, mean(kept)/mean(total)."""
    g = df.groupby(["task", "condition"], sort=False)
    out = g.agg(
        accuracy=("correct", lambda s: 100 * s.mean()),
        kept=("kept_edges", "mean"),
        total=("total_edges", "mean"),
        n=("correct", "size"),
    )
    out["kept_percent"] = 100 * out["kept"] / out["total"]
    out["suppressed_percent"] = 100 - out["kept_percent"]
    return out.drop(columns=["kept", "total"]).reset_index()
