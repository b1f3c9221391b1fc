"""The paper's analyses run end to end on tiny models and compute what they say."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from videolens import EdgeKnockout, HookedVideoLLM, LayoutError
from videolens.analyses import (
    PAPER_PATHWAYS,
    PathwaySpec,
    Sample,
    answer_probability,
    attention_maps,
    count_edges,
    effective_pathways,
    flow_accuracy,
    frame_attention,
    information_flow,
    pathway_knockout,
    pathway_summary,
    random_knockout,
    video_token_attention,
)
from videolens.analyses.common import option_token_ids, prompt_for
from videolens.analyses.flow import TARGETS
from videolens.analyses.windows import bottom_up, center, inverse, top_down, window_layers
from videolens.engine.reference import dense_allowed
from videolens.interventions.knockout import blocked_masks
from videolens.testing import random_video
from videolens.viz import (
    plot_answer_probability,
    plot_attention_grid,
    plot_attention_maps,
    plot_effective_pathways,
    plot_flow_accuracy,
    plot_information_flow,
    write_report,
)

from conftest import FAMILIES, make_prompt, tiny


def samples(n: int = 3):
    opts = ["red square", "blue circle", "green star"]
    return [
        Sample(random_video(8, seed=i), "Which shape moved first?", opts, answer=i % 3, task="order") for i in range(n)
    ]


def test_windows_match_the_reference():
    assert center(0, 9, 32) == list(range(0, 5))
    assert center(10, 9, 32) == list(range(6, 15))
    assert center(31, 9, 32) == list(range(27, 32))
    assert inverse(10, 9, 32) == [x for x in range(32) if not 6 <= x < 15]
    assert top_down(30, 9, 32) == [30, 31] and bottom_up(1, 9, 32) == [0, 1]
    with pytest.raises(Exception, match="Unknown window style"):
        window_layers("middle", 0, 9, 32)


@pytest.mark.parametrize("target", ["cross-frame", "vql-to-ql", "question-and-options-to-last", "vq-to-true-opt"])
def test_information_flow_targets(tmp_path, target):
    model = tiny("llava_next_video")
    out = tmp_path / "flow.jsonl"
    df = information_flow(model, samples(2), target, window=1, sample_mode="all", out=out, progress=False, fps=2.0)
    n_paths = {"cross-frame": 1, "vql-to-ql": 4}.get(target, 3)
    assert len(df) == 2 * n_paths * model.cfg.n_layers
    assert len(out.read_text().splitlines()) == len(df)  # written as it went
    assert json.loads(out.read_text().splitlines()[0])["target"] == target
    # the last row recomputed with a plain forward (no sweep engine) and the formula by hand
    row = df.iloc[-1]
    assert row["layers_blocked"] == [row["layer"]]
    prompt = prompt_for(model, samples(2)[1], fps=2.0)
    with torch.no_grad():
        clean = model(prompt)[0, -1].softmax(-1)
        knocked = model(prompt, interventions=[TARGETS[target][row["pathway"]]([row["layer"]])])[0, -1].softmax(-1)
    answer = int(clean.argmax())
    assert row["p_new"] == pytest.approx(float(knocked[answer]), rel=1e-4, abs=1e-7)
    assert row["relative_diff"] == pytest.approx((float(knocked[answer]) / float(clean[answer]) - 1) * 100, abs=1e-3)
    acc = flow_accuracy(df)
    assert set(acc["n"]) == {2}
    assert plot_information_flow(df).data and plot_flow_accuracy(acc, df.attrs["base_accuracy"]).data


def test_information_flow_row_equals_direct_knockout():
    model = tiny("qwen2_5_vl")
    sample = samples(1)[0]
    df = information_flow(
        model, [sample], "vql-to-ql", window=3, layers=[1], sample_mode="all", progress=False, fps=2.0
    )
    row = df[df["pathway"] == "Video -/-> Last"].iloc[0]
    prompt = prompt_for(model, sample, fps=2.0)
    with torch.no_grad():
        clean = model(prompt)[0, -1].softmax(-1)
        new = model(prompt, interventions=[EdgeKnockout("video", "last", layers=[0, 1])])[0, -1].softmax(-1)
    answer = int(clean.argmax())
    assert row["p_base"] == pytest.approx(float(clean[answer]), rel=1e-5)
    assert row["p_new"] == pytest.approx(float(new[answer]), rel=1e-5)
    assert row["relative_diff"] == pytest.approx(
        (float(new[answer]) - float(clean[answer])) / float(clean[answer]) * 100, rel=1e-4
    )


def _samples_with_known_correctness(model, pattern):
    """Samples whose truth is (True) or is not (False) the clean model's own top-1 letter, by hand."""
    from videolens.data.synthetic import make_dataset

    out = []
    for sample, right in zip(make_dataset(len(pattern), seed=11, tasks=["color"]), pattern):
        prompt = prompt_for(model, sample)
        ids = option_token_ids(model, prompt)
        with torch.no_grad():
            top = int(model(prompt)[0, -1].argmax())
        assert top in ids, "the toy model answers with an option letter"
        sample.answer = ids.index(top) if right else (ids.index(top) + 1) % len(ids)
        out.append(sample)
    return out


