"""Interventions on a forward pass: attention-edge knockouts and their compiled masks."""

from videolens.interventions.knockout import EdgeKnockout, blocked_masks, check_layers

__all__ = ["EdgeKnockout", "blocked_masks", "check_layers"]
