"""PLLaVA-format video LLMs (``PllavaForConditionalGeneration``), which transformers lacks.

Checkpoints in this format (PLLaVA, and the LLaVA-NeXT-Video-FT checkpoints analysed in
"Map the Flow") store a config with ``"model_type": "llava"``, so ``AutoConfig`` gives a
``LlavaConfig``; it keeps the extra keys (``use_pooling``, ``pooling_method``,
``pooling_shape``) as plain attributes, which this module reads with defaults.

The model: a CLIP vision tower (hidden states of ``vision_feature_layer``, CLS dropped),
a projector ``linear_1 -> act -> linear_2`` followed by adaptive 3D average pooling of the
``(T, h, w)`` feature grid to ``pooling_shape`` ``(T', H', W')``, and a Llama causal LM.
The prompt holds ONE ``<image>`` placeholder per video; :class:`PllavaProcessor` expands it
to ``T' * H' * W'`` image tokens (frame after frame, row-major within a frame) and the
model splices the pooled features into those positions.

Weight names match the checkpoints: ``vision_tower.vision_model.*``,
``multi_modal_projector.linear_{1,2}.*``, ``language_model.model.*``,
``language_model.lm_head.*``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoTokenizer,
    BatchFeature,
    CLIPImageProcessor,
    CLIPVisionModel,
    GenerationMixin,
    LlamaForCausalLM,
    LlavaConfig,
    PreTrainedModel,
)
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPooling, CausalLMOutputWithPast

from model_adapters.pllava.template import PLLAVA_CHAT_TEMPLATE
from videolens.errors import InputError, LayoutError

__all__ = [
    "PLLAVA_CHAT_TEMPLATE",
    "PllavaForConditionalGeneration",
    "PllavaMultiModalProjector",
    "PllavaProcessor",
    "pllava_config",
    "pooling_shape",
]

#: Pooling shape of the real 7B/13B checkpoints when the config names none.
DEFAULT_POOLING_SHAPE = (16, 12, 12)


def pooling_shape(config: Any) -> tuple[int, int, int]:
    """``(T, H, W)`` the projector pools the feature grid to (``config.pooling_shape``)."""
    shape = getattr(config, "pooling_shape", None) or DEFAULT_POOLING_SHAPE
    t, h, w = (int(x) for x in shape)
    return t, h, w


def pllava_config(text_config: Any, vision_config: Any, image_token_index: int, pooling: Sequence[int], **kwargs: Any):
    """A ``LlavaConfig`` in PLLaVA format (``model_type`` "llava" plus the pooling keys)."""
    config = LlavaConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_index=image_token_index,
        vision_feature_layer=kwargs.pop("vision_feature_layer", -2),
        vision_feature_select_strategy=kwargs.pop("vision_feature_select_strategy", "default"),
        projector_hidden_act=kwargs.pop("projector_hidden_act", "gelu"),
        use_pooling=True,
        pooling_method="avg",
        pooling_shape=list(pooling),
        **kwargs,
    )
    config.architectures = ["PllavaForConditionalGeneration"]
    return config


class PllavaMultiModalProjector(nn.Module):
    """``linear_1 -> act -> linear_2``, then adaptive 3D average pooling to ``pooling_shape``."""

    def __init__(self, config: LlavaConfig) -> None:
        super().__init__()
        vision_hidden = config.vision_config.hidden_size
        text_hidden = config.text_config.hidden_size
        bias = getattr(config, "multimodal_projector_bias", True)
        self.linear_1 = nn.Linear(vision_hidden, text_hidden, bias=bias)
        self.act = ACT2FN[getattr(config, "projector_hidden_act", "gelu")]
        self.linear_2 = nn.Linear(text_hidden, text_hidden, bias=bias)
        method = getattr(config, "pooling_method", "avg")
        if method != "avg":
            raise NotImplementedError(f"PLLaVA pooling_method {method!r} is not supported (only 'avg').")
        self.use_pooling = bool(getattr(config, "use_pooling", True))
        self.pooling_shape = pooling_shape(config)
        self.pooling = nn.AdaptiveAvgPool3d(self.pooling_shape)

    def forward(self, features: torch.Tensor, n_videos: int) -> torch.Tensor:
        """``(n_videos * T, h * w, D_vision)`` patch features -> ``(n_videos, T' * H' * W', D)``."""
        hidden = self.linear_2(self.act(self.linear_1(features)))
        frames, patches, dim = hidden.shape
        side = math.isqrt(patches)
        if side * side != patches or frames % n_videos:
            raise LayoutError(f"Cannot arrange {tuple(hidden.shape)} features as {n_videos} videos of square frames.")
        grid = hidden.view(n_videos, frames // n_videos, side, side, dim).permute(0, 4, 1, 2, 3)
        if self.use_pooling:
            grid = self.pooling(grid)
        return grid.flatten(2).transpose(1, 2)  # (n_videos, T' * H' * W', D), t-major, row-major h, w


class PllavaPreTrainedModel(PreTrainedModel):
    config_class = LlavaConfig
    config: LlavaConfig
    base_model_prefix = ""
    input_modalities = ("image", "video", "text")
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values"]
    _no_split_modules = ["LlamaDecoderLayer", "CLIPEncoderLayer"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True


class PllavaForConditionalGeneration(PllavaPreTrainedModel, GenerationMixin):
    """CLIP tower + pooling projector + Llama LM, in PLLaVA's module layout."""

    def __init__(self, config: LlavaConfig) -> None:
        super().__init__(config)
        self.vision_tower = CLIPVisionModel(config.vision_config)
        self.multi_modal_projector = PllavaMultiModalProjector(config)
        self.language_model = LlamaForCausalLM(config.text_config)
        self.post_init()

    # ---- embeddings ------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    # ---- video features ----------------------------------------------------------------------
    def get_video_features(
        self, pixel_values: torch.Tensor, n_videos: int | None = None, return_dict: bool = False
    ) -> torch.Tensor | BaseModelOutputWithPooling:
        """``(B, T, 3, H, W)`` or ``(B * T, 3, H, W)`` frames -> ``(B, T' * H' * W', D)`` features.

        With 4D input, ``n_videos`` (default 1) says how many videos the frames hold. With
        ``return_dict`` the features are the ``pooler_output`` of a ``BaseModelOutputWithPooling``,
        as transformers' own VideoLLMs return them.
        """
        if pixel_values.dim() == 5:
            n_videos = pixel_values.shape[0]
            pixel_values = pixel_values.flatten(0, 1)
        n_videos = n_videos or 1
        dtype = self.vision_tower.get_input_embeddings().weight.dtype
        out = self.vision_tower(pixel_values.to(dtype), output_hidden_states=True)
        selected = out.hidden_states[self.config.vision_feature_layer]
        if self.config.vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        features = self.multi_modal_projector(selected, n_videos)
        return BaseModelOutputWithPooling(pooler_output=features) if return_dict else features

    # ---- forward -----------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("Pass exactly one of input_ids and inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if pixel_values is not None and input_ids is not None:
            image_mask = input_ids == self.config.image_token_index
            if image_mask.any():
                n_videos = int(image_mask.any(dim=1).sum())
                features = self.get_video_features(pixel_values, n_videos)
                features = features.to(inputs_embeds.device, inputs_embeds.dtype)
                if features.shape[0] * features.shape[1] != int(image_mask.sum()):
                    raise LayoutError(
                        f"The prompt holds {int(image_mask.sum())} image tokens but the video gives "
                        f"{features.shape[0]} x {features.shape[1]} features."
                    )
                inputs_embeds = inputs_embeds.masked_scatter(
                    image_mask[..., None], features.reshape(-1, features.shape[-1])
                )
        return self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def prepare_inputs_for_generation(self, input_ids, *args: Any, pixel_values=None, **kwargs: Any):
        """Pixel values only on the first step (the prefill); later steps reuse the cache."""
        model_inputs = super().prepare_inputs_for_generation(input_ids, *args, **kwargs)
        if kwargs.get("is_first_iteration") or not kwargs.get("use_cache", True):
            model_inputs["pixel_values"] = pixel_values
        return model_inputs


class PllavaProcessor:
    """Tokenizer + CLIP image processor; one ``<image>`` per video becomes ``T*H*W`` tokens.

    ``processor(text=[...], videos=[frames (T, H, W, 3)], return_tensors="pt")`` returns
    ``input_ids``, ``attention_mask`` and ``pixel_values`` of shape ``(B, T, 3, S, S)``.
    Saved as the tokenizer's and image processor's own files plus ``pllava_processor.json``
    (pooling shape, image token, chat template); :meth:`from_pretrained` falls back to
    ``config.json``'s ``pooling_shape`` for checkpoints that lack that file.
    """

    FILE = "pllava_processor.json"

    def __init__(
        self,
        tokenizer: Any,
        image_processor: CLIPImageProcessor,
        pooling_shape: Sequence[int] = DEFAULT_POOLING_SHAPE,
        image_token: str = "<image>",
        chat_template: str | None = PLLAVA_CHAT_TEMPLATE,
    ) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.pooling_shape = tuple(int(x) for x in pooling_shape)
        self.image_token = image_token
        self.chat_template = chat_template

    @property
    def num_video_tokens(self) -> int:
        return int(np.prod(self.pooling_shape))

    def apply_chat_template(self, conversation: list[dict[str, Any]], **kwargs: Any) -> Any:
        kwargs.setdefault("chat_template", self.chat_template)
        return self.tokenizer.apply_chat_template(conversation, **kwargs)

    def __call__(
        self,
        text: str | Sequence[str],
        videos: Sequence[Any] | None = None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        **kwargs: Any,
    ) -> BatchFeature:
        texts = [text] if isinstance(text, str) else list(text)
        n_placeholders = sum(t.count(self.image_token) for t in texts)
        n_videos = 0 if videos is None else len(videos)
        if n_placeholders != n_videos:
            raise LayoutError(f"The text holds {n_placeholders} {self.image_token} placeholders for {n_videos} videos.")
        expanded = [t.replace(self.image_token, self.image_token * self.num_video_tokens) for t in texts]
        data = dict(self.tokenizer(expanded, return_tensors=return_tensors, padding=padding, **kwargs))
        if videos:
            pixels = [
                self.image_processor(images=list(np.asarray(v)), return_tensors="pt")["pixel_values"] for v in videos
            ]
            if len({tuple(p.shape) for p in pixels}) > 1:
                raise LayoutError("All videos of one call must have the same number of frames; sample them alike.")
            data["pixel_values"] = torch.stack(pixels)
        return BatchFeature(data, tensor_type=return_tensors)

    def batch_decode(self, *args: Any, **kwargs: Any) -> Any:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        return self.tokenizer.decode(*args, **kwargs)

    def save_pretrained(self, folder: str | Path, **kwargs: Any) -> list[str]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = list(self.tokenizer.save_pretrained(folder))
        files += list(self.image_processor.save_pretrained(folder))
        meta = {
            "processor_class": type(self).__name__,
            "pooling_shape": list(self.pooling_shape),
            "image_token": self.image_token,
            "chat_template": self.chat_template,
        }
        (folder / self.FILE).write_text(json.dumps(meta, indent=2))
        return [*map(str, files), str(folder / self.FILE)]

    @classmethod
    def from_pretrained(cls, source: str | Path, **kwargs: Any) -> PllavaProcessor:
        folder = Path(source)
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        image_processor = CLIPImageProcessor.from_pretrained(source, **kwargs)
        meta: dict[str, Any] = {}
        if (folder / cls.FILE).is_file():
            meta = json.loads((folder / cls.FILE).read_text())
        else:
            meta["pooling_shape"] = pooling_shape(LlavaConfig.from_pretrained(source, **kwargs))
        return cls(
            tokenizer,
            image_processor,
            meta["pooling_shape"],
            meta.get("image_token", "<image>"),
            meta.get("chat_template") or getattr(tokenizer, "chat_template", None) or PLLAVA_CHAT_TEMPLATE,
        )
