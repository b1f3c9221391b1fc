"""Every registered family passes the generic conformance checks, including one registered here.

The checks (:mod:`videolens.testing.conformance`) compare videolens with HF's own logits,
the family's hand-counted layout facts and the reference knockout method. The fake family
below is LLaVA-NeXT-Video under a class name no adapter knows, at a larger frame size
(16 tokens per frame instead of 4): one ``register_adapter`` call makes it buildable by
name, listed among the families and checked like the real ones.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from transformers import CLIPVisionConfig, LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

from model_adapters.llava_next_video import llava_kwargs, llava_next_video_processor
from videolens import HookedVideoLLM
from videolens.adapters import VideoLLMAdapter, VideoStructure, register_adapter, square_grids
from videolens.adapters.protocol import unregister_adapter
from videolens.testing import build_tiny_model, support_table, tiny_families
from videolens.testing.conformance import check_family
from videolens.testing.sizes import LLAVA_PATCH_SIZE, TINY_TOWER, VISION_HIDDEN, TextDims
from videolens.testing.spec import LayoutFacts, SupportRow, TinySpec
from videolens.testing.tokenizer import VICUNA_TOKENS

from conftest import FAMILIES, tiny

FAKE_IMAGE_SIZE = 64  # patch 8 -> 8x8 patches, pooled 2x -> 4x4 = 16 tokens per frame


class FakeVideoForConditionalGeneration(LlavaNextVideoForConditionalGeneration):
    """LLaVA-NeXT-Video under a name that no adapter of ``model_adapters`` handles."""


def fake_config(dims: TextDims, tokenizer: Any) -> LlavaNextVideoConfig:
    vision = CLIPVisionConfig(
        **TINY_TOWER, image_size=FAKE_IMAGE_SIZE, patch_size=LLAVA_PATCH_SIZE, projection_dim=VISION_HIDDEN
    )
    return LlavaNextVideoConfig(
        **llava_kwargs(dims, tokenizer, vision), spatial_pool_mode="average", spatial_pool_stride=2
    )


class FakeVideoAdapter(VideoLLMAdapter):
    architectures = ("FakeVideoForConditionalGeneration",)
    family = "fake_video"
    tiny = TinySpec(
        config=fake_config,
        processor=functools.partial(llava_next_video_processor, image_size=FAKE_IMAGE_SIZE),
        tokenizer=VICUNA_TOKENS,
        layout=LayoutFacts(tokens_per_unit=16),
    )
    support = SupportRow(name="Fake video", frames="one 4x4 grid per input frame", tokens_per_unit="`h * w`")

    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        return square_grids(n_tokens, int(inputs["pixel_values_videos"][item].shape[0]))

    def model_class(self, architecture: str) -> type:
        return FakeVideoForConditionalGeneration


@pytest.fixture
def fake_family():
    """The fake family, registered for one test only."""
    register_adapter(FakeVideoAdapter)
    try:
        yield FakeVideoAdapter.family
    finally:
        unregister_adapter(FakeVideoAdapter)
    assert FakeVideoAdapter.family not in tiny_families()
    assert "Fake video" not in support_table()


@pytest.mark.parametrize("family", FAMILIES)
def test_family_conforms(family):
    check_family(tiny(family))


def test_a_family_registered_in_one_line_is_checked_like_the_others(fake_family):
    assert fake_family in tiny_families()
    assert "| Fake video | `FakeVideoForConditionalGeneration` |" in support_table()
    hf, processor = build_tiny_model(fake_family)
    assert type(hf) is FakeVideoForConditionalGeneration
    model = HookedVideoLLM.from_hf(hf, processor)
    assert type(model.adapter) is FakeVideoAdapter and model.cfg.family == fake_family
    check_family(model)


def test_the_checks_catch_wrong_facts():
    model = tiny("llava_next_video")
    with pytest.raises(AssertionError, match="video tokens, expected 40"):
        check_family(model, LayoutFacts(tokens_per_unit=5))
    with pytest.raises(AssertionError, match="video_text absent"):
        check_family(model, LayoutFacts(tokens_per_unit=4, video_text=True))
