"""Qwen3-VL (``Qwen3VLForConditionalGeneration``).

Laid out like Qwen2.5-VL (whose adapter this one subclasses): ``temporal_patch_size`` (2)
consecutive frames form one temporal unit and ``spatial_merge_size`` x
``spatial_merge_size`` patches merge into one token, so ``frame(t)`` is the model's t-th
*pair* of input frames. Two differences:

- Time is text. The processor expands the prompt's one ``<|video_pad|>`` into, per
  temporal unit, ``<{t:.1f} seconds><|vision_start|><|video_pad|>...<|vision_end|>``
  (inside the template's own ``<|vision_start|>``/``<|vision_end|>``). The timestamp and
  the start/end tokens land in ``video_text`` (``layout.frames[t].text``: the text before
  each unit). The M-RoPE temporal id of each unit is plain (every unit is its own
  ``t = 1`` grid); HF's ``get_rope_index`` computes it. The rotary module interleaves the
  (t, h, w) sections; HF's own module is called, with the three id rows.
- DeepStack. The vision tower also returns features of a few of its intermediate layers;
  the language model adds ``deepstack_visual_embeds[i]`` to the hidden states at the
  visual positions (``visual_pos_masks``) right after decoder layer ``i``. videolens runs
  the layer loop, so :meth:`Qwen3VLAdapter.after_layer` does the same: after
  ``blocks.{i}.hook_resid_post`` and before ``blocks.{i+1}.hook_resid_pre``. The features
  come from ``LMInputs.extra`` (captured with the rest of the language model's inputs);
  ``hook_video_embeds`` edits do not reach them.

Tiny model: frames at most 56x56 (48x48 -> 56x56), patch 14, pairs of frames, 2x2 merge ->
4 tokens per temporal unit, 16 ``<|video_pad|>`` tokens for 8 frames through ``prepare``
(which passes the metadata and ``do_sample_frames=False``). A bare processor call without
``video_metadata`` samples frames at 2 fps from an assumed 24 fps source, i.e. 4 of the 8
frames (``min_frames``): 8 tokens. The video processor bounds the pixels of the whole clip
(``size`` is frames x height x width); ``cap_pixels_per_frame=True`` with
``max_video_tokens=4`` caps every frame at 56x56 whatever the clip length. The tower has a
learned position grid (``num_position_embeddings=16``: 4x4 patches) and DeepStack on: vision
layer 0's features go through their own merger and are added after text layer 0 (the real
models: 3 vision layers feeding text layers 0, 1, 2; DeepStack never reaches the last layer,
where it would land between the last ``hook_resid_post`` and the final norm). The chat
template inserts no default system message.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from model_adapters.qwen2_5_vl import PROCESSOR_PATCHING, Qwen2_5_VLAdapter, qwen_config, qwen_text, qwen_vision
from videolens.adapters import register_adapter
from videolens.errors import InputError
from videolens.testing.sizes import QWEN_FRAME_PIXELS, QWEN_FRAME_SIZE, VISION_HIDDEN, TextDims
from videolens.testing.spec import LayoutFacts, SupportRow, TinySpec
from videolens.testing.templates import QWEN_IMAGE, QWEN_VIDEO, chatml_template
from videolens.testing.tokenizer import QWEN_TOKENS


def tiny_config(dims: TextDims, tokenizer: Any) -> Any:
    """Qwen3-VL vision tower (learned 4x4 position grid, 2x2 merger, DeepStack) + Qwen3 text tower.

    M-RoPE is interleaved; ``mrope_section`` splits the rotary half-dimension 1/2, 1/4, 1/4
    ([4, 2, 2] for head_dim 16) so that the interleaved H and W slots fit.
    """
    head_dim = dims.hidden_size // dims.num_heads
    half = head_dim // 2
    spatial = max(1, (half - 1) // 3)
    vision = qwen_vision(
        hidden_size=VISION_HIDDEN,
        intermediate_size=2 * VISION_HIDDEN,
        out_hidden_size=dims.hidden_size,
        num_position_embeddings=16,
        deepstack_visual_indexes=[0],
    )
    text = qwen_text(
        "qwen3_vl_text",
        dims,
        tokenizer,
        rope_theta=5_000_000.0,
        mrope_section=[half - 2 * spatial, spatial, spatial],
        mrope_interleaved=True,
    )
    text["head_dim"] = head_dim
    return qwen_config("Qwen3VLConfig", text, vision, tokenizer)


def tiny_processor(tokenizer: Any) -> Any:
    """Real Qwen3-VL processor; every frame at most 56x56 pixels (4 tokens per frame pair)."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    clip = {"shortest_edge": QWEN_FRAME_PIXELS // 2, "longest_edge": 1024 * QWEN_FRAME_PIXELS}
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**PROCESSOR_PATCHING, size=QWEN_FRAME_SIZE),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(
            **PROCESSOR_PATCHING, size=clip, cap_pixels_per_frame=True, max_video_tokens=4
        ),
        chat_template=tokenizer.chat_template,
    )