def test_sample_mode_filters_with_honest_denominator():
    model = HookedVideoLLM.from_pretrained("videolens/toy-moving-shapes")
    data = _samples_with_known_correctness(model, [True, False, True])
    kw = dict(window=2, layers=[0], progress=False)
    all_df = information_flow(model, data, "cross-frame", sample_mode="all", **kw)
    correct = information_flow(model, data, "cross-frame", sample_mode="correct", **kw)
    wrong = information_flow(model, data, "cross-frame", sample_mode="wrong", **kw)
    ids = [sample.id for sample in data]
    assert sorted(correct["sample_id"].unique()) == [ids[0], ids[2]] and list(wrong["sample_id"].unique()) == [ids[1]]
    assert len(correct) + len(wrong) == len(all_df)
    for df in (all_df, correct, wrong):  # clean accuracy over every sample seen, whatever was kept
        assert df.attrs["n_samples"] == 3 and df.attrs["base_accuracy"] == pytest.approx(200 / 3)
    assert (correct.attrs["n_analysed"], wrong.attrs["n_analysed"]) == (2, 1)
    probs = answer_probability(model, data, sample_mode="correct", progress=False)
    assert probs.attrs["base_accuracy"] == pytest.approx(200 / 3) and probs.attrs["n_analysed"] == 2


def test_answer_probability_last_layer_is_the_model_output():
    model = tiny("llava_onevision")
    df = answer_probability(model, samples(2), sample_mode="all", apply_final_norm=False, progress=False, fps=2.0)
    assert len(df) == 2 * model.cfg.n_layers * 3
    sample = samples(1)[0]
    prompt = prompt_for(model, sample, fps=2.0)
    with torch.no_grad():
        probs = model(prompt)[0, -1].softmax(-1)
    last = df[(df["sample_id"] == "0") & (df["layer"] == model.cfg.n_layers - 1)]
    from videolens.analyses import option_token_ids

    ids = option_token_ids(model, prompt)
    assert last["probability"].tolist() == pytest.approx([100 * float(probs[i]) for i in ids], rel=1e-4)
    assert plot_answer_probability(df).data


def test_edge_count_matches_brute_force():
    model = tiny("llava_next_video")
    sample = samples(1)[0]
    prompt = model.prepare(sample.video, sample.question, sample.options, "Best option:(", answer=0, fps=2.0)
    lay, n_layers = prompt.layout, model.cfg.n_layers
    spec = PAPER_PATHWAYS["7b"].scaled(n_layers)
    ko = pathway_knockout(spec, n_layers)
    kept, total = count_edges(ko, lay, n_layers, model.cfg.n_heads)
    # brute force: the dense mask of every layer from the definitions
    brute_kept = 0
    tail_last = torch.cat([lay["tail"], lay["last"]])
    # close_video_gaps: the video side runs from the first video token up to the question
    side = torch.arange(int(lay["video"].min()), int(lay["question"].min()))
    assert len(side) > len(lay["video"])  # this template has a token between the video and the question
    for layer in range(n_layers):
        edges = [(side, tail_last), (lay["last"], lay["last"]), (lay["tail"], tail_last)]
        if not spec.inter_frame[0] <= layer < spec.inter_frame[1]:
            edges += [(torch.cat([lay.frame(s) for s in range(t)]), lay.frame(t)) for t in range(1, lay.n_frames)]
        if not spec.video_to_question[0] <= layer < spec.video_to_question[1]:
            edges.append((side, lay["question"]))
        if not spec.question_to_last[0] <= layer < spec.question_to_last[1]:
            edges.append((lay["question"], tail_last))
        if layer >= spec.video_to_question[1]:
            edges.append((side, side))
        if spec.block_question_self_from is not None and layer >= spec.block_question_self_from:
            edges.append((lay["question"], lay["question"]))
        brute_kept += int(dense_allowed(lay.seq_len, edges).sum())
    assert total == n_layers * lay.seq_len * (lay.seq_len + 1) // 2
    assert kept == brute_kept
    # the random baseline is reproducible from its seed, and blocks what it says
    a, b = random_knockout(lay, 50, n_layers, seed=7), random_knockout(lay, 50, n_layers, seed=7)
    c = random_knockout(lay, 50, n_layers, seed=8)
    assert count_edges(a, lay, n_layers, 4)[0] == total - 50 * n_layers
    with torch.no_grad():
        assert torch.equal(model(prompt, interventions=[a]), model(prompt, interventions=[b]))
        assert not torch.equal(model(prompt, interventions=[a]), model(prompt, interventions=[c]))


