"""PLLaVA-format checkpoints (``PllavaForConditionalGeneration``, config ``model_type`` "llava").

transformers has no class for them; :mod:`model_adapters.pllava.modeling` provides the model and the
processor. The projector pools the ``(T, 24, 24)`` CLIP feature grid to ``pooling_shape``
``(T', H', W')`` with adaptive average pooling, so the single ``<image>`` placeholder
becomes ``T' * H' * W'`` tokens: ``T'`` frames of ``H' x W'`` tokens, frame after frame.
Temporal unit ``t`` covers the input frames of adaptive-pooling bin ``t``
(``floor(t * T / T')`` up to ``ceil((t + 1) * T / T')``), i.e. exactly frame ``t`` when
the video has ``T = T'`` frames.
"""

from __future__ import annotations

import math
from typing import Any

from model_adapters.pllava.tiny import TOKENIZER, tiny_config, tiny_processor
from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter
from videolens.errors import LayoutError
from videolens.testing.spec import LayoutFacts, SupportRow, TinySpec


def _pool_bins(n_in: int, n_out: int) -> list[tuple[int, ...]]:
    """Input indices averaged into each output index by adaptive average pooling."""
    return [tuple(range((t * n_in) // n_out, math.ceil((t + 1) * n_in / n_out))) for t in range(n_out)]


@register_adapter
class PllavaAdapter(VideoLLMAdapter):
    architectures = ("PllavaForConditionalGeneration",)
    family = "pllava"
    #: The video is spliced in at the ``<image>`` placeholder tokens.
    video_token_attrs = ("image_token_index", "image_token_id")
    language_model = "language_model.model"
    lm_head = "language_model.lm_head"
    vision_tower = "vision_tower"
    #: The projector pools after ``linear_2``: its output is ``vision.hook_projected``, before the pooling.
    vision_features_input = "multi_modal_projector"
    projector = "multi_modal_projector.linear_2"
    video_placeholder = "<image>"
    tiny = TinySpec(
        config=tiny_config,
        processor=tiny_processor,
        tokenizer=TOKENIZER,
        layout=LayoutFacts(tokens_per_unit=4),  # pooling_shape (8, 2, 2): one 2x2 grid per input frame
    )
    support = SupportRow(
        name="PLLaVA format (the paper's LLaVA-NeXT-Video-FT checkpoints)",
        hf_class_note=(
            '(videolens\' own class, `model_adapters.pllava.modeling`; config `model_type` "llava" + `pooling_shape`)'
        ),
        frames="`T'` frames of `H' x W'` pooled tokens from the single `<image>` placeholder",
        tokens_per_unit="`H' * W'` per pooled frame (`pooling_shape`)",
        notes=(
            "videolens' own model/processor classes (`model_adapters.pllava.modeling`); loads checkpoints whose "
            'config says `model_type` "llava" with `architectures` `["PllavaForConditionalGeneration"]`'
        ),
    )

    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        from model_adapters.pllava.modeling import pooling_shape

        t_out, h, w = pooling_shape(config)
        if n_tokens != t_out * h * w:
            raise LayoutError(
                f"{n_tokens} video tokens, but pooling_shape {(t_out, h, w)} gives {t_out * h * w}; "
                "the processor and the config disagree."
            )
        pixels = inputs["pixel_values"]
        n_in = int(pixels[item].shape[0]) if pixels.dim() == 5 else int(pixels.shape[0])
        return VideoStructure([(h, w)] * t_out, _pool_bins(n_in, t_out))

    def model_class(self, architecture: str) -> type:
        from model_adapters.pllava.modeling import PllavaForConditionalGeneration

        return PllavaForConditionalGeneration

    def load_processor(self, source: str, **kwargs: Any) -> Any:
        from model_adapters.pllava.modeling import PllavaProcessor

        return PllavaProcessor.from_pretrained(source, **kwargs)
