"""Prompt building on awkward chat templates, the paper's exact format, and absolute frame times."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from videolens import LayoutError, Video
from videolens.errors import InputError
from videolens.testing import random_video

from conftest import tiny

QUESTION = "What moved first?"
SYSTEM = "Watch the video carefully."

#: A Mistral-Instruct-like template: list content, and no system role (it raises on one).
NO_SYSTEM_ROLE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('Only user and assistant roles') }}"
    "{% endif %}[INST] {% for c in m['content'] %}{% if c['type'] == 'video' %}<video>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %} [/INST]{% endfor %}"
)
#: A template that silently drops the system turn.
DROPS_SYSTEM = (
    "{% for m in messages if m['role'] == 'user' %}USER: {% for c in m['content'] %}{% if c['type'] == 'video' %}"
    "<video>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %} ASSISTANT:"
)
#: String content only (a list content is a TypeError), no system role.
STRING_ONLY = (
    "{% for m in messages %}{% if m['role'] != 'user' %}{{ raise_exception('Only user and assistant roles') }}"
    "{% endif %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% endfor %}"
)
#: Renders image items only, like llava-hf's conversion-script templates.
IMAGE_ONLY = (
    "{% for m in messages %}{{ m['role'].upper() + ': ' }}{% for c in m['content'] | selectattr('type', 'equalto', "
    "'image') %}<image>\n{% endfor %}{% for c in m['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ c['text'] + ' ' }}{% endfor %}{% endfor %}ASSISTANT:"
)


def decoded(model, prompt, group: str) -> str:
    return model.tokenizer.decode(prompt.input_ids[0][prompt.layout[group]].tolist())


# ---- chat templates ------------------------------------------------------------------------
def test_a_template_without_a_system_role_gets_the_system_text_in_the_user_turn():
    model = tiny("llava_next_video")
    for template in (NO_SYSTEM_ROLE, DROPS_SYSTEM):
        prompt = model.prepare(random_video(8), QUESTION, system=SYSTEM, fps=2.0, chat_template=template)
        assert SYSTEM + "\n\n<video>\n" in prompt.text  # folded before the video, a blank line after it
        assert decoded(model, prompt, "system").strip() == SYSTEM
        assert prompt.layout.texts["system"] == SYSTEM
        assert decoded(model, prompt, "question_text").strip() == QUESTION
    assert prompt.text == f"USER: {SYSTEM}\n\n<video>\nQuestion: {QUESTION} ASSISTANT:"


def test_a_string_only_template_gets_the_video_placeholder_inside_the_string():
    model = tiny("llava_next_video")
    prompt = model.prepare(random_video(8), QUESTION, system=SYSTEM, fps=2.0, chat_template=STRING_ONLY)
    assert prompt.text == f"[INST] {SYSTEM}\n\n<video>\nQuestion: {QUESTION} [/INST]"
    ids = prompt.input_ids[0]
    assert torch.equal(prompt.layout["video"], torch.nonzero(ids == model.cfg.video_token_id).flatten())
    assert len(prompt.layout["video"]) == 8 * 4  # 8 frames of 2x2 pooled tokens
    assert decoded(model, prompt, "system").strip() == SYSTEM


def test_a_template_that_never_renders_the_video_is_refused_with_the_fix():
    model = tiny("llava_next_video")
    with pytest.raises(LayoutError, match="never renders the video") as info:
        model.prepare(random_video(8), QUESTION, system=SYSTEM, fps=2.0, chat_template=IMAGE_ONLY)
    assert "chat_template=" in str(info.value)


@pytest.mark.parametrize(
    "template",
    ["{{ messages[0]['content'] + 1 }}", "{% for m in messages %}{{ m['content'] }}", "{{ messages[5]['content'] }}"],
    ids=["type-error", "syntax-error", "undefined"],
)
def test_raw_template_errors_never_reach_the_user(template):
    model = tiny("llava_next_video")
    with pytest.raises(LayoutError, match="chat_template=") as info:
        model.prepare(random_video(8), QUESTION, system=SYSTEM, fps=2.0, chat_template=template)
    assert type(info.value) is LayoutError


# ---- the paper's format --------------------------------------------------------------------
def test_the_paper_format_is_the_papers_exact_string():
    model = tiny("llava_next_video")
    sys_text = (
        "Carefully watch the video and pay attention to the cause and sequence of events, the detail and movement "
        "of objects, and the action and pose of persons. Based on your observations, select the best option that "
        "accurately addresses the question."
    )
    options = ["the red square", "the blue circle"]
    prompt = model.prepare(random_video(8), QUESTION, options, fps=2.0, prompt_format="paper")
    expected = (
        f"{sys_text}\n USER: <video>\n USER: Question: {QUESTION}\nOptions:\n(A) the red square\n"
        "(B) the blue circle \nOnly give the best option. ASSISTANT:Best option:("
    )
    assert prompt.text == expected
    assert decoded(model, prompt, "last") == "("
    assert decoded(model, prompt, "system").strip() == sys_text
    assert decoded(model, prompt, "option(1)").strip() == "(B) the blue circle"


def test_the_paper_format_is_refused_where_it_does_not_apply():
    with pytest.raises(LayoutError, match="prompt_format='chat'"):
        tiny("qwen2_5_vl").prepare(random_video(8), QUESTION, ["a", "b"], fps=2.0, prompt_format="paper")
    model = tiny("llava_next_video")
    with pytest.raises(LayoutError, match="options"):
        model.prepare(random_video(8), QUESTION, fps=2.0, prompt_format="paper")
    with pytest.raises(LayoutError, match="chat_template"):
        model.prepare(random_video(8), QUESTION, ["a", "b"], fps=2.0, prompt_format="paper", chat_template="{{ x }}")
    with pytest.raises(LayoutError, match="prompt_format"):
        model.prepare(random_video(8), QUESTION, ["a", "b"], fps=2.0, prompt_format="mvbench")


# ---- absolute frame times ------------------------------------------------------------------
#: Eight frames 0.5 s apart, the first at 6 s (a clip cut from the middle of a video).
CLIP = Video(frames=random_video(8), timestamps=6.0 + 0.5 * np.arange(8))


def test_qwen3_vl_is_told_the_frames_absolute_times():
    model = tiny("qwen3_vl")
    prompt = model.prepare(CLIP, QUESTION)
    shown = re.findall(r"<(\d+\.\d) seconds>", model.tokenizer.decode(prompt.input_ids[0].tolist()))
    # one time per pair of frames, their midpoint (6.25 s is written 6.2: Python rounds half to even)
    assert shown == ["6.2", "7.2", "8.2", "9.2"]
    for t, unit in enumerate(prompt.layout.frames):
        assert unit.timestamp == 6.25 + t
        assert f"{unit.timestamp:.1f}" == shown[t]
        assert f"<{shown[t]} seconds>" in model.tokenizer.decode(prompt.input_ids[0][unit.text].tolist())


def test_videollama3_is_told_the_frames_absolute_times():
    model = tiny("videollama3")
    prompt = model.prepare(CLIP, QUESTION)
    shown = re.findall(r"Time (\d+\.\d)s:", model.tokenizer.decode(prompt.input_ids[0].tolist()))
    assert shown == ["6.0", "6.5", "7.0", "7.5", "8.0", "8.5", "9.0", "9.5"]
    assert [unit.timestamp for unit in prompt.layout.frames] == [6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0, 9.5]


def test_qwen2_5_vl_temporal_positions_follow_the_frames_real_spacing():
    model = tiny("qwen2_5_vl")
    one_second = Video(frames=random_video(8), timestamps=6.0 + np.arange(8.0))
    # the timestamps set the spacing: 2 frames per unit, 1 s apart
    prompt = model.prepare(one_second, QUESTION)
    assert torch.allclose(torch.as_tensor(prompt.inputs["second_per_grid_ts"]).float(), torch.tensor([2.0]))
    with pytest.raises(InputError, match="1 s apart"):  # a rate contradicting them would be dropped unseen
        model.prepare(one_second, QUESTION, fps=4.0)


def test_one_frame_is_repeated_by_qwen2_5_vl_and_by_qwen3_vl():
    model = tiny("qwen2_5_vl")
    prompt = model.prepare(random_video(1), QUESTION, fps=2.0)
    assert prompt.inputs["video_grid_thw"].tolist() == [[1, 4, 4]]  # one unit: the frame twice
    assert [unit.input_frames for unit in prompt.layout.frames] == [(0,)]
    with torch.no_grad():
        assert (model(prompt) - model.hf_model(**prompt.inputs).logits).abs().max() <= 1e-5
    qwen3 = tiny("qwen3_vl").prepare(random_video(1), QUESTION, fps=2.0)  # videolens repeats it for Qwen3-VL
    assert qwen3.inputs["video_grid_thw"].tolist() == [[1, 4, 4]]
    assert [unit.input_frames for unit in qwen3.layout.frames] == [(0,)]


@pytest.mark.parametrize("family", ["llava_next_video", "qwen2_5_vl"])
def test_a_processor_that_samples_the_frames_again_is_refused(family):
    model = tiny(family)
    video_processor = model.processor.video_processor
    settings = {"do_sample_frames": True, "num_frames": 4}
    saved = {name: getattr(video_processor, name, None) for name in settings}
    video = random_video(8)
    placeholder = "<video>" if family == "llava_next_video" else "<|vision_start|><|video_pad|><|vision_end|>"
    try:
        for name, value in settings.items():
            setattr(video_processor, name, value)
        seen = model.processor(text=[placeholder], videos=[video], return_tensors="pt")
        if family == "llava_next_video":
            frames_seen = seen["pixel_values_videos"].shape[1]
        else:
            frames_seen = int(seen["video_grid_thw"][0, 0]) * video_processor.temporal_patch_size
        assert frames_seen < 8  # the processor itself dropped frames
        with pytest.raises(LayoutError, match=f"kept {frames_seen} of the 8 frames"):
            model.prepare(video, QUESTION, ["a", "b"], system=SYSTEM, fps=2.0)
    finally:
        for name, value in saved.items():
            setattr(video_processor, name, value)
