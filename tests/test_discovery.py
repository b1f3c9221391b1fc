"""Pathway discovery: attribution against finite differences and exact knockouts, the search's counts and claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videolens.analyses.pathways import PAPER_PATHWAYS, count_edges, pathway_knockout
from videolens.discovery import (
    PAIRS,
    GroupEdge,
    GroupPathway,
    blocked_share,
    candidate_edges,
    discover_pathway,
    edge_attribution,
    edges_knockout,
    exact_edge_effects,
    metric_of,
    pair_masks,
    spearman,
)
from videolens.discovery.attribution import answer_token
from videolens.errors import InputError

from conftest import make_prompt, tiny

FAMILY = "llava_next_video"


@pytest.fixture(scope="module")
def setup():
    model = tiny(FAMILY)
    prompt = make_prompt(model, answer=1)
    return model, prompt


def test_pairs_partition_the_causal_entries_between_nodes(setup):
    model, prompt = setup
    masks = pair_masks(prompt.layout)
    total = sum(m.int() for m in masks.values())
    assert int(total.max()) == 1  # no entry in two pairs
    lay = prompt.layout
    nodes = torch.cat([lay[g] for g in ("system", "video_block", "question_body", "options", "tail", "last")])
    causal = torch.ones(lay.seq_len, lay.seq_len, dtype=torch.bool).tril()
    expect = torch.zeros_like(causal)
    expect[nodes[:, None], nodes[None, :]] = True
    # inside the video node only frame-to-frame entries are pairs (cross_frame, within_frame);
    # a video token outside every frame (the closing vision token) is cut off as a key instead
    block = lay["video_block"]
    in_frames = torch.cat([torch.cat([lay.frame(t), torch.as_tensor(u.text)]) for t, u in enumerate(lay.frames)])
    outside = block[~torch.isin(block, in_frames)]
    assert len(outside)  # this template writes a token after the video
    expect[outside[:, None], block[None, :]] = False
    expect[block[:, None], outside[None, :]] = False
    assert torch.equal(total.bool(), expect & causal)  # and every node-to-node entry in one


def _finite_difference(model, prompt, edge: GroupEdge, target: int, eps: float = 1e-3) -> float:
    """d metric / d t of pattern(t) = p + t (p_knocked - p) at the edge's layer, t -> 0 (central difference)."""
    mask = pair_masks(prompt.layout)[edge.pair]

    def run(t: float) -> float:
        def hook(p, hook):
            r = (p * mask).sum(-1, keepdim=True)
            knocked = torch.where(mask, torch.zeros_like(p), p / (1 - r))
            return p + t * (knocked - p)

        with torch.no_grad():
            logits = model.run_with_hooks(prompt, fwd_hooks=[(f"blocks.{edge.layer}.attn.hook_pattern", hook)])
        return float(metric_of(logits[0, -1].double(), target, "logprob"))

    return (run(eps) - run(-eps)) / (2 * eps)


def test_linear_attribution_is_the_derivative_along_the_knockout(setup):
    model, prompt = setup
    target = answer_token(model, prompt)
    edges = [GroupEdge("video->last", 1), GroupEdge("cross_frame", 0), GroupEdge("options->last", 1)]
    est = edge_attribution(model, prompt, edges).sum(-1)
    fd = torch.tensor([_finite_difference(model, prompt, e, target) for e in edges])
    assert torch.allclose(est, fd.float(), rtol=2e-2, atol=5e-4), (est, fd)  # fp32 central difference


def test_attribution_of_a_weak_edge_matches_its_exact_knockout(setup):
    model, prompt = setup
    edges = candidate_edges([prompt.layout], model.cfg.n_layers)
    est = edge_attribution(model, prompt, edges).sum(-1)
    exact = exact_edge_effects(model, prompt, edges)
    small = exact.abs() < 0.02  # near-linear regime
    assert small.sum() > 5
    assert float((est[small] - exact[small]).abs().median()) < 1e-3  # most weak edges: first order holds
    assert spearman(est, exact) > 0.5


def test_exact_effects_equal_plain_forwards_with_the_knockout(setup):
    model, prompt = setup
    target = answer_token(model, prompt)
    base = [GroupEdge("system->last", 0)]
    edge = GroupEdge("video->question_body", 1)
    got = exact_edge_effects(model, prompt, [edge], base=base)[0]
    with torch.no_grad():
        lp = model(prompt, interventions=[edges_knockout([*base, edge], 8)])[0, -1].log_softmax(-1)[target]
        lp0 = model(prompt, interventions=[edges_knockout(base, 8)])[0, -1].log_softmax(-1)[target]
    assert abs(float(got) - float(lp - lp0)) < 1e-4


