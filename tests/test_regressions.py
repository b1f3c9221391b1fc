"""Regressions for results that were silently wrong: each checked against an independent computation."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from videolens import EdgeKnockout, InterventionError
from videolens.analyses.correctness import AccuracyCounter, is_correct
from videolens.engine.sweep import SweepEngine

from conftest import make_prompt, tiny

TOL = 1e-5


def _first_blocked_row_by_hand(model, prompt, ko) -> int:
    """The first query row any layer of ``ko`` blocks, from the plain path's own masks."""
    n = prompt.seq_len
    _, per_layer, blocked = model._allowed(model.batch(prompt), [ko])
    rows = [int(m.any(-1).any(0).any(0).nonzero()[0]) for m in blocked.values() if m.any()]
    return min(rows) if rows else n


def test_reused_engine_with_callable_and_positional_groups_matches_plain_every_time():
    """Knockout-specific masks die after each call and their ids get reused; the engine must not mix them up."""
    model = tiny("llava_next_video")
    prompt = make_prompt(model, answer=1)
    engine = SweepEngine(model, prompt)
    layout = prompt.layout
    early_frame = layout.frame(1).tolist()
    last = layout["last"].tolist()
    with torch.no_grad():
        for i in range(24):
            if i % 2:
                ko = EdgeKnockout(lambda lay: lay["video"], lambda lay: lay["last"], layers=[i % 2])
            else:
                ko = EdgeKnockout(layout.frame(0).tolist(), early_frame, layers=[0, 1])
            decoy = EdgeKnockout(layout["system"].tolist(), last, layers=[1])
            expected = [_first_blocked_row_by_hand(model, prompt, k) for k in (ko, decoy)]
            compiled = engine.compile([ko, decoy])
            assert [c.first_query for c in compiled] == expected
            fast = engine.last_logits([ko, decoy])
            plain = torch.stack([model(prompt, interventions=[k])[0, -1] for k in (ko, decoy)])
            assert (fast - plain).abs().max().item() <= TOL
            gc.collect()


def test_padded_batch_refuses_exactly_where_the_single_prompt_refuses():
    """Padding keys are not something a query can attend to."""
    model = tiny("llava_next_video")
    short = make_prompt(model, question="Why?")
    long = make_prompt(model, question="Which of the shapes in the video moved first, and why did it move?")
    assert short.seq_len < long.seq_len
    starve = EdgeKnockout("template", "template", layers=[0], allow_self=True)  # BOS has only itself
    with pytest.raises(InterventionError, match="nothing to attend"):
        model(short, interventions=[starve])
    with pytest.raises(InterventionError, match="nothing to attend"):
        model([short, long], interventions=[starve])
    with pytest.raises(InterventionError, match="nothing to attend"):
        model([long, short], interventions=[starve])
    fine = EdgeKnockout("video", "last", layers=[1])
    with torch.no_grad():
        batched = model([short, long], interventions=[fine])[:, -1]
        alone = torch.stack([model(p, interventions=[fine])[0, -1] for p in (short, long)])
    assert (batched - alone).abs().max().item() <= 1e-4


def _hf_greedy(model, prompt, max_new_tokens, eos_ids):
    """Hugging Face's own greedy generation of one prompt, cut after its first eos."""
    inputs = {k: v for k, v in prompt.inputs.items()}
    with torch.no_grad():
        out = model.hf_model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos_ids, pad_token_id=0
        )
    new = out[0, prompt.seq_len :].tolist()
    for i, tok in enumerate(new):
        if tok in eos_ids:
            return new[: i + 1]
    return new


