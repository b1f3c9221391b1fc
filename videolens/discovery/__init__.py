"""Pathway discovery: edge attribution over the group graph and a search for the sparsest pathway.

"Map the Flow" (Kim et al., ICLR 2026, Sec. 5) hand-picks its effective pathways; this
package finds them: :func:`edge_attribution` estimates what blocking each (group pair,
layer) edge does to the answer from one backward pass, :func:`exact_edge_effects` measures
it with the sweep engine, and :func:`discover_pathway` searches the sparsest open set that
keeps accuracy, returning a :class:`GroupPathway` (convertible to an
:class:`~videolens.EdgeKnockout` and to the paper's :class:`~videolens.analyses.PathwaySpec`).
"""

from videolens.discovery.attribution import (
    attribution_agreement,
    disagreements,
    edge_attribution,
    exact_edge_effects,
    metric_of,
    spearman,
    validate_attribution,
)
from videolens.discovery.edges import (
    NODES,
    PAIRS,
    GroupEdge,
    blocked_share,
    candidate_edges,
    edges_knockout,
    pair_masks,
)
from videolens.discovery.search import Discovery, discover_pathway
from videolens.discovery.spec import GroupPathway

__all__ = [
    "NODES",
    "PAIRS",
    "Discovery",
    "GroupEdge",
    "GroupPathway",
    "attribution_agreement",
    "blocked_share",
    "candidate_edges",
    "disagreements",
    "discover_pathway",
    "edge_attribution",
    "edges_knockout",
    "exact_edge_effects",
    "metric_of",
    "pair_masks",
    "spearman",
    "validate_attribution",
]
