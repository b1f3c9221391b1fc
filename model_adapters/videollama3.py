"""VideoLLaMA3, the transformers-native class (``VideoLlama3ForConditionalGeneration``).

Every frame is its own temporal unit (``temporal_patch_size`` 1): the vision tower
patches each frame and merges ``video_merge_sizes`` x ``video_merge_sizes`` patches into
one token, so a frame of ``video_grid_thw`` ``(t, h, w)`` gives an ``(h / m, w / m)``
grid. Time is text: the processor expands the prompt's ``<|video_pad|>`` into
``Time {t:.1f}s:<|video_pad|>...`` per frame, the frames joined by ``","``; the
timestamps, the colon and the commas land in ``video_text`` (``layout.frames[t].text``
is the text before frame ``t``'s tokens). The timestamps are the frames' absolute times
(``Video.timestamps``; for bare frames ``index / fps``), which
:meth:`VideoLlama3Adapter.processor_kwargs` passes as video metadata (without it the
processor assumes 1 fps and writes ``index / 1``). The language model is Qwen2 with
plain 1D RoPE.

Token compression (``use_token_compression``, on in the real video processor) drops
tokens of a frame that barely differ from the previous frame
(``video_compression_mask``); the layout models full frame grids only, so
:meth:`VideoLlama3Adapter.video_structure` raises a ``LayoutError`` when the mask pruned
any token. Build the processor with ``use_token_compression=False`` (or pass it to the
processor call).

Tiny model: frames of 48x48 resized to 56x56 (the clip budget ``longest_edge=32*56*56`` is
shared by the frames), patch 14, no temporal patching, 2x2 merge -> 4 tokens per frame, 32
``<|video_pad|>`` tokens for 8 frames, written ``Time {t:.1f}s:<|video_pad|>x4`` per frame,
joined by ``,``; token compression off; the Qwen tokens with a bare ``<|video_pad|>``
placeholder, padded left.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter
from videolens.errors import LayoutError
from videolens.testing.sizes import (
    QWEN_FRAME_PIXELS,
    QWEN_FRAME_SIZE,
    QWEN_MERGE_SIZE,
    QWEN_PATCH_SIZE,
    TINY_TOWER,
    TextDims,
)
from videolens.testing.spec import LayoutFacts, SupportRow, TinySpec
from videolens.testing.templates import chatml_template
from videolens.testing.tokenizer import QWEN_TOKENS


def tiny_config(dims: TextDims, tokenizer: Any) -> Any:
    """VideoLLaMA3 vision tower (2D axial RoPE, patch 14, 2x2 merge per frame) + Qwen2 text tower."""
    from transformers import Qwen2Config, VideoLlama3Config, VideoLlama3VisionConfig

    return VideoLlama3Config(
        text_config=Qwen2Config(**dims.text_kwargs(tokenizer)),
        vision_config=VideoLlama3VisionConfig(**TINY_TOWER, patch_size=QWEN_PATCH_SIZE),
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        tie_word_embeddings=False,
    )


def tiny_processor(tokenizer: Any) -> Any:
    """Real VideoLLaMA3 processor; frames of 48x48 become 56x56 (4 tokens each), compression off.

    The video processor bounds ``longest_edge / n_frames`` pixels per frame (the clip's
    budget is shared by its frames); the budget here keeps every frame of up to 32
    frames at 56x56 or more. ``use_token_compression=False`` keeps every frame's full grid
    (the real processor prunes tokens that barely change from the previous frame).
    """
    from transformers import VideoLlama3ImageProcessor, VideoLlama3Processor, VideoLlama3VideoProcessor

    shared = {"patch_size": QWEN_PATCH_SIZE, "merge_size": QWEN_MERGE_SIZE}
    clip = {"shortest_edge": QWEN_FRAME_PIXELS, "longest_edge": 32 * QWEN_FRAME_PIXELS}
    return VideoLlama3Processor(
        image_processor=VideoLlama3ImageProcessor(**shared, size=QWEN_FRAME_SIZE),
        tokenizer=tokenizer,
        video_processor=VideoLlama3VideoProcessor(**shared, size=clip, use_token_compression=False),
        chat_template=tokenizer.chat_template,
    )


@register_adapter
class VideoLlama3Adapter(VideoLLMAdapter):
    architectures = ("VideoLlama3ForConditionalGeneration",)
    family = "videollama3"
    vision_tower = "model.vision_model"
    vision_features_input = "model.projector"
    projector = "model.projector"
    video_placeholder = "<|video_pad|>"
    uses_time = True
    tiny = TinySpec(
        config=tiny_config,
        processor=tiny_processor,
        tokenizer=dataclasses.replace(
            QWEN_TOKENS, chat_template=chatml_template("<|image_pad|>\n", "<|video_pad|>\n", None), padding_side="left"
        ),
        # 2x2 tokens per frame; "Time t.ts:" (and the "," between frames) is video_text
        layout=LayoutFacts(tokens_per_unit=4, video_text=True),
    )
    support = SupportRow(
        name="VideoLLaMA3",
        frames=(
            "one grid per input frame (`video_grid_thw` / `video_merge_sizes`); the processor's `Time {t:.1f}s:` "
            "before each frame and `,` between frames are `video_text`; Qwen2 text tower with 1D RoPE; token "
            "compression must be off (`use_token_compression=False`), else a `LayoutError`"
        ),
        tokens_per_unit="`h * w` per frame (`video_grid_thw`, `video_merge_sizes`)",
        notes=(
            "Qwen2 text tower, plain 1D RoPE; the processor writes `Time {t:.1f}s:` before each frame and `,` "
            "between frames (`video_text`); fps passed as video metadata (`uses_time`); token compression must "
            "be off"
        ),
    )

    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        grids = inputs["video_grid_thw"]
        merges = inputs.get("video_merge_sizes")
        sizes = [int(g.prod()) // int(merges[i] if merges is not None else 2) ** 2 for i, g in enumerate(grids)]
        t, h, w = (int(x) for x in grids[item])
        merge = int(merges[item]) if merges is not None else 2
        mask = inputs.get("video_compression_mask")
        if mask is not None:
            start = sum(sizes[:item])
            if not bool(mask[start : start + sizes[item]].all()):
                raise LayoutError(
                    "VideoLLaMA3 token compression pruned video tokens; token compression is not supported "
                    "by the layout yet; disable it in the processor (use_token_compression=False)."
                )
        return VideoStructure([(h // merge, w // merge)] * t, [(i,) for i in range(t)])

    def processor_kwargs(self, fps: float | None, n_frames: int, timestamps: Any = None) -> dict[str, Any]:
        """Keep every frame, with metadata from which the processor writes each frame's absolute time.

        The processor writes ``Time {frames_indices[i] / fps:.1f}s:``; the metadata states the times
        themselves (indices = seconds at fps 1), so the text is the frames' absolute time, the same
        float as ``layout.frames[t].timestamp``; without timestamps the frames are ``1 / fps`` s apart from 0 s.
        """
        from transformers.video_utils import VideoMetadata

        times = np.arange(n_frames) / (fps or self.default_fps) if timestamps is None else np.asarray(timestamps)
        metadata = VideoMetadata(total_num_frames=n_frames, fps=1.0, frames_indices=times.tolist())
        return {"video_metadata": [metadata], "do_sample_frames": False}
