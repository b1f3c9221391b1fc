"""Interventions on a forward pass: attention-edge knockouts and their compiled masks."""

from videolens.interventions.knockout import EdgeKnockout, attendable_keys, blocked_masks, check_layers

__all__ = ["EdgeKnockout", "attendable_keys", "blocked_masks", "check_layers"]
