"""The group graph of a prompt: which (source group, destination group, layer) edges there are.

"Map the Flow" (Kim et al., ICLR 2026, Sec. 4-5) reasons about attention between groups of
positions: frames, the question, the options, the last token. Discovery works on the same
coarse graph. Its nodes, in prompt order, are :data:`NODES`; an edge ``"a->b"`` blocks
queries in ``b`` from attending keys in ``a`` (the paper's "a -/-> b"). Attention among
video tokens is split the paper's way into ``cross_frame`` (earlier frame -> later frame,
its Sec. 4.1 knockout) and ``within_frame`` (each frame to itself). A :class:`GroupEdge`
is one pair in one layer.

The ``video`` node is the layout's ``video_block``: the video with the tokens between and
right after its frames (frame labels, timestamps, vision start/end), which read the frames;
each frame's own text belongs to that frame in ``cross_frame`` and ``within_frame``, so no
edge set leaves a side path through them. Other template tokens (BOS, role markers,
separators) belong to no node and are never blocked, as the paper never blocks its
separators: every query keeps the BOS token to attend to, so any set of group edges is a
valid knockout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import reduce
from operator import add

import torch
from jaxtyping import Bool

from videolens.core.layout import TokenLayout
from videolens.errors import InputError
from videolens.interventions.knockout import EdgeKnockout, blocked_masks, frame_span

#: The groups of the graph, in prompt order (a key can only be read by later queries).
NODES = ("system", "video", "question_body", "options", "tail", "last")
CROSS_FRAME, WITHIN_FRAME = "cross_frame", "within_frame"
#: The layout group each node stands for (the rest are the layout's groups of the same name).
NODE_GROUPS = {"video": "video_block"}


def _group(node: str) -> str:
    return NODE_GROUPS.get(node, node)


def _pairs() -> tuple[str, ...]:
    out = []
    for i, src in enumerate(NODES):
        for dst in NODES[i:]:
            if src == dst == "video":
                out += [CROSS_FRAME, WITHIN_FRAME]
            else:
                out.append(f"{src}->{dst}")
    # Groups can interleave (line breaks between options are question labels): the
    # backward pairs, which cover nothing in most prompts and are then left out.
    return tuple(out + [f"{dst}->{src}" for i, src in enumerate(NODES) for dst in NODES[i + 1 :]])


#: Every group pair of the graph: ``"a->b"`` for nodes a, b (forward pairs first) and the two video-video pairs.
PAIRS: tuple[str, ...] = _pairs()


@dataclass(frozen=True, order=True)
class GroupEdge:
    """One edge of the group graph: ``pair`` (e.g. ``"video->last"``, ``"cross_frame"``) in ``layer``."""

    pair: str
    layer: int

    def __str__(self) -> str:
        return f"{self.pair}@{self.layer}"


def check_pair(pair: str) -> str:
    if pair not in PAIRS:
        raise InputError(f"Unknown group pair {pair!r}; the graph's pairs are {', '.join(PAIRS)}.")
    return pair


def pair_knockout(pair: str, layers: Iterable[int], n_frames: int) -> EdgeKnockout:
    """The :class:`EdgeKnockout` that blocks ``pair`` in ``layers`` (``n_frames``: the prompt's frames)."""
    check_pair(pair)
    layers = list(layers)
    if pair == CROSS_FRAME:
        return EdgeKnockout.cross_frame(layers, with_text=True)
    if pair == WITHIN_FRAME:
        parts = [
            EdgeKnockout(
                lambda lay, t=t: frame_span(lay, t, True),
                lambda lay, t=t: frame_span(lay, t, True),
                layers=layers,
                allow_self=True,
            )
            for t in range(n_frames)
        ]
        return reduce(add, parts)
    src, dst = pair.split("->")
    return EdgeKnockout(_group(src), _group(dst), layers=layers, allow_self=src == dst)


def edges_knockout(edges: Iterable[GroupEdge], n_frames: int) -> EdgeKnockout | None:
    """One knockout blocking every edge (one part per pair, over all its layers); None for no edge."""
    by_pair: dict[str, list[int]] = {}
    for edge in edges:
        by_pair.setdefault(edge.pair, []).append(edge.layer)
    parts = [pair_knockout(pair, sorted(set(layers)), n_frames) for pair, layers in sorted(by_pair.items())]
    return reduce(add, parts) if parts else None


def pair_masks(layout: TokenLayout, pairs: Sequence[str] = PAIRS) -> dict[str, Bool[torch.Tensor, "q_pos k_pos"]]:
    """The causal ``(query, key)`` entries each pair covers in this prompt; pairs that cover none are left out.

    A pair covers nothing when a group is empty (no system prompt), when its keys all
    come after its queries, or (cross_frame) when the video has one frame. A self pair of
    a group holding position 0 is left out too: blocking it would leave that query nothing.
    """
    n = layout.seq_len
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    out = {}
    for pair in pairs:
        check_pair(pair)
        if pair == CROSS_FRAME and layout.n_frames < 2:
            continue
        if pair not in (CROSS_FRAME, WITHIN_FRAME):
            src, dst = pair.split("->")
            keys, queries = layout[_group(src)], layout[_group(dst)]
            if len(keys) == 0 or len(queries) == 0 or (src == dst and 0 in keys.tolist()):
                continue
            if int(keys.min()) > int(queries.max()):
                continue
        elif layout.n_frames == 0 or 0 in layout["video_block"].tolist():
            continue
        mask = blocked_masks([pair_knockout(pair, [0], layout.n_frames)], [layout], n, 1, 1)[0][0, 0]
        out[pair] = mask & causal
    return out


def candidate_edges(layouts: Sequence[TokenLayout], n_layers: int, pairs: Sequence[str] = PAIRS) -> list[GroupEdge]:
    """Every (pair, layer) edge that covers something in every one of ``layouts``, in graph order."""
    if not layouts:
        raise InputError("Need at least one prompt to build the group graph.")
    frames = {lay.n_frames for lay in layouts}
    if len(frames) > 1:
        raise InputError(f"The prompts have different frame counts {sorted(frames)}; use one frame count.")
    common = set(pairs)
    for lay in layouts:
        common &= set(pair_masks(lay, pairs))
    return [GroupEdge(pair, layer) for layer in range(n_layers) for pair in pairs if pair in common]


def blocked_share(knockout: EdgeKnockout | None, layout: TokenLayout, n_layers: int) -> dict[tuple[str, int], float]:
    """For every (pair, layer): the share of that pair's entries ``knockout`` blocks (0..1).

    Reads any knockout, e.g. the paper's :func:`~videolens.analyses.pathways.pathway_knockout`,
    on the same grid as a discovered pathway, so the two can be drawn side by side.
    """
    masks = pair_masks(layout)
    blocked = {} if knockout is None else blocked_masks([knockout], [layout], layout.seq_len, n_layers, 1)
    out = {}
    for layer in range(n_layers):
        m = blocked.get(layer)
        for pair, cover in masks.items():
            total = int(cover.sum())
            hit = 0 if m is None else int((m[0].any(0) & cover).sum())
            out[(pair, layer)] = hit / total if total else 0.0
    return out
