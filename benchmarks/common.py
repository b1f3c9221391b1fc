"""Models for the benchmarks: a LLaVA-NeXT-Video-7B-shaped model with random weights, or a tiny one.

Real weights are not needed to measure speed and memory, and cannot be downloaded here.
The shapes follow llava-hf/LLaVA-NeXT-Video-7B-hf: CLIP ViT-L/14 at 336 px (24x24 patches,
average-pooled 2x to 12x12 = 144 tokens per frame), a 32-layer Llama with width 4096.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextVideoConfig,
    LlavaNextVideoForConditionalGeneration,
)

from videolens import HookedVideoLLM
from videolens.core.prompt import PAPER_ANSWER_PREFIX, PAPER_SYSTEM, VideoPrompt
from videolens.testing import build_tiny_tokenizer, llava_next_video_processor, random_video

SHAPES = {
    "7b": dict(
        vision=dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=336,
            patch_size=14,
            projection_dim=768,
        ),
        text=dict(
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=32064,
            max_position_embeddings=16384,
        ),
    ),
    "tiny": dict(
        vision=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=48,
            patch_size=8,
            projection_dim=32,
        ),
        text=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=4,
            vocab_size=1024,
            max_position_embeddings=4096,
        ),
    ),
}


def build_model(size: str, dtype: torch.dtype, device: str, attn_implementation: str = "eager") -> HookedVideoLLM:
    """A random-weight LLaVA-NeXT-Video of the given shape, with the family's real processor."""
    shape = SHAPES[size]
    tokenizer = build_tiny_tokenizer("llava_next_video")
    text = LlamaConfig(
        **shape["text"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    image = shape["vision"]["image_size"]
    config = LlavaNextVideoConfig(
        vision_config=CLIPVisionConfig(**shape["vision"]),
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_grid_pinpoints=[[image, image]],
        spatial_pool_mode="average",
        spatial_pool_stride=2,
    )
    config._attn_implementation = attn_implementation
    config.text_config._attn_implementation = attn_implementation
    config.vision_config._attn_implementation = "sdpa"
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            hf = LlavaNextVideoForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(old_dtype)
    hf.eval()
    processor = llava_next_video_processor(tokenizer, image, shape["vision"]["patch_size"])
    return HookedVideoLLM.from_hf(hf, processor)


QUESTION = "What happened after the person took the food?"
OPTIONS = ["Ate the medicine.", "Took the box.", "Put down the cup.", "Opened the door."]


def paper_prompt(model: HookedVideoLLM, size: str, frames: int, answer: int | None = 1) -> VideoPrompt:
    """The benchmarks' prompt: a random video of ``frames`` frames, an MVBench-style question, four options."""
    side = SHAPES[size]["vision"]["image_size"]
    video = random_video(frames, side, side, seed=0)
    return model.prepare(video, QUESTION, OPTIONS, PAPER_ANSWER_PREFIX, PAPER_SYSTEM, answer=answer)


def sync(device: str) -> None:
    """Wait for the GPU (timings must not end before its kernels do)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def environment(device: str, size: str, dtype: torch.dtype | None = None) -> dict:
    """The header every benchmark's JSON starts with: where it ran, on what, at which size and precision."""
    header = {
        "device": torch.cuda.get_device_name() if str(device).startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "size": size,
    }
    if dtype is not None:
        header["dtype"] = str(dtype)
    return header


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
