"""The token layout agrees with what the processor produced."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videolens import LayoutError

from conftest import FAMILIES, facts, make_prompt, tiny


def test_video_group_is_exactly_the_video_tokens(model, prompt):
    ids = prompt.input_ids[0]
    expected = torch.nonzero(ids == model.cfg.video_token_id).flatten()
    assert torch.equal(prompt.layout["video"], expected)


def test_frames_follow_the_model_granularity(family, model, prompt):
    f = facts(family)  # the family's hand counts, from its module
    units, per_unit, extra, covers = f.units, f.tokens_per_unit, f.extra_tokens, f.frames_per_unit
    layout = prompt.layout
    assert layout.n_frames == units
    for t in range(units):
        assert len(layout.frame(t)) == per_unit
        assert len(layout.frames[t].input_frames) == covers
        assert layout.frames[t].input_frames[0] == t * covers
    assert len(layout["video_extra"]) == extra
    # each frame is contiguous, frames are in order (text may sit between them), and the
    # grid maps (t, h, w) to positions row-major
    for t in range(units):
        f = layout.frame(t)
        assert torch.equal(f, torch.arange(f[0], f[0] + len(f)))
        assert t == 0 or f[0] > layout.frame(t - 1)[-1]
    video_text = set(layout["video_text"].tolist())
    assert video_text == {int(p) for unit in layout.frames for p in unit.text}
    span = layout["video_span"]
    assert torch.equal(span, torch.arange(span[0], span[-1] + 1))  # frames + labels fill the span
    h, w = layout.grid(1).shape
    assert layout.patch(1, h - 1, w - 1) == int(layout.frame(1)[-1])
    assert layout.video_coords()[int(layout.grid(2)[0, 0])] == (2, 0, 0)
    # a frame is its prefix tokens (Video-LLaVA's CLS) followed by its grid
    assert torch.equal(layout.frame(2)[len(layout.frame(2)) - h * w :], layout.grid(2).flatten())


def test_timestamps_come_from_fps(family, model, prompt):
    covers = facts(family).frames_per_unit
    # unit 1 covers input frames covers .. 2 * covers - 1, 0.5 s apart at 2 fps: its time is their midpoint
    first, last = covers / 2.0, (2 * covers - 1) / 2.0
    assert prompt.layout.frames[1].timestamp == pytest.approx((first + last) / 2)


def test_text_groups_decode_to_their_text(model, prompt):
    tok = model.tokenizer
    ids = prompt.input_ids[0]
    layout = prompt.layout

    def decoded(group: str) -> str:
        return tok.decode(ids[layout[group]].tolist()).strip()

    assert decoded("system") == "Watch the video carefully."
    assert decoded("question_body") == "Question: What moved first?\nOptions:"
    assert decoded("question_text") == "What moved first?"
    assert decoded("question_labels").split() == ["Question:", "Options:"]
    assert decoded("option(0)") == "(A) the red square"
    assert decoded("option(B)") == "(B) the blue circle"
    assert decoded("option(2)") == "(C) nothing"
    tail = tok.decode(ids[torch.cat([layout["tail"], layout["last"]])].tolist())
    assert tail.strip().startswith("Only give the best option.")
    assert tail.endswith("Best option:(")
    assert tok.decode(ids[layout["last"]].tolist()) == "("
    assert layout["last"].tolist() == [prompt.seq_len - 1]


def test_a_layout_that_does_not_partition_the_sequence_is_refused(prompt):
    from videolens import TokenLayout

    layout = prompt.layout
    overlapping = dict(layout.leaves, tail=np.append(layout.leaves["tail"], layout.leaves["last"]))
    with pytest.raises(LayoutError, match="partition"):
        TokenLayout(layout.seq_len, layout.frames, overlapping)
    missing = {k: v for k, v in layout.leaves.items() if k != "tail"}
    with pytest.raises(LayoutError, match="partition"):
        TokenLayout(layout.seq_len, layout.frames, missing)
    question = set(layout["question"].tolist())
    assert question == set(layout["question_body"].tolist()) | set(layout["options"].tolist())
    body = set(layout["question_body"].tolist())
    assert body == set(layout["question_labels"].tolist()) | set(layout["question_text"].tolist())


def test_true_and_false_options(model):
    prompt = make_prompt(model, answer="the blue circle")
    layout = prompt.layout
    assert prompt.answer == 1
    assert torch.equal(layout["true_option"], layout.option(1))
    assert torch.equal(layout["false_options"], torch.cat([layout.option(0), layout.option(2)]).sort().values)


def test_padded_batch_layouts_are_shifted(model):
    short = make_prompt(model, question="Why?")
    long = make_prompt(model, question="Which object moved left after the blue circle appeared?")
    batch = model.batch([short, long])
    ids = batch.inputs["input_ids"]
    for row, layout in enumerate(batch.layouts):
        assert torch.equal(layout["video"], torch.nonzero(ids[row] == model.cfg.video_token_id).flatten())
        assert layout["last"].tolist() == [batch.seq_len - 1]
    pad = batch.seq_len - short.seq_len
    assert len(batch.layouts[0]["padding"]) == pad
    assert torch.equal(batch.layouts[0]["option(1)"], short.layout["option(1)"] + pad)


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_inputs_accept_arrays_tensors_and_pil(family):
    from PIL import Image

    from videolens.testing import random_video

    model = tiny(family)
    frames = random_video(8)
    base = model.prepare(frames, "What moved?", fps=2.0)
    as_tensor = model.prepare(torch.from_numpy(frames), "What moved?", fps=2.0)
    as_pil = model.prepare([Image.fromarray(f) for f in frames], "What moved?", fps=2.0)
    as_chw_float = model.prepare(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0, "What moved?", fps=2.0)
    for other in (as_tensor, as_pil, as_chw_float):
        assert torch.equal(other.input_ids, base.input_ids)
        key = "pixel_values_videos" if "pixel_values_videos" in base.inputs else "pixel_values"
        assert torch.allclose(other.inputs[key], base.inputs[key], atol=1e-2)
    assert base.layout.n_options == 0 and len(base.layout["options"]) == 0


def test_qwen_warns_about_assumed_fps():
    from videolens.testing import random_video

    model = tiny("qwen2_5_vl")
    with pytest.warns(UserWarning, match="assuming"):
        model.prepare(random_video(8), "What moved?")