@pytest.mark.parametrize("family", FAMILIES)
def test_effective_pathways_end_to_end(tmp_path, family):
    model = tiny(family)
    df = effective_pathways(model, samples(2), PAPER_PATHWAYS["7b"], out=tmp_path / "p.jsonl", progress=False, fps=2.0)
    assert set(df["condition"]) == {"full", "pathways", "random"}
    summary = pathway_summary(df)
    pathways = summary[summary["condition"] == "pathways"]["kept_percent"].iloc[0]
    rnd = summary[summary["condition"] == "random"]["kept_percent"].iloc[0]
    assert 0 < pathways < 100 and abs(pathways - rnd) < 1.0
    fig = plot_effective_pathways(summary)
    report = write_report([fig], tmp_path / "r.html")
    assert "plotly" in report.read_text()[:4_000_000].lower()


def test_attention_maps_show_the_knockout():
    model = tiny("llava_next_video")
    df = attention_maps(
        model, samples(1), knockout=EdgeKnockout("video", "question", layers=[1]), progress=False, fps=2.0
    )
    knocked = df[(df["condition"] == "knockout") & (df["layer"] == 1)]["attention"]
    base = df[(df["condition"] == "baseline") & (df["layer"] == 1)]["attention"]
    assert knocked.abs().max() == 0 and base.min() > 0
    fig = plot_attention_maps(df)
    low, high = np.log10(5e-5 + df["attention"].min()), np.log10(5e-5 + df["attention"].max())
    assert all(trace.zmin == pytest.approx(low) and trace.zmax == pytest.approx(high) for trace in fig.data)


def test_analysis_input_errors():
    model = tiny("llava_next_video")
    with pytest.raises(LayoutError, match="not among the options"):
        information_flow(model, [Sample(random_video(8), "Q?", ["a", "b"], answer="c")], progress=False, fps=2.0)
    with pytest.raises(Exception, match="Unknown target"):
        information_flow(model, samples(1), "sideways", progress=False, fps=2.0)


@pytest.mark.parametrize("family", ["internvl", "qwen2_vl", "qwen3_vl", "videollama3", "llava_next_video"])
def test_closed_pathways_leave_no_side_path_from_the_video(family):
    """With every video pathway closed, the answer cannot depend on the video: two videos give the
    same last-position logits. Frame labels, timestamps and the closing vision token read the
    frames, so the paper's groups alone (``close_video_gaps=False``) leave them as a side path."""
    model = tiny(family)
    n = model.cfg.n_layers
    closed = PathwaySpec(
        n, inter_frame=(0, 0), video_to_question=(0, 0), question_to_last=(0, n), block_question_self_from=None
    )
    a, b = make_prompt(model, seed=1, answer=0), make_prompt(model, seed=2, answer=0)
    assert a.layout.seq_len == b.layout.seq_len
    with torch.no_grad():
        clean = [model(p)[0, -1] for p in (a, b)]
        sealed = [model(p, interventions=[pathway_knockout(closed, n)])[0, -1] for p in (a, b)]
        leaky_spec = dataclasses.replace(closed, close_video_gaps=False)
        leaky = [model(p, interventions=[pathway_knockout(leaky_spec, n)])[0, -1] for p in (a, b)]
    assert not torch.allclose(clean[0], clean[1], atol=1e-4)  # the videos do matter to the model
    torch.testing.assert_close(sealed[0], sealed[1], atol=1e-6, rtol=0)
    # every one of these layouts has such tokens (at least the template token after the video)
    assert len(a.layout["video_block"]) > len(a.layout["video"])
    assert not torch.allclose(leaky[0], leaky[1], atol=1e-4)


