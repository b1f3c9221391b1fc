"""PLLaVA's tiny test model: CLIP tower, pooling projector and Llama text tower at the tiny sizes.

The CLIP tower sees 32x32 frames with patch 8 (4x4 patches, CLS dropped); the projector
pools the ``(T, 4, 4)`` feature grid with adaptive 3D average pooling to ``pooling_shape``
(default ``(8, 2, 2)``: 8 frames of 2x2 -> 32 ``<image>`` tokens for ``random_video(8)``).
The tokenizer is the Vicuna one of LLaVA-NeXT-Video with :data:`PLLAVA_CHAT_TEMPLATE`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from model_adapters.pllava.template import PLLAVA_CHAT_TEMPLATE
from videolens.testing.sizes import LLAVA_IMAGE_SIZE, TextDims, clip_tower
from videolens.testing.tokenizer import VICUNA_TOKENS

#: Pooled ``(T', H', W')`` of the tiny model unless ``build_tiny_model`` is given another.
TINY_POOLING = (8, 2, 2)
TOKENIZER = dataclasses.replace(VICUNA_TOKENS, chat_template=PLLAVA_CHAT_TEMPLATE)


def tiny_config(dims: TextDims, tokenizer: Any, pooling_shape: Sequence[int] = TINY_POOLING) -> Any:
    """A PLLaVA-format ``LlavaConfig``: tiny CLIP tower + Llama text tower, pooled to ``pooling_shape``."""
    from transformers import LlamaConfig

    from model_adapters.pllava.modeling import pllava_config

    text = LlamaConfig(**dims.text_kwargs(tokenizer))
    return pllava_config(text, clip_tower(), tokenizer.convert_tokens_to_ids("<image>"), pooling_shape)


def tiny_processor(tokenizer: Any, pooling_shape: Sequence[int] = TINY_POOLING) -> Any:
    """:class:`~model_adapters.pllava.modeling.PllavaProcessor` resizing/cropping frames to 32x32."""
    from transformers import CLIPImageProcessor

    from model_adapters.pllava.modeling import PllavaProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": LLAVA_IMAGE_SIZE}, crop_size={"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE}
    )
    return PllavaProcessor(tokenizer, image_processor, pooling_shape, chat_template=PLLAVA_CHAT_TEMPLATE)
