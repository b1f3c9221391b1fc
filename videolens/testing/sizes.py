"""The sizes every tiny test model shares: text tower, vision tower and frame resolutions.

Two frame resolutions cover the families. LLaVA-style CLIP/SigLIP towers see 32x32 frames
with patch 8 (a 4x4 patch grid). Qwen-style towers (and InternVL, VideoLLaMA3) see 56x56
frames with patch 14 (also 4x4), merged 2x2 into tokens and, where the family patches in
time, 2 frames per temporal unit. Every vision tower has the same small width and depth,
independent of the text ``hidden_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import CLIPVisionConfig, PreTrainedTokenizerFast

# LLaVA families: a 32x32 frame with patch 8 is a 4x4 patch grid.
LLAVA_IMAGE_SIZE = 32
LLAVA_PATCH_SIZE = 8
# Qwen families: a 56x56 frame with patch 14 is a 4x4 grid, merged 2x2 -> 2x2 tokens.
QWEN_PATCH_SIZE = 14
QWEN_MERGE_SIZE = 2
QWEN_TEMPORAL_PATCH = 2
QWEN_FRAME_PIXELS = 56 * 56
#: A Qwen-style image/video processor ``size`` pinning every frame to 56x56 pixels (min = max).
QWEN_FRAME_SIZE = {"shortest_edge": QWEN_FRAME_PIXELS, "longest_edge": QWEN_FRAME_PIXELS}
#: Longest sequence of every tiny text tower (and the tokenizers' ``model_max_length``).
MAX_POSITIONS = 2048
VISION_HIDDEN = 32
VISION_HEADS = 4
VISION_LAYERS = 2

#: The vision-tower size every tiny family shares (HF's usual config argument names).
TINY_TOWER = {
    "hidden_size": VISION_HIDDEN,
    "intermediate_size": 2 * VISION_HIDDEN,
    "num_hidden_layers": VISION_LAYERS,
    "num_attention_heads": VISION_HEADS,
}


@dataclass(frozen=True)
class TextDims:
    """Text-tower hyper-parameters shared by all families."""

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int

    @property
    def intermediate_size(self) -> int:
        """MLP width: a conventional 2x hidden size keeps the model tiny."""
        return 2 * self.hidden_size

    def common_kwargs(self) -> dict[str, int | float]:
        """Keyword arguments understood by every decoder config used here."""
        return {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "max_position_embeddings": MAX_POSITIONS,
        }

    def text_kwargs(self, tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
        """:meth:`common_kwargs` plus the tokenizer's bos/eos/pad ids, with untied embeddings."""
        return {**self.common_kwargs(), **token_ids(tokenizer), "tie_word_embeddings": False}


def token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int | None]:
    """The bos/eos/pad ids of ``tokenizer`` for a text config."""
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def tiny_grid_pinpoints() -> list[list[int]]:
    """Any-resolution grid for still images, scaled down to the tiny LLaVA tile size."""
    s = LLAVA_IMAGE_SIZE
    return [[s, s], [s, 2 * s], [2 * s, s], [2 * s, 2 * s]]


def clip_tower() -> CLIPVisionConfig:
    """The tiny CLIP vision tower of the LLaVA families: 32x32 frames, patch 8 (4x4 patches)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        **TINY_TOWER, image_size=LLAVA_IMAGE_SIZE, patch_size=LLAVA_PATCH_SIZE, projection_dim=VISION_HIDDEN
    )
