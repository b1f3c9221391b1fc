"""Activation patching: the batched grids equal one full forward per cell, and attribution tracks exact patching."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
import transformer_lens.patching as tl_patching

from videolens import HookedVideoLLM
from videolens.analyses.common import option_token_ids, prompt_for
from videolens.data.synthetic import make_sample
from videolens.errors import InputError
from videolens.patching import (
    attribution_patch,
    check_same_layout,
    get_act_patch_attn_head_out_all_pos,
    get_act_patch_attn_head_out_by_pos,
    get_act_patch_attn_head_pattern_by_pos,
    get_act_patch_resid_pre,
    patch_cells,
    patch_frames,
)

from conftest import make_prompt, tiny

TOL = 1e-5


def _pair(family="llava_next_video"):
    model = tiny(family)
    clean, corrupted = make_prompt(model, seed=0, answer=0), make_prompt(model, seed=1, answer=0)
    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
    return model, clean, corrupted, cache


def _metric(logits):
    return logits[0, -1, 5] - logits[0, -1, 7]


def _one_forward(model, corrupted, name, edit):
    """The plain way: one full forward of the corrupted prompt with one patching hook."""
    with torch.no_grad():
        return float(_metric(model.run_with_hooks(corrupted, fwd_hooks=[(name, edit)])))


@pytest.mark.parametrize("family", ["llava_next_video", "qwen2_5_vl", "qwen3_vl"])
def test_resid_pre_grid_equals_one_forward_per_cell(family):
    model, _, corrupted, cache = _pair(family)
    grid = get_act_patch_resid_pre(model, corrupted, cache, _metric)
    assert grid.shape == (model.cfg.n_layers, corrupted.seq_len)
    rng = np.random.default_rng(0)
    for layer, pos in zip(rng.integers(0, model.cfg.n_layers, 12), rng.integers(0, corrupted.seq_len, 12)):
        name = f"blocks.{layer}.hook_resid_pre"

        def edit(x, hook, pos=pos, name=name):
            x = x.clone()
            x[:, pos] = cache[name][:, pos]
            return x

        assert grid[layer, pos].item() == pytest.approx(_one_forward(model, corrupted, name, edit), abs=TOL)


def test_head_grids_equal_one_forward_per_cell():
    model, _, corrupted, cache = _pair()
    by_pos = get_act_patch_attn_head_out_by_pos(model, corrupted, cache, _metric)
    all_pos = get_act_patch_attn_head_out_all_pos(model, corrupted, cache, _metric)
    pattern = get_act_patch_attn_head_pattern_by_pos(model, corrupted, cache, _metric)
    rng = np.random.default_rng(1)
    for _ in range(8):
        layer, pos, head = (int(rng.integers(0, m)) for m in (model.cfg.n_layers, corrupted.seq_len, model.cfg.n_heads))
        z, pat = f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.attn.hook_pattern"

        def edit_z(x, hook, pos=pos, head=head, z=z):
            x = x.clone()
            x[:, pos, head] = cache[z][:, pos, head]
            return x

        def edit_all(x, hook, head=head, z=z):
            x = x.clone()
            x[:, :, head] = cache[z][:, :, head]
            return x

        def edit_pattern(x, hook, pos=pos, head=head, pat=pat):
            x = x.clone()
            x[:, head, pos] = cache[pat][:, head, pos]
            return x

        assert by_pos[layer, pos, head].item() == pytest.approx(_one_forward(model, corrupted, z, edit_z), abs=TOL)
        assert all_pos[layer, head].item() == pytest.approx(_one_forward(model, corrupted, z, edit_all), abs=TOL)
        assert pattern[layer, pos, head].item() == pytest.approx(
            _one_forward(model, corrupted, pat, edit_pattern), abs=TOL
        )


def test_video_units_equal_one_forward_per_cell():
    model, _, corrupted, cache = _pair("video_llava")
    frames = patch_frames(model, corrupted, cache, _metric)
    assert len(frames) == model.cfg.n_layers * corrupted.layout.n_frames
    for row in frames.sample(5, random_state=0).itertuples():
        positions = corrupted.layout[row.group]
        name = f"blocks.{row.layer}.hook_resid_pre"

        def edit(x, hook, positions=positions, name=name):
            x = x.clone()
            x[:, positions] = cache[name][:, positions]
            return x

        assert row.metric == pytest.approx(_one_forward(model, corrupted, name, edit), abs=TOL)
    cells = patch_cells(model, corrupted, cache, _metric, layers=[1])
    grid = corrupted.layout.grid(2)
    cell = cells[(cells.t == 2) & (cells.h == 1) & (cells.w == 3)].iloc[0]
    assert cell.group == "<f2 r1 c3>" and cell.n_positions == 1
    pos = int(grid[1, 3])

    def edit_cell(x, hook):
        x = x.clone()
        x[:, pos] = cache["blocks.1.hook_resid_pre"][:, pos]
        return x

    assert cell.metric == pytest.approx(_one_forward(model, corrupted, "blocks.1.hook_resid_pre", edit_cell), abs=TOL)


def test_transformerlens_own_patching_takes_a_video_prompt():
    model, _, corrupted, cache = _pair()
    with torch.no_grad():
        theirs = tl_patching.get_act_patch_resid_pre(model, corrupted, cache, _metric)
    ours = get_act_patch_resid_pre(model, corrupted, cache, _metric)
    assert (theirs.cpu() - ours).abs().max().item() <= TOL


def test_prompts_that_do_not_line_up_are_refused_by_name():
    model = tiny("llava_next_video")
    clean = make_prompt(model, question="Why?")
    other = make_prompt(model, question="Which shape moved first, and why?")
    with pytest.raises(
        InputError, match=r"differ: question_\w+ \(\d+ vs \d+ tokens\)$|differ: question_\w+ \(\d+ vs \d+ tokens\)\."
    ):
        check_same_layout(clean, other)
    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
    with pytest.raises(InputError, match="line up"):
        get_act_patch_resid_pre(model, other, cache, _metric)


@functools.cache
def _toy_direction_pair():
    model = HookedVideoLLM.from_pretrained("videolens/toy-moving-shapes")
    clean_sample = make_sample("direction", np.random.default_rng(3))
    corrupted_sample = make_sample("direction", np.random.default_rng(4))
    clean = prompt_for(model, clean_sample)
    corrupted = prompt_for(
        model, dataclasses.replace(clean_sample, video=corrupted_sample.video)
    )  # only the video differs
    return model, clean, corrupted


def test_attribution_patching_ranks_heads_as_exact_patching_does():
    model, clean, corrupted = _toy_direction_pair()
    check_same_layout(clean, corrupted)
    ids = option_token_ids(model, clean)
    true_id = ids[clean.answer]

    def metric(logits):
        return logits[0, -1].log_softmax(-1)[true_id]

    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
    exact = get_act_patch_attn_head_out_all_pos(model, corrupted, cache, metric)
    with torch.no_grad():
        base = float(metric(model(corrupted)))
    estimate = attribution_patch(model, clean, corrupted, metric, activation="z").sum(1)  # (layer, head)
    effect = (exact - base).flatten().numpy()
    approx = estimate.flatten().numpy()
    ranks = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    spearman = np.corrcoef(ranks(effect), ranks(approx))[0, 1]
    print(f"toy direction task: Spearman(attribution, exact) over {effect.size} heads = {spearman:.2f}")
    assert spearman > 0.5
