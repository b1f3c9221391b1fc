"""The analyses of "Map the Flow" as functions over a model and samples, returning DataFrames."""

from videolens.analyses.answer_probability import answer_probability
from videolens.analyses.attention_maps import attention_maps, frame_attention, video_token_attention
from videolens.analyses.common import Sample, option_token_ids
from videolens.analyses.flow import TARGETS, flow_accuracy, information_flow
from videolens.analyses.pathways import (
    PAPER_PATHWAYS,
    PathwaySpec,
    count_edges,
    effective_pathways,
    pathway_knockout,
    pathway_summary,
    random_knockout,
)

__all__ = [
    "PAPER_PATHWAYS",
    "PathwaySpec",
    "Sample",
    "TARGETS",
    "answer_probability",
    "attention_maps",
    "count_edges",
    "effective_pathways",
    "flow_accuracy",
    "frame_attention",
    "information_flow",
    "option_token_ids",
    "pathway_knockout",
    "pathway_summary",
    "random_knockout",
    "video_token_attention",
]
