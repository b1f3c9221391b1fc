"""Fast execution of many interventions: the sweep engine, pooled attention readouts, the reference method."""

from videolens.engine.readouts import pooled_attention
from videolens.engine.sweep import SweepEngine

__all__ = ["SweepEngine", "pooled_attention"]
