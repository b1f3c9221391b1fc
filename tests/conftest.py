"""Shared fixtures: tiny random models of every supported family, built in-process."""

from __future__ import annotations

import functools

import pytest
import torch

from videolens import HookedVideoLLM
from videolens.testing import SUPPORTED_TINY_FAMILIES, build_tiny_model, random_video

FAMILIES = list(SUPPORTED_TINY_FAMILIES)


@functools.cache
def tiny(family: str, attn: str = "eager") -> HookedVideoLLM:
    """A cached tiny HookedVideoLLM (built once per family and attention kind)."""
    torch.manual_seed(0)
    hf, processor = build_tiny_model(family, attn_implementation=attn)
    return HookedVideoLLM.from_hf(hf, processor)


def make_prompt(model: HookedVideoLLM, seed: int = 0, question: str = "What moved first?", **kw):
    kw.setdefault("options", ["the red square", "the blue circle", "nothing"])
    kw.setdefault("answer_prefix", "Best option:(")
    kw.setdefault("system", "Watch the video carefully.")
    kw.setdefault("fps", 2.0)
    return model.prepare(random_video(8, seed=seed), question, **kw)


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def model(family) -> HookedVideoLLM:
    return tiny(family)


@pytest.fixture
def prompt(model):
    return make_prompt(model)
