"""Bad input gets a clear error naming the fix, and leaves no hook behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videolens import (
    EdgeKnockout,
    GroupError,
    HookedVideoLLM,
    LayerRangeError,
    LayoutError,
    UnsupportedModelError,
    VideoDecodeError,
    VideoLensError,
)
from videolens.adapters import adapter_for
from videolens.testing import random_video

from conftest import make_prompt, tiny
from test_parity import ours_left_on


@pytest.fixture
def llava():
    return tiny("llava_next_video")


def assert_clean(model):
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())
    assert not ours_left_on(model.hf_model)


def test_zero_frames_and_wrong_shapes(llava):
    with pytest.raises(VideoDecodeError, match="zero frames"):
        llava.prepare(np.zeros((0, 32, 32, 3), dtype=np.uint8), "What?")
    with pytest.raises(VideoDecodeError, match=r"\(T, H, W, 3\)"):
        llava.prepare(np.zeros((32, 32, 3), dtype=np.uint8), "What?")
    with pytest.raises(VideoDecodeError, match="load_video"):
        llava.prepare("clip.mp4", "What?")


def test_question_and_options_errors(llava):
    with pytest.raises(LayoutError, match="question is empty"):
        llava.prepare(random_video(), "  ")
    with pytest.raises(LayoutError, match="not among the options"):
        llava.prepare(random_video(), "What?", options=["red", "blue"], answer="green")
    with pytest.raises(LayoutError, match="no options"):
        llava.prepare(random_video(), "What?", answer="red")
    with pytest.raises(LayoutError, match="non-empty"):
        llava.prepare(random_video(), "What?", options=["red", ""])


def test_unknown_and_missing_groups(llava):
    layout = make_prompt(llava).layout
    with pytest.raises(GroupError, match="Known groups: .*video"):
        layout["vidoe"]
    with pytest.raises(GroupError, match="has 3 options"):
        layout.option(5)
    with pytest.raises(GroupError, match="8 frames"):
        layout.frame(8)
    with pytest.raises(GroupError, match="Unknown group 'true_option'"):
        layout["true_option"]  # the prompt was built without an answer


def test_layer_out_of_range(llava):
    prompt = make_prompt(llava)
    with pytest.raises(LayerRangeError, match="layers 0..1"):
        llava(prompt, stop_at_layer=5)
    with pytest.raises(LayerRangeError, match="layer 7"):
        llava.run_with_hooks(prompt, fwd_hooks=[("blocks.7.hook_resid_post", lambda x, hook: x)])
    with pytest.raises(LayerRangeError, match="layers 0..1"):
        llava(prompt, interventions=[EdgeKnockout("video", "last", layers=[3])])
    with pytest.raises(VideoLensError, match="Did you mean"):
        llava.run_with_hooks(prompt, fwd_hooks=[("blocks.0.hook_resid_psot", lambda x, hook: x)])
    assert_clean(llava)


def test_unsupported_architecture_lists_the_supported_ones():
    with pytest.raises(UnsupportedModelError, match="LlavaNextVideoForConditionalGeneration.*Qwen2_5_VL"):
        adapter_for("GPT2LMHeadModel")
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(UnsupportedModelError, match="Supported architectures"):
        HookedVideoLLM.from_hf(gpt2, None)


def test_errors_inside_a_run_leave_no_hooks(llava):
    prompt = make_prompt(llava)
    with pytest.raises(GroupError):
        llava.run_with_hooks(
            prompt,
            fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: x)],
            interventions=[EdgeKnockout("nonexistent", "last", layers=[0])],
        )
    assert_clean(llava)
    with torch.no_grad():
        assert torch.allclose(llava(prompt), llava.hf_model(**prompt.inputs).logits, atol=1e-5)


def test_unknown_dtype():
    from videolens.core.hooked import _as_dtype

    with pytest.raises(VideoLensError, match="Unknown dtype"):
        _as_dtype("float13")


def test_videollama3_token_compression_is_refused():
    model = tiny("videollama3")
    static = np.repeat(random_video(1), 8, axis=0)  # later frames repeat the first: pruned
    processor = model.processor.video_processor
    processor.use_token_compression = True
    try:
        with pytest.raises(LayoutError, match="use_token_compression=False"):
            model.prepare(static, "What moved?", fps=2.0)
    finally:
        processor.use_token_compression = False
    assert model.prepare(static, "What moved?", fps=2.0).layout.n_frames == 8