def test_cross_frame_with_text_blocks_frame_labels_as_their_frame():
    model = tiny("internvl")
    lay = make_prompt(model, answer=0).layout
    n = model.cfg.n_layers
    spans = [np.concatenate([u.positions, u.text]) for u in lay.frames]
    assert all(len(u.text) for u in lay.frames)
    edges = [(torch.as_tensor(np.concatenate(spans[:t])), torch.as_tensor(spans[t])) for t in range(1, lay.n_frames)]
    expected = ~dense_allowed(lay.seq_len, edges)  # hand-built: blocked = causal edges named above
    got = blocked_masks([EdgeKnockout.cross_frame([0], with_text=True)], [lay], lay.seq_len, n, model.cfg.n_heads)[0]
    assert torch.equal(got[0, 0], expected & torch.ones(lay.seq_len, lay.seq_len, dtype=torch.bool).tril())
    plain = blocked_masks([EdgeKnockout.cross_frame([0])], [lay], lay.seq_len, n, model.cfg.n_heads)[0]
    assert plain[0, 0].sum() < got[0, 0].sum()


@pytest.mark.parametrize("family", ["llava_next_video", "qwen2_vl", "video_llava"])
def test_video_token_attention_equals_the_cached_patterns(family):
    """The per-token map (the paper's Fig. 6) and the per-frame sums, against patterns from run_with_cache."""
    model = tiny(family)
    prompt = make_prompt(model, answer=0)
    lay = prompt.layout
    ko = EdgeKnockout.cross_frame(range(model.cfg.n_layers))
    _, cache = model.run_with_cache(prompt, interventions=[ko], names_filter=lambda name: name.endswith("hook_pattern"))
    rows = lay["question"]
    for reduce in ("mean", "max"):
        grid = video_token_attention(model, prompt, interventions=[ko], head_reduce=reduce)
        frames = frame_attention(model, prompt, interventions=[ko], head_reduce=reduce)
        assert grid.shape[:2] == (model.cfg.n_layers, lay.n_frames) and grid.shape[2:] == lay.grid(0).shape
        for layer in range(model.cfg.n_layers):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0].float()  # (head, q, k)
            for t in range(lay.n_frames):
                per_token = pattern[:, rows][:, :, lay.grid(t).reshape(-1)].mean(1)  # (head, key)
                per_frame = pattern[:, rows][:, :, lay.frame(t)].sum(-1).mean(1)  # (head,)
                hand_grid = per_token.mean(0) if reduce == "mean" else per_token.amax(0)
                hand_frame = per_frame.mean() if reduce == "mean" else per_frame.amax()
                torch.testing.assert_close(grid[layer, t].reshape(-1), hand_grid, atol=1e-6, rtol=1e-5)
                torch.testing.assert_close(frames[layer, t], hand_frame, atol=1e-6, rtol=1e-5)
    # one map per query token, heads reduced per query (the paper's figures)
    per_query = video_token_attention(model, prompt, interventions=[ko], head_reduce="max", per_query=True)
    assert per_query.shape[:2] == (model.cfg.n_layers, len(rows))
    layer, q, t = model.cfg.n_layers - 1, len(rows) // 2, lay.n_frames - 1
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0].float()
    hand = pattern[:, rows[q]][:, lay.grid(t).reshape(-1)].amax(0)
    torch.testing.assert_close(per_query[layer, q, t].reshape(-1), hand, atol=1e-6, rtol=1e-5)
    mean_maps = video_token_attention(model, prompt, interventions=[ko], per_query=True)
    torch.testing.assert_close(mean_maps.mean(1), video_token_attention(model, prompt, interventions=[ko]))
    n = model.cfg.n_layers
    fig = plot_attention_grid(grid, layers=range(n))
    h, w = lay.grid(0).shape
    t = lay.n_frames - 1
    z = np.asarray(fig.data[0].z)
    assert z.shape == (n * h, lay.n_frames * w)
    assert z[(n - 1) * h + h - 1, t * w + w - 1] == pytest.approx(np.log10(5e-5 + float(grid[n - 1, t, h - 1, w - 1])))
    assert list(fig.layout.yaxis.ticktext) == [f"layer {i + 1}" for i in range(n)]
