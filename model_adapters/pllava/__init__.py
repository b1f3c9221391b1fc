"""PLLaVA-format checkpoints: the adapter, and the model and processor classes transformers lacks."""

from model_adapters.pllava.adapter import PllavaAdapter

__all__ = ["PllavaAdapter"]
