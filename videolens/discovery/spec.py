"""A discovered pathway: which group edges stay open in which layer.

The paper's :class:`~videolens.analyses.pathways.PathwaySpec` ("Map the Flow", Sec. 5)
keeps one contiguous layer range per pathway (inter-frame, video -> question, question ->
last). A search finds per-layer sets of group pairs, which such ranges cannot always
express, so :class:`GroupPathway` holds the edges themselves. It turns into an
:class:`~videolens.interventions.knockout.EdgeKnockout` for any prompt, into a layer-range
view per pair (:meth:`GroupPathway.layer_ranges`), and into the closest
:class:`PathwaySpec` (:meth:`GroupPathway.to_pathway_spec`, the hull of each pathway's open
layers: a lossy summary, for comparison with the paper's ranges).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from videolens.analyses.pathways import PathwaySpec
from videolens.core.layout import TokenLayout
from videolens.discovery.edges import CROSS_FRAME, GroupEdge, edges_knockout
from videolens.interventions.knockout import EdgeKnockout

Range = tuple[int, int]


def _ranges(layers: Iterable[int]) -> list[Range]:
    """Sorted layers as half-open runs: [0, 1, 2, 5] -> [(0, 3), (5, 6)]."""
    out: list[list[int]] = []
    for layer in sorted(set(layers)):
        if out and out[-1][1] == layer:
            out[-1][1] = layer + 1
        else:
            out.append([layer, layer + 1])
    return [(a, b) for a, b in out]


@dataclass(frozen=True)
class GroupPathway:
    """The group edges a pathway blocks, out of the candidate edges it was searched over.

    Attributes:
        n_layers: the model's depth.
        candidates: every edge the search could block (the rest of the graph stays open).
        blocked: the edges blocked; ``candidates - blocked`` is the pathway that stays open.
    """

    n_layers: int
    candidates: frozenset[GroupEdge]
    blocked: frozenset[GroupEdge]

    @property
    def kept(self) -> frozenset[GroupEdge]:
        """The open edges: the pathway itself."""
        return self.candidates - self.blocked

    def knockout(self, layout: TokenLayout | int) -> EdgeKnockout | None:
        """The knockout for a prompt (its layout or frame count); None when nothing is blocked."""
        n_frames = layout if isinstance(layout, int) else layout.n_frames
        return edges_knockout(self.blocked, n_frames)

    def layer_ranges(self) -> dict[str, list[Range]]:
        """Per group pair, the half-open layer ranges where it stays open (the paper's form, per pair)."""
        pairs = sorted({e.pair for e in self.candidates})
        return {p: _ranges(e.layer for e in self.kept if e.pair == p) for p in pairs}

    def to_pathway_spec(self) -> PathwaySpec:
        """The closest :class:`PathwaySpec`: each pathway's hull of open layers (lossy; for comparison).

        ``inter_frame`` from ``cross_frame``, ``video_to_question`` from video -> question
        body and options, ``question_to_last`` from question body and options -> last. An
        empty pathway becomes the empty range ``(0, 0)``.
        """
        kept = self.kept

        def hull(pairs: set[str]) -> Range:
            layers = [e.layer for e in kept if e.pair in pairs]
            return (min(layers), max(layers) + 1) if layers else (0, 0)

        q_self = [e.layer for e in kept if e.pair in ("question_body->question_body", "options->options")]
        return PathwaySpec(
            self.n_layers,
            inter_frame=hull({CROSS_FRAME}),
            video_to_question=hull({"video->question_body", "video->options"}),
            question_to_last=hull({"question_body->last", "options->last"}),
            block_question_self_from=max(q_self) + 1 if q_self else 0,
        )

    def table(self) -> pd.DataFrame:
        """One row per candidate edge: ``pair, layer, kept``."""
        rows = [{"pair": e.pair, "layer": e.layer, "kept": e not in self.blocked} for e in sorted(self.candidates)]
        return pd.DataFrame(rows)

    def to_json(self) -> dict:
        return {
            "n_layers": self.n_layers,
            "candidates": [[e.pair, e.layer] for e in sorted(self.candidates)],
            "blocked": [[e.pair, e.layer] for e in sorted(self.blocked)],
        }

    @classmethod
    def from_json(cls, data: dict) -> GroupPathway:
        return cls(
            int(data["n_layers"]),
            frozenset(GroupEdge(p, int(layer)) for p, layer in data["candidates"]),
            frozenset(GroupEdge(p, int(layer)) for p, layer in data["blocked"]),
        )

    def __repr__(self) -> str:
        ranges = {p: r for p, r in self.layer_ranges().items() if r}
        return f"GroupPathway({len(self.kept)} of {len(self.candidates)} edges open: {ranges})"
