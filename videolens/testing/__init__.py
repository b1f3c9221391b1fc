"""Tiny random-initialised models of every supported family, for offline tests."""

from videolens.testing.builders import (
    SUPPORTED_TINY_FAMILIES,
    build_tiny_model,
    build_tiny_pllava,
    build_tiny_tokenizer,
    llava_next_video_processor,
    random_video,
    save_tiny_model,
)

__all__ = [
    "SUPPORTED_TINY_FAMILIES",
    "build_tiny_model",
    "build_tiny_pllava",
    "build_tiny_tokenizer",
    "llava_next_video_processor",
    "random_video",
    "save_tiny_model",
]
