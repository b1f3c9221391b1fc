"""The sweep engine equals the plain path (one full forward per condition)."""

from __future__ import annotations

import pytest
import torch

from videolens import EdgeKnockout
from videolens.analyses import PAPER_PATHWAYS, Sample, effective_pathways, information_flow
from videolens.analyses.flow import TARGETS
from videolens.analyses.windows import STYLES, window_layers
from videolens.engine.sweep import SweepEngine
from videolens.testing import random_video

from conftest import FAMILIES, make_prompt, tiny

TOL = 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_engine_equals_full_forwards_for_every_target_and_window_style(family):
    model = tiny(family)
    prompt = make_prompt(model, answer=1)
    knockouts = [None]
    for pathways in TARGETS.values():
        for style in STYLES:
            for layer in range(model.cfg.n_layers):
                if blocked := window_layers(style, layer, 1, model.cfg.n_layers):
                    knockouts += [make(blocked) for make in pathways.values()]
    knockouts.append(EdgeKnockout("video", "last", layers=[1], heads=[0, 2]) + EdgeKnockout.cross_frame([0]))
    fast = SweepEngine(model, prompt, max_batch=7).last_logits(knockouts)
    with torch.no_grad():
        plain = torch.stack([model(prompt, interventions=[] if ko is None else [ko])[0, -1] for ko in knockouts])
    assert (fast - plain).abs().max().item() <= TOL


def test_engine_groups_conditions_by_where_they_start():
    model = tiny("llava_next_video")
    prompt = make_prompt(model)
    engine = SweepEngine(model, prompt)
    last = prompt.seq_len - 1
    conds = engine.compile([EdgeKnockout("video", "last", layers=[1]), EdgeKnockout.cross_frame([0, 1]), None])
    assert (conds[0].first_layer, conds[0].first_query) == (1, last)
    assert (conds[1].first_layer, conds[1].first_query) == (0, int(prompt.layout.frame(1)[0]))
    assert conds[2] is None


@pytest.mark.parametrize("style", list(STYLES))
def test_information_flow_engines_agree(style):
    model = tiny("qwen2_5_vl")
    samples = [
        Sample(random_video(8, seed=i), "Which shape moved first?", ["red", "blue", "green"], answer=i % 3)
        for i in range(2)
    ]
    kwargs = dict(window=1, window_style=style, sample_mode="all", progress=False, fps=2.0)
    for target in TARGETS:
        fast = information_flow(model, samples, target, engine="sweep", **kwargs)
        plain = information_flow(model, samples, target, engine="plain", **kwargs)
        assert len(fast) == len(plain) > 0
        assert (fast["p_new"] - plain["p_new"]).abs().max() <= TOL
        assert (fast["new_answer"] == plain["new_answer"]).all()


def test_effective_pathway_engines_agree():
    model = tiny("llava_onevision")
    samples = [
        Sample(random_video(8, seed=i), "Which shape moved first?", ["red", "blue", "green"], answer=0)
        for i in range(2)
    ]
    fast = effective_pathways(model, samples, PAPER_PATHWAYS["7b"], progress=False, engine="sweep")
    plain = effective_pathways(model, samples, PAPER_PATHWAYS["7b"], progress=False, engine="plain")
    assert fast.equals(plain)


def test_engine_memory_is_freed_when_the_engine_is_dropped():
    """Dropping an engine frees its clean-run store at once, without waiting for the garbage collector."""
    import gc
    import weakref

    model = tiny("llava_next_video")
    engine = SweepEngine(model, make_prompt(model))
    engine.last_logits([EdgeKnockout("video", "last", layers=[1]), EdgeKnockout.cross_frame([0, 1])])
    store = weakref.ref(engine.resid_pre[0])
    gc.disable()
    try:
        del engine
        assert store() is None
    finally:
        gc.enable()
