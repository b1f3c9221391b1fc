"""The adapter protocol and registry: what the core needs to know about a VideoLLM family."""

from videolens.adapters.protocol import (
    HFPath,
    HookName,
    VideoLLMAdapter,
    VideoStructure,
    adapter_for,
    get_path,
    register_adapter,
    square_grids,
    supported_architectures,
)

__all__ = [
    "HFPath",
    "HookName",
    "VideoLLMAdapter",
    "VideoStructure",
    "adapter_for",
    "get_path",
    "register_adapter",
    "square_grids",
    "supported_architectures",
]
