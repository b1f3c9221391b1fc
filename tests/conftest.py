"""Shared fixtures: tiny random models of every registered family, built in-process."""

from __future__ import annotations

import functools

import pytest
import torch

from videolens import HookedVideoLLM
from videolens.testing import build_tiny_model, random_video, tiny_families, tiny_spec
from videolens.testing.spec import LayoutFacts

#: Every family in the adapter registry with a tiny model (PLLaVA included).
FAMILIES = list(tiny_families())


@functools.cache
def tiny(family: str, attn: str = "eager") -> HookedVideoLLM:
    """A cached tiny HookedVideoLLM (built once per family and attention kind)."""
    torch.manual_seed(0)
    hf, processor = build_tiny_model(family, attn_implementation=attn)
    return HookedVideoLLM.from_hf(hf, processor)


def facts(family: str) -> LayoutFacts:
    """The family's hand-counted layout of ``make_prompt`` (8 frames), from its own module."""
    return tiny_spec(family).layout


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