def test_generate_stops_on_the_generation_configs_eos_list_and_pads_with_id_0():
    model = tiny("qwen2_5_vl")
    assert model.tokenizer.pad_token_id == 0
    prompts = [make_prompt(model, seed=s) for s in (0, 1)]
    free = model.generate(prompts, max_new_tokens=6, return_type="tokens", stop_at_eos=False)
    stop_token = int(free[0, 2])  # make the third token of the first prompt end its turn
    config = model.hf_model.generation_config
    saved = config.eos_token_id
    try:
        config.eos_token_id = [model.tokenizer.eos_token_id, stop_token]
        assert set(model.eos_token_ids()) == {model.tokenizer.eos_token_id, stop_token}
        tokens = model.generate(prompts, max_new_tokens=6, return_type="tokens")
        for row, prompt in zip(tokens.tolist(), prompts):
            reference = _hf_greedy(model, prompt, 6, model.eos_token_ids())
            assert row[: len(reference)] == reference
            assert all(t == 0 for t in row[len(reference) :])  # finished rows hold the pad id, 0
    finally:
        config.eos_token_id = saved


def test_correct_is_the_decoded_letter_case_insensitively():
    tok = tiny("llava_next_video").tokenizer
    upper, lower = tok.convert_tokens_to_ids("B"), tok.convert_tokens_to_ids("b")
    assert is_correct(tok, upper, "B") and is_correct(tok, lower, "B")
    assert not is_correct(tok, tok.convert_tokens_to_ids("C"), "B")
    counter = AccuracyCounter()
    for correct, kept in [(True, True), (False, False), (True, True), (False, False)]:
        counter.add(correct, kept)
    assert counter.attrs() == {"n_samples": 4, "n_analysed": 2, "base_accuracy": 50.0}


def test_an_odd_frame_count_names_only_frames_that_exist():
    model = tiny("qwen2_5_vl")
    from videolens.testing import random_video

    prompt = model.prepare(random_video(7), "What moved?", fps=2.0)
    covered = [unit.input_frames for unit in prompt.layout.frames]
    assert covered == [(0, 1), (2, 3), (4, 5), (6,)]  # the processor repeats frame 6 to fill the last pair
    assert prompt.layout.frames[-1].timestamp == pytest.approx(6 / 2.0)


def test_qwen3_vl_takes_a_single_frame_as_its_processor_would_pad_it():
    from videolens.testing import random_video

    model = tiny("qwen3_vl")
    prompt = model.prepare(random_video(1), "What is there?", fps=2.0)
    assert [unit.input_frames for unit in prompt.layout.frames] == [(0,)]
    with torch.no_grad():
        hf = model.hf_model(**prompt.inputs).logits
        assert (model(prompt) - hf).abs().max().item() <= TOL
    two = model.prepare(np.repeat(random_video(1), 2, axis=0), "What is there?", fps=2.0)
    assert torch.equal(two.inputs["pixel_values_videos"], prompt.inputs["pixel_values_videos"])


@pytest.mark.parametrize("family, closing", [("qwen3_vl", "<|vision_end|>"), ("internvl", "</img>")])
def test_a_units_closing_token_belongs_to_that_unit(family, closing):
    from videolens.testing import random_video

    model = tiny(family)
    prompt = model.prepare(random_video(8), "What moved?", fps=2.0)
    ids = prompt.input_ids[0]
    closing_id = model.tokenizer.convert_tokens_to_ids(closing)
    for unit in prompt.layout.frames:
        text = ids[unit.text].tolist()
        last_grid = int(unit.positions.max())
        assert ids[last_grid + 1] == closing_id and last_grid + 1 in unit.text.tolist()  # closes this unit
        assert text.count(closing_id) == 1


def test_a_templates_default_system_text_is_the_system_group():
    from videolens.testing import random_video

    model = tiny("qwen2_5_vl")  # its template writes "You are a helpful assistant." when no system turn is given
    prompt = model.prepare(random_video(8), "What moved?", fps=2.0)
    ids = prompt.input_ids[0]
    assert model.tokenizer.decode(ids[prompt.layout["system"]]) == "You are a helpful assistant."
    assert "helpful" not in model.tokenizer.decode(ids[prompt.layout["template"]])