@register_adapter
class Qwen3VLAdapter(Qwen2_5_VLAdapter):
    architectures = ("Qwen3VLForConditionalGeneration",)
    family = "qwen3_vl"
    unit_closing_tokens = ("<|vision_end|>",)
    tiny = TinySpec(
        config=tiny_config,
        processor=tiny_processor,
        tokenizer=dataclasses.replace(QWEN_TOKENS, chat_template=chatml_template(QWEN_IMAGE, QWEN_VIDEO, None)),
        # 2x2 tokens per pair of frames; "<t seconds><|vision_start|>" before each is video_text
        layout=LayoutFacts(tokens_per_unit=4, frames_per_unit=2, video_text=True),
    )
    support = SupportRow(
        name="Qwen3-VL",
        frames=(
            "as Qwen2.5-VL; the processor's `<t seconds>` timestamps between frame pairs are `video_text`; "
            "DeepStack features are added after the early layers by the adapter (`after_layer`), so "
            "`hook_resid_pre` of the next layer includes them"
        ),
        tokens_per_unit="`h * w` per pair of frames",
        notes=(
            "interleaved M-RoPE via HF's rotary; timestamps text between units is `video_text`; DeepStack "
            "visual features added after early layers in `after_layer`"
        ),
    )

    def processor_kwargs(self, fps: float | None, n_frames: int, timestamps: Any = None) -> dict[str, Any]:
        """Keep every frame, with metadata from which the processor writes each unit's absolute time.

        The processor writes ``<t seconds>`` before a unit, ``t`` the mean of ``frames_indices[i] / fps``
        over its two frames. The metadata states the times themselves (indices = seconds at fps 1),
        so ``t`` is the frames' absolute time bit for bit, the same float as ``layout.frames[t].timestamp``;
        without timestamps the frames are ``1 / fps`` s apart from 0 s. A single frame arrives
        repeated (:meth:`frames_for_processor`).
        """
        from transformers.video_utils import VideoMetadata

        times = np.arange(n_frames) / (fps or self.default_fps) if timestamps is None else np.asarray(timestamps)
        metadata = VideoMetadata(total_num_frames=n_frames, fps=1.0, frames_indices=times.tolist())
        return {"video_metadata": [metadata], "do_sample_frames": False}

    def frames_for_processor(self, frames: np.ndarray, timestamps: Any) -> tuple[np.ndarray, Any]:
        """One frame is repeated: the processor patches 2 frames into each unit and fails on 1 (as Qwen2.5-VL's pads)."""
        if len(frames) != 1:
            return frames, timestamps
        return np.repeat(frames, 2, axis=0), None if timestamps is None else np.repeat(np.asarray(timestamps), 2)

    def after_layer(
        self, layer: int, resid: torch.Tensor, extra: dict[str, Any] | None, positions: slice | None = None
    ) -> torch.Tensor:
        """DeepStack: add layer ``layer``'s visual features at the visual positions (as HF does)."""
        embeds = (extra or {}).get("deepstack_visual_embeds")
        mask = (extra or {}).get("visual_pos_masks")
        if embeds is None or mask is None or layer >= len(embeds):
            return resid
        mask = mask.to(resid.device)
        if positions is None:
            positions = slice(0, mask.shape[1])
        visual = mask[:, positions]
        if not visual.any():
            return resid
        if visual.shape[1] != resid.shape[1]:
            raise InputError(
                f"positions {positions} cover {visual.shape[1]} prompt positions; resid has {resid.shape[1]}."
            )
        full = resid.new_zeros(*mask.shape, resid.shape[-1])
        full[mask] = embeds[layer].to(resid.device, resid.dtype)
        add, visual = full[:, positions], visual[..., None]
        if add.shape[0] != resid.shape[0]:  # one prompt, several conditions (sweeps)
            add, visual = add.expand(resid.shape[0], -1, -1), visual.expand(resid.shape[0], -1, -1)
        return torch.where(visual, resid + add, resid)