def test_ig_and_per_head_scores_have_the_right_shape(setup):
    model, prompt = setup
    edges = candidate_edges([prompt.layout], model.cfg.n_layers)[:10]
    ig = edge_attribution(model, prompt, edges, method="ig", steps=2, metric="log_odds")
    assert ig.shape == (10, model.cfg.n_heads) and torch.isfinite(ig).all()
    with pytest.raises(InputError):
        edge_attribution(model, prompt, edges, method="bogus")


def test_group_pathway_views_round_trip(setup):
    model, prompt = setup
    edges = candidate_edges([prompt.layout], model.cfg.n_layers)
    blocked = frozenset(e for e in edges if e.layer >= 1 or e.pair == "cross_frame")
    pw = GroupPathway(model.cfg.n_layers, frozenset(edges), blocked)
    assert GroupPathway.from_json(pw.to_json()) == pw
    assert pw.layer_ranges()["video->last"] == [(0, 1)] and pw.layer_ranges()["cross_frame"] == []
    spec = pw.to_pathway_spec()
    assert spec.video_to_question == (0, 1) and spec.inter_frame == (0, 0)
    share = blocked_share(pw.knockout(prompt.layout), prompt.layout, model.cfg.n_layers)
    assert all(share[(e.pair, e.layer)] == (1.0 if e in blocked else 0.0) for e in edges)


def test_paper_spec_on_the_pair_grid(setup):
    model, prompt = setup
    n = model.cfg.n_layers
    share = blocked_share(pathway_knockout(PAPER_PATHWAYS["7b"].scaled(n), n), prompt.layout, n)
    assert share[("video->last", 0)] == 1.0 and share[("system->video", 0)] == 0.0
    assert set(p for p, _ in share) <= set(PAIRS)


def test_search_counts_and_extremes(setup):
    """Tolerance 100 blocks everything; the reported share equals count_edges and a hand count."""
    model, prompt = setup
    prompts = [prompt, make_prompt(model, seed=1, answer=0)]
    found = discover_pathway(model, prompts, tolerance=100, criterion="prediction", progress=False, batch=4)
    assert found.pathway.blocked == found.pathway.candidates
    rows = found.rows.set_index("condition")
    lay = prompt.layout
    n, n_layers = lay.seq_len, model.cfg.n_layers
    ko = found.pathway.knockout(lay)
    by_hand = sum(int(m.sum()) for m in pair_masks(lay).values()) * n_layers
    assert count_edges(ko, lay, n_layers, model.cfg.n_heads) == (
        n * (n + 1) // 2 * n_layers - by_hand,
        rows.iloc[0]["total_edges"],
    )
    first = found.rows[found.rows.sample_id == found.rows.sample_id.iloc[0]].set_index("condition")
    assert first.loc["discovered", "kept_edges"] == n * (n + 1) // 2 * n_layers - by_hand
    assert abs(first.loc["random", "kept_edges"] - first.loc["discovered", "kept_edges"]) <= n_layers
    assert found.n_brute_force_per_sample == len(found.pathway.candidates)


def test_search_with_no_tolerance_keeps_every_prediction(setup):
    model, prompt = setup
    prompts = [make_prompt(model, seed=s, answer=s % 3) for s in range(3)]
    found = discover_pathway(model, prompts, tolerance=0, criterion="prediction", progress=False, batch=4, max_rounds=3)
    engine_answers = found.rows.pivot(index="sample_id", columns="condition", values="answer")
    assert (engine_answers["discovered"] == engine_answers["full"]).all()
    assert found.curve["ok"].any() and len(found.pathway.blocked) > 0
    assert found.n_exact_per_sample == len(found.curve)
    final = found.summary.query("condition == 'discovered'")["suppressed_percent"].mean()
    assert np.isclose(found.curve[found.curve.ok]["suppressed_percent"], final).any()  # a confirmed point


@pytest.mark.parametrize("family", ["internvl", "qwen3_vl", "videollama3", "llava_next_video"])
def test_blocking_every_pair_out_of_the_video_cuts_the_video_off(family):
    """Frame labels, timestamps and the closing vision token read the frames; as part of the
    video node, blocking every edge out of it leaves the answer independent of the video."""
    model = tiny(family)
    a, b = make_prompt(model, seed=1, answer=0), make_prompt(model, seed=2, answer=0)
    n = model.cfg.n_layers
    edges = [e for e in candidate_edges([a.layout, b.layout], n) if e.pair.startswith("video->")]
    assert {e.pair for e in edges} >= {"video->question_body", "video->options", "video->last"}
    ko = edges_knockout(edges, a.layout.n_frames)
    with torch.no_grad():
        clean = [model(p)[0, -1] for p in (a, b)]
        cut = [model(p, interventions=[ko])[0, -1] for p in (a, b)]
    assert not torch.allclose(clean[0], clean[1], atol=1e-4)
    torch.testing.assert_close(cut[0], cut[1], atol=1e-6, rtol=0)
