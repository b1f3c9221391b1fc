"""VideoLLaMA3, the transformers-native class (``VideoLlama3ForConditionalGeneration``).

Every frame is its own temporal unit (``temporal_patch_size`` 1): the vision tower
patches each frame and merges ``video_merge_sizes`` x ``video_merge_sizes`` patches into
one token, so a frame of ``video_grid_thw`` ``(t, h, w)`` gives an ``(h / m, w / m)``
grid. Time is text: the processor expands the prompt's ``<|video_pad|>`` into
``Time {t:.1f}s:<|video_pad|>...`` per frame, the frames joined by ``","``; the
timestamps, the colon and the commas land in ``video_text`` (``layout.frames[t].text``
is the text before frame ``t``'s tokens). The timestamps are the frames' indices over
the fps given in the video metadata, which :meth:`VideoLlama3Adapter.processor_kwargs`
passes (without it the processor assumes 1 fps). The language model is Qwen2 with
plain 1D RoPE.

Token compression (``use_token_compression``, on in the real video processor) drops
tokens of a frame that barely differ from the previous frame
(``video_compression_mask``); the layout models full frame grids only, so
:meth:`VideoLlama3Adapter.video_structure` raises a ``LayoutError`` when the mask pruned
any token. Build the processor with ``use_token_compression=False`` (or pass it to the
processor call).
"""

from __future__ import annotations

from typing import Any

from transformers.video_utils import VideoMetadata

from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter
from videolens.errors import LayoutError


@register_adapter
class VideoLlama3Adapter(VideoLLMAdapter):
    architectures = ("VideoLlama3ForConditionalGeneration",)
    family = "videollama3"
    video_placeholder = "<|video_pad|>"
    uses_time = True

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

    def processor_kwargs(self, fps: float | None, n_frames: int) -> dict[str, Any]:
        # The frames are already sampled: keep them all; the metadata gives the timestamps.
        metadata = VideoMetadata(total_num_frames=n_frames, fps=fps, frames_indices=list(range(n_frames)))
        return {"video_metadata": [metadata], "do_sample_frames": False}
