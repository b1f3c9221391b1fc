"""Quick checks of the tiny offline VideoLLM builders in ``videolens.testing``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
from transformers import AutoModelForImageTextToText, AutoProcessor

from videolens.adapters import adapter_for
from videolens.adapters.protocol import registered_adapters
from videolens.errors import InputError
from videolens.testing import (
    SUPPORTED_TINY_FAMILIES,
    build_tiny_model,
    build_tiny_tokenizer,
    random_video,
    save_tiny_model,
)

from conftest import FAMILIES, facts


def _messages(question: str) -> list[dict]:
    return [
        {"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]},
        {
            "role": "user",
            "content": [{"type": "video"}, {"type": "text", "text": question}],
        },
    ]


def _prompt(processor, question: str = "Question: What happened? (A) up (B) down") -> str:
    return processor.apply_chat_template(_messages(question), add_generation_prompt=True, tokenize=False)


def _logits(model, processor, prompt: str) -> torch.Tensor:
    inputs = processor(text=[prompt], videos=[random_video(8)], return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_build_process_forward(family: str) -> None:
    model, processor = build_tiny_model(family)
    assert not model.training
    assert model.dtype == torch.float32
    assert model.get_input_embeddings().num_embeddings == len(processor.tokenizer)
    assert model.config.text_config.num_key_value_heads < model.config.text_config.num_attention_heads

    adapter = adapter_for(model)
    # the processor call prepare() makes: the family's own kwargs (fps as video metadata)
    kwargs = adapter.processor_kwargs(2.0, 8)
    inputs = processor(text=[_prompt(processor)], videos=[random_video(8)], return_tensors="pt", **kwargs)
    n_video = int((inputs["input_ids"] == adapter.video_token_id(model.config)).sum())
    assert n_video == facts(family).video_tokens
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(processor.tokenizer))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_padding_matches_single(family: str) -> None:
    model, processor = build_tiny_model(family, attn_implementation="sdpa")
    side = processor.tokenizer.padding_side
    short, long = _prompt(processor, "Question: Why?"), _prompt(processor)
    batch = processor(
        text=[short, long],
        videos=[random_video(8), random_video(8, seed=1)],
        return_tensors="pt",
        padding=True,
    )
    with torch.no_grad():
        batched = model(**batch).logits
    single = _logits(model, processor, short)
    n = single.shape[1]
    row = batched[0, -n:] if side == "left" else batched[0, :n]
    torch.testing.assert_close(row, single[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_weights(family: str) -> None:
    first, _ = build_tiny_model(family, seed=3)
    second, _ = build_tiny_model(family, seed=3)
    other, _ = build_tiny_model(family, seed=4)
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("family", FAMILIES)
def test_eager_and_sdpa_agree(family: str) -> None:
    eager, processor = build_tiny_model(family, attn_implementation="eager")
    sdpa, _ = build_tiny_model(family, attn_implementation="sdpa")
    prompt = _prompt(processor)
    torch.testing.assert_close(
        _logits(eager, processor, prompt),
        _logits(sdpa, processor, prompt),
        atol=1e-4,
        rtol=1e-4,
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip(family: str, tmp_path) -> None:
    kwargs = {"seed": 7, "vocab_words": ["zebra"]}
    model, processor = build_tiny_model(family, **kwargs)
    folder = save_tiny_model(family, tmp_path / family, **kwargs)
    # from_pretrained defaults to sdpa; match the builder's eager default so
    # the logits are bit-identical rather than merely close.
    arch = type(model).__name__
    if hasattr(transformers, arch):  # transformers' own families load through the Auto classes
        loaded = AutoModelForImageTextToText.from_pretrained(folder, attn_implementation="eager").eval()
        loaded_processor = AutoProcessor.from_pretrained(folder)
    else:  # PLLaVA's config says "llava": only its adapter knows the class and the processor
        adapter = adapter_for(arch)
        loaded = adapter.model_class(arch).from_pretrained(folder, attn_implementation="eager").eval()
        loaded_processor = adapter.load_processor(str(folder))
    assert type(loaded) is type(model)
    assert type(loaded_processor) is type(processor)
    assert loaded_processor.chat_template == processor.chat_template
    prompt = _prompt(processor)
    torch.testing.assert_close(
        _logits(loaded, loaded_processor, prompt),
        _logits(model, processor, prompt),
        atol=0,
        rtol=0,
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_is_fast_with_offsets(family: str) -> None:
    tokenizer = build_tiny_tokenizer(family, words=["zebra"])
    assert tokenizer.is_fast
    assert 300 <= len(tokenizer) <= 1000
    text = "Best option: (A) zebra"
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    pieces = [text[s:e] for s, e in enc["offset_mapping"]]
    assert "".join(pieces) == text
    assert tokenizer.tokenize(" zebra") == ["Ġzebra"]


def test_chat_templates_render_family_formats() -> None:
    rendered = {family: _prompt(build_tiny_model(family)[1], "Q?") for family in FAMILIES}
    assert rendered["llava_next_video"] == "Answer briefly. USER: <video>\nQ? ASSISTANT:"
    assert rendered["llava_onevision"] == (
        "<|im_start|>system\nAnswer briefly.<|im_end|>\n"
        "<|im_start|>user\n<video>\nQ?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert rendered["qwen2_5_vl"] == (
        "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|video_pad|><|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert rendered["qwen2_vl"] == rendered["qwen2_5_vl"]
    assert rendered["video_llava"] == rendered["llava_next_video"]
    # PLLaVA's prompt holds one <image> per video
    assert rendered["pllava"] == "Answer briefly. USER: <image>\nQ? ASSISTANT:"


def test_padding_sides_follow_the_real_checkpoints() -> None:
    sides = {family: build_tiny_tokenizer(family).padding_side for family in FAMILIES}
    # llava-hf's LLaVA-NeXT-Video and LLaVA-OneVision pad left; Qwen2-VL and Qwen2.5-VL keep
    # the tokenizer default, right; both sides among the test models keep token-locating honest
    assert sides["llava_next_video"] == sides["llava_onevision"] == "left"
    assert sides["qwen2_5_vl"] == sides["qwen2_vl"] == "right"
    assert set(sides.values()) == {"left", "right"}


def test_qwen3_bare_processor_call_samples_frames() -> None:
    # with no video metadata the real Qwen3-VL video processor samples at 2 fps assuming a
    # 24 fps source: max(int(8 / 24 * 2), min_frames=4) = 4 frames -> 2 pairs x 2x2 tokens;
    # prepare() passes metadata and keeps all 8 frames (16 tokens)
    model, processor = build_tiny_model("qwen3_vl")
    inputs = processor(text=[_prompt(processor)], videos=[random_video(8)], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.video_token_id).sum()) == 8


def test_families_come_from_the_registry() -> None:
    registered = {cls.family for cls in registered_adapters()}
    assert set(SUPPORTED_TINY_FAMILIES) == registered  # every registered family has a tiny model
    assert "pllava" in SUPPORTED_TINY_FAMILIES
    assert list(SUPPORTED_TINY_FAMILIES) == sorted(SUPPORTED_TINY_FAMILIES)


def test_family_modules_import_no_transformers() -> None:
    code = "import sys, model_adapters, videolens.testing; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_qwen_video_metadata_sets_time_step() -> None:
    _, processor = build_tiny_model("qwen2_5_vl")
    prompt = _prompt(processor)
    default = processor(text=[prompt], videos=[random_video(8)], return_tensors="pt")
    with_fps = processor(
        text=[prompt],
        videos=[random_video(8)],
        return_tensors="pt",
        video_metadata=[{"fps": 2.0, "total_num_frames": 8}],
    )
    assert default["video_grid_thw"].tolist() == [[4, 4, 4]]
    assert default["second_per_grid_ts"].tolist() == pytest.approx([2 / 24])
    assert with_fps["second_per_grid_ts"].tolist() == pytest.approx([1.0])


def test_unknown_family_raises() -> None:
    with pytest.raises(InputError, match="llava_next_video"):
        build_tiny_model("gpt2")
    with pytest.raises(InputError, match="qwen2_5_vl"):
        build_tiny_tokenizer("not_a_family")


def test_random_video_shape_and_reproducibility() -> None:
    video = random_video(5, 20, 30, seed=2)
    assert video.shape == (5, 20, 30, 3)
    assert video.dtype == np.uint8
    assert np.array_equal(video, random_video(5, 20, 30, seed=2))
    assert not np.array_equal(video, random_video(5, 20, 30, seed=3))
