"""Video-LLaVA (``VideoLlavaForConditionalGeneration``).

Every frame goes through the CLIP video tower on its own and its *whole* last-but-one
hidden state is kept: the CLS token and then the ``(H/p) x (W/p)`` patch tokens, row-major,
with no pooling. A frame is therefore ``1 + h * w`` tokens, frame after frame, and nothing
after the last one. The layout keeps the CLS token in its frame (``frame(t)`` covers it,
so cross-frame knockouts block it) as the frame's prefix, while ``grid(t)`` /
``patch(t, h, w)`` / ``video_coords()`` cover only the patches.
"""

from __future__ import annotations

from typing import Any

from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter
from videolens.errors import LayoutError


@register_adapter
class VideoLlavaAdapter(VideoLLMAdapter):
    architectures = ("VideoLlavaForConditionalGeneration",)
    family = "video_llava"
    #: Tokens before each frame's patch grid: CLIP's CLS token.
    cls_tokens = 1

    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        n_frames, _, height, width = (int(x) for x in inputs["pixel_values_videos"][item].shape)
        patch = int(config.vision_config.patch_size)
        h, w = height // patch, width // patch
        if n_frames * (self.cls_tokens + h * w) != n_tokens:
            raise LayoutError(
                f"{n_tokens} video tokens are not {n_frames} frames of {self.cls_tokens} CLS + {h}x{w} patch "
                "tokens; the processor and the adapter disagree about the frame layout."
            )
        return VideoStructure([(h, w)] * n_frames, [(t,) for t in range(n_frames)], frame_prefix=self.cls_tokens)
