"""Knockouts equal the reference method (HF eager + dense additive masks), and do what they say."""

from __future__ import annotations

import pytest
import torch

from videolens import EdgeKnockout, InterventionError, LayerRangeError
from videolens.engine.reference import reference_logits
from videolens.testing import random_video

from conftest import FAMILIES, make_prompt, tiny

TOL = 1e-5


def cross_frame_edges(layout):
    return [(torch.cat([layout.frame(s) for s in range(t)]), layout.frame(t)) for t in range(1, layout.n_frames)]


CASES = {
    "cross_frame": (
        lambda: EdgeKnockout.cross_frame(layers=[0, 1]),
        lambda lay: {0: cross_frame_edges(lay), 1: cross_frame_edges(lay)},
    ),
    "video_to_question": (
        lambda: EdgeKnockout("video", "question", layers=[1]),
        lambda lay: {1: [(lay["video"], lay["question"])]},
    ),
    "question_to_last": (
        lambda: EdgeKnockout("question", "last", layers=[0]),
        lambda lay: {0: [(lay["question"], lay["last"])]},
    ),
    "composition": (
        lambda: (
            EdgeKnockout("video", "last", layers=[0])
            + EdgeKnockout.cross_frame(layers=[1])
            + EdgeKnockout("question_body", "option(0)", layers=[0, 1])
            + EdgeKnockout(lambda lay: lay.frame(0), "tail", layers=[1])
        ),
        lambda lay: {
            0: [(lay["video"], lay["last"]), (lay["question_body"], lay.option(0))],
            1: [*cross_frame_edges(lay), (lay["question_body"], lay.option(0)), (lay.frame(0), lay["tail"])],
        },
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("family", FAMILIES)
def test_knockout_equals_reference_method(family, case):
    model = tiny(family, "eager")
    prompt = make_prompt(model)
    make_ko, make_edges = CASES[case]
    with torch.no_grad():
        ours = model(prompt, interventions=[make_ko()])
        clean = model(prompt)
    ref = reference_logits(model, prompt, make_edges(prompt.layout))
    assert (ours - ref).abs().max().item() <= TOL
    assert (ours - clean).abs().max().item() > 1e-4, "the knockout changed nothing"


@pytest.mark.parametrize("family", FAMILIES)
def test_knockout_with_pattern_hooks_matches_fused(family):
    model = tiny(family, "sdpa")
    prompt = make_prompt(model)
    ko = EdgeKnockout.cross_frame(layers=[0, 1]) + EdgeKnockout("video", "last", layers=[1])
    with torch.no_grad():
        fused = model(prompt, interventions=[ko])
        logits, cache = model.run_with_cache(prompt, interventions=[ko], names_filter=lambda n: "pattern" in n)
    assert (fused - logits).abs().max().item() <= TOL
    pattern = cache["blocks.1.attn.hook_pattern"][0]
    lay = prompt.layout
    assert pattern[:, lay["last"]][..., lay["video"]].abs().max() == 0
    assert pattern[:, lay.frame(3)][..., lay.frame(1)].abs().max() == 0
    assert pattern[:, lay.frame(3)][..., lay.frame(3)].sum() > 0  # within-frame attention kept


@pytest.mark.parametrize("family", FAMILIES)
def test_blocking_all_video_paths_makes_logits_video_independent(family):
    model = tiny(family)
    a = make_prompt(model, seed=1)
    b = model.prepare(
        random_video(8, seed=99), a.question, a.options, "Best option:(", "Watch the video carefully.", fps=2.0
    )

    def not_video_after_it(lay):  # every other position after the first video token (frame labels included)
        later = torch.arange(int(lay["video"].min()) + 1, lay.seq_len)
        return later[~torch.isin(later, lay["video"])]

    ko = EdgeKnockout("video", not_video_after_it, layers=range(model.cfg.n_layers))
    with torch.no_grad():
        la, lb = model(a, interventions=[ko]), model(b, interventions=[ko])
        clean_a, clean_b = model(a), model(b)
    n_video_end = int(a.layout["video_span"].max()) + 1
    assert (la[0, n_video_end:] - lb[0, n_video_end:]).abs().max().item() < 1e-5
    assert (clean_a[0, -1] - clean_b[0, -1]).abs().max().item() > 1e-4


def test_blocking_nothing_is_hf_own_forward():
    model = tiny("qwen2_5_vl")
    prompt = make_prompt(model)
    with torch.no_grad():
        hf = model.hf_model(**prompt.inputs).logits
        none = model(prompt, interventions=[])
    assert (none - hf).abs().max().item() <= TOL


def test_knockouts_apply_during_generation_and_batches():
    model = tiny("llava_next_video")
    prompt = make_prompt(model)
    ko = EdgeKnockout("video", "last", layers=[0, 1])
    first = model.generate(prompt, max_new_tokens=1, interventions=[ko], return_type="tokens")
    with torch.no_grad():
        assert first[0, 0].item() == model(prompt, interventions=[ko])[0, -1].argmax().item()
    other = make_prompt(model, seed=3, question="Which object was first to move in the video?")
    with torch.no_grad():
        batched = model([prompt, other], interventions=[ko])
        alone = model(other, interventions=[ko])
    assert (batched[1, -1] - alone[0, -1]).abs().max().item() < 1e-4


def test_knockout_errors():
    model = tiny("llava_onevision")
    prompt = make_prompt(model)
    with pytest.raises(InterventionError, match="empty"):
        model(prompt, interventions=[EdgeKnockout([], "last", layers=[0])])
    with pytest.raises(InterventionError, match="from themselves"):
        model(prompt, interventions=[EdgeKnockout("question", "option(1)", layers=[0])])
    with pytest.raises(LayerRangeError):
        model(prompt, interventions=[EdgeKnockout("video", "last", layers=[9])])
    with pytest.raises(InterventionError, match="nothing to attend"):
        everything_before = lambda lay: torch.arange(0, lay.seq_len - 1)  # noqa: E731
        model(
            prompt,
            interventions=[
                EdgeKnockout(everything_before, "last", layers=[0])
                + EdgeKnockout("last", "last", layers=[0], allow_self=True)
            ],
        )
    with pytest.raises(InterventionError, match="no layers"):
        EdgeKnockout("video", "last", layers=[])
    assert "video -/-> last @ layers 0..1" in repr(EdgeKnockout("video", "last", layers=range(2)))
