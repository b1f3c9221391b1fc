"""LogitLens equals the model where it must, reads the right tokens, counts bags right; probes split by video."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import torch

from videolens import GroupError, HookedVideoLLM, LayerRangeError, VideoLensError
from videolens.analyses.lens import LogitLens, layer_bins, vocab_frequency
from videolens.analyses.probe import TemporalProbe
from videolens.testing import build_tiny_model
from videolens.viz.lens import plot_frame_words, plot_probe_scores, plot_vocab_frequency

from conftest import FAMILIES, make_prompt, tiny


def full_distribution(df: pd.DataFrame, d_vocab: int) -> torch.Tensor:
    """Rebuild the lens distribution of one (layer, position) from a top-k=d_vocab table."""
    out = torch.full((d_vocab,), float("nan"))
    out[torch.tensor(df["token_id"].to_numpy())] = torch.tensor(df["prob"].to_numpy(), dtype=torch.float32)
    return out


@functools.cache
def deep_llava() -> HookedVideoLLM:
    """A 7-layer tiny LLaVA-NeXT-Video, so that layer bins have something to split."""
    hf, processor = build_tiny_model("llava_next_video", num_layers=7)
    return HookedVideoLLM.from_hf(hf, processor)


# ---- LogitLens ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_last_layer_output_is_the_model_distribution(family):
    model = tiny(family)
    prompt = make_prompt(model)
    last = model.cfg.n_layers - 1
    lens = LogitLens(model)
    df = lens.run(prompt, positions="last", layers=[last], site="output", top_k=model.cfg.d_vocab)
    assert len(df) == model.cfg.d_vocab and (df["layer"] == last).all() and (df["group"] == "last").all()
    assert df["rank"].tolist() == list(range(1, model.cfg.d_vocab + 1))
    with torch.no_grad():
        expected = model(prompt)[0, -1].float().softmax(-1)
    torch.testing.assert_close(full_distribution(df, model.cfg.d_vocab), expected, atol=1e-5, rtol=0)
    probs = lens.token_probs(prompt, ["A", "B", 5], layers=-1)
    ids = torch.tensor(probs["token_id"].to_numpy())
    np.testing.assert_allclose(probs["prob"].to_numpy(), expected[ids].numpy(), atol=1e-5)


def test_input_of_next_layer_is_output_of_this_layer():
    model = tiny("llava_next_video")
    prompt = make_prompt(model)
    lens = LogitLens(model)
    a = lens.run(prompt, "question", layers=[0], site="output", top_k=3)
    b = lens.run(prompt, "question", layers=[1], site="input", top_k=3)
    assert (a["site"] == "output").all() and (b["site"] == "input").all()
    pd.testing.assert_frame_equal(
        a.drop(columns=["layer", "site"]), b.drop(columns=["layer", "site"]), check_exact=False, atol=1e-6
    )


@pytest.mark.parametrize("apply_final_norm", [True, False])
def test_embed_projection_is_softmax_of_norm_h_times_embeddings(apply_final_norm):
    model = tiny("qwen2_5_vl")
    prompt = make_prompt(model)
    lens = LogitLens(model, projection="embed", apply_final_norm=apply_final_norm)
    positions = [int(prompt.layout.frame(1)[0]), prompt.seq_len - 1]
    df = lens.run(prompt, positions=positions, layers=[0], site="input", top_k=model.cfg.d_vocab)
    with torch.no_grad():
        _, cache = model.run_with_cache(prompt, names_filter="blocks.0.hook_resid_pre", device="cpu")
        h = cache["blocks.0.hook_resid_pre"][0, positions]
        if apply_final_norm:
            h = model.ln_final.hf_module(h)
        expected = (h @ model.W_E.T).softmax(-1)
    for i, pos in enumerate(positions):
        got = full_distribution(df[df["position"] == pos], model.cfg.d_vocab)
        torch.testing.assert_close(got, expected[i], atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_video_rows_carry_their_frame_coordinates(family):
    model = tiny(family)
    prompt = make_prompt(model)
    layout = prompt.layout
    df = LogitLens(model).video_tokens(prompt, layers=[0], top_k=2)
    assert set(df["position"]) == set(layout["video"].tolist())
    assert len(df) == 2 * len(layout["video"])
    coords = layout.video_coords()
    framed = df[df["t"].notna()]
    assert set(framed["position"]) == set(coords)
    for row in framed.itertuples():
        assert (row.t, row.h, row.w) == coords[row.position]
        assert layout.patch(row.t, row.h, row.w) == row.position
        assert row.group == f"frame({row.t})"
    unframed = df[df["t"].isna()]
    extra = unframed[unframed["group"] == "video_extra"]
    assert len(extra) == 2 * len(layout["video_extra"])
    # the other video tokens without coordinates are frame prefix tokens (Video-LLaVA's CLS)
    prefix = {int(p): f"frame({t})" for t, unit in enumerate(layout.frames) for p in unit.prefix}
    rest = unframed[unframed["group"] != "video_extra"]
    assert len(rest) == 2 * len(prefix) and all(prefix[r.position] == r.group for r in rest.itertuples())


def test_only_the_asked_positions_are_projected():
    model = tiny("llava_next_video")
    prompt = make_prompt(model)
    lens = LogitLens(model)
    shapes = []
    original = lens.logits
    lens.logits = lambda resid: shapes.append(tuple(resid.shape)) or original(resid)
    lens.run(prompt, positions="last", top_k=3)
    lens.run(prompt, positions="frame(2)", layers=[0], top_k=3)
    assert shapes == [(1, model.cfg.d_model)] * model.cfg.n_layers + [(4, model.cfg.d_model)]


def test_lens_errors_name_the_fix():
    model = tiny("llava_next_video")
    prompt = make_prompt(model)
    lens = LogitLens(model)
    with pytest.raises(LayerRangeError, match=r"0\.\.1"):
        lens.run(prompt, layers=[2])
    with pytest.raises(GroupError, match="Known groups"):
        lens.run(prompt, positions="no_such_group")
    with pytest.raises(VideoLensError, match="site='input'"):
        lens.run(prompt, site="middle")
    with pytest.raises(VideoLensError, match="'unembed'"):
        LogitLens(model, projection="lm_head")
    with pytest.raises(VideoLensError, match="tokens"):
        lens.token_probs(prompt, ["circle"])
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())


# ---- vocabulary frequency ---------------------------------------------------------------------------
def test_layer_bins_do_not_overlap():
    bins = layer_bins(range(32), 5, n_layers=32)
    assert [label for label, *_ in bins][:2] == ["1-5", "6-10"] and bins[-1][0] == "31-32"
    members = [layer for *_, m in bins for layer in m]
    assert members == list(range(32))
    assert all(first <= min(m) and max(m) <= last for _, first, last, m in bins)
    assert [label for label, *_ in layer_bins(range(7), 3)] == ["1-3", "4-6", "7"]


def test_vocab_frequency_matches_a_brute_force_recount():
    model = deep_llava()
    prompts = [make_prompt(model, seed=s) for s in range(2)]
    lens = LogitLens(model)
    top1 = pd.concat([lens.video_tokens(p, top_k=1) for p in prompts])
    assert len(top1) == sum(len(p.layout["video"]) for p in prompts) * model.cfg.n_layers
    frequent = top1["token_id"].value_counts().index[:6]
    tok = model.tokenizer
    words = [tok.decode([int(i)]) for i in frequent]
    words = [w for w, i in zip(words, frequent) if tok.encode(w, add_special_tokens=False)[:1] == [int(i)]]
    assert len(words) >= 2, "the recount needs bag words that are top-1 somewhere"
    bag = {"seen": words}
    df = vocab_frequency(lens, prompts, bag, bin_size=3, progress=False)

    # The paper's table: one row per word (and ALL, ALL_NORM), one column per bin.
    assert list(dict.fromkeys(df["bin"])) == ["1-3", "4-6", "7"]
    assert set(df["word"]) == set(words) | {"ALL", "ALL_NORM"}
    rows = df[~df["word"].isin(["ALL", "ALL_NORM"])]
    for row in rows.itertuples():  # counted by decoded text, as the paper did
        layers = range(row.first_layer, row.last_layer + 1)
        hits = top1[top1["layer"].isin(layers) & (top1["token"] == tok.decode([row.token_id]))]
        assert row.count == len(hits), (row.bin, row.word)
    spans = rows.drop_duplicates("bin")[["first_layer", "last_layer"]].to_numpy()
    covered = [layer for first, last in spans for layer in range(first, last + 1)]
    assert covered == list(range(model.cfg.n_layers))  # no overlap, no gap

    counts = rows.pivot(index="word", columns="bin", values="count").astype(float)
    all_row = df[df["word"] == "ALL"].set_index("bin")["count"].astype(float)
    pd.testing.assert_series_equal(counts.sum(0), all_row[counts.columns], check_names=False)
    fracs = rows.pivot(index="word", columns="bin", values="frac")
    np.testing.assert_allclose(fracs.sum(1), 1.0)  # each word normalised over the bins
    all_frac = df[df["word"] == "ALL"].set_index("bin")["frac"]
    np.testing.assert_allclose(all_frac[counts.columns], (all_row / all_row.sum())[counts.columns])
    norm = df[df["word"] == "ALL_NORM"].set_index("bin")["frac"]
    np.testing.assert_allclose(norm[fracs.columns], fracs.mean(0))

    totals = counts.sum(1)
    rare = totals.idxmin()
    kept = vocab_frequency(lens, prompts, bag, bin_size=3, min_count=int(totals.min()) + 1, progress=False)
    assert rare not in set(kept["word"])


def test_vocab_frequency_counts_by_text_like_the_paper():
    """The paper counts decoded top-1 strings: two ids that decode to one word (SentencePiece's
    ``on`` and ``▁on``) count together, and bag words with one first sub-token are one row.
    A hand count over a made-up lens and tokenizer."""
    from types import SimpleNamespace

    texts = {0: "on", 1: "on", 2: "up", 3: "x"}  # id 1 is "▁on": it decodes to "on" too
    pieces = {"on": [1], "up": [2], "upward": [2, 3]}

    class Tokenizer:
        def encode(self, word, add_special_tokens=False):
            return pieces[word]

        def decode(self, ids):
            return "".join(texts[int(i)] for i in ids)

    n_layers = 4
    top1 = torch.tensor([[0, 1, 2, 3, 0]] * n_layers)  # every layer: "on" x3 (ids 0, 1, 0), "up" x1, "x" x1

    class MadeUpLens(LogitLens):
        def __init__(self):
            self.model = SimpleNamespace(tokenizer=Tokenizer(), cfg=SimpleNamespace(n_layers=n_layers, d_vocab=4))

        def top1_ids(self, prompt, positions="video", layers=None, site="input", **_):
            return list(range(n_layers)), torch.arange(5), top1

    with pytest.warns(UserWarning, match="counted as one"):
        df = vocab_frequency(MadeUpLens(), [None], {"bag": ["on", "up", "upward"]}, bin_size=2, progress=False)
    table = df.pivot(index="word", columns="bin", values="count")
    assert table.loc["on"].tolist() == [6, 6]  # 3 a layer, 2 layers a bin (by the word's own id alone: 2)
    assert table.loc["up/upward"].tolist() == [2, 2]
    assert table.loc["ALL"].tolist() == [8, 8]
    fracs = df.pivot(index="word", columns="bin", values="frac")
    assert fracs.loc["on"].tolist() == [0.5, 0.5] and fracs.loc["ALL_NORM"].tolist() == [0.5, 0.5]


# ---- TemporalProbe ----------------------------------------------------------------------------------
def planted_frame_signal(model: HookedVideoLLM, prompt, scale: float = 4.0, seed: int = 0):
    """A hook adding one random direction per frame to each video embedding: frame t becomes decodable."""
    frame_of_video = torch.as_tensor(prompt.layout.frame_of()[prompt.layout["video"].numpy()])
    gen = torch.Generator().manual_seed(seed)
    directions = torch.randn(prompt.layout.n_frames, model.cfg.d_model, generator=gen)
    directions = scale * directions / directions.norm(dim=-1, keepdim=True)

    def plant(act, hook):
        return act + directions[frame_of_video].to(act)

    return ("hook_video_embeds", plant)


@functools.cache
def collected_probe() -> TemporalProbe:
    model = tiny("llava_next_video")
    prompts = [make_prompt(model, seed=s) for s in range(12)]
    probe = TemporalProbe(model, target="frame_index")
    return probe.collect(prompts, fwd_hooks=[planted_frame_signal(model, prompts[0])], progress=False)


def test_probe_decodes_a_planted_frame_signal_and_not_shuffled_labels():
    probe = collected_probe()
    res = probe.fit(test_size=0.25, seed=0)
    assert list(res["layer"]) == [0, 1] and (res["site"] == "output").all()
    np.testing.assert_allclose(res["chance"], 1 / 8)
    assert res["n_test"].iloc[0] == 3 * 32 and res["n_train"].iloc[0] == 9 * 32
    assert res["test_score"].max() > 0.9

    control = probe.fit(test_size=0.25, seed=0, shuffle_labels=True)
    assert control["test_score"].max() < control["chance"].iloc[0] + 0.2

    # Without the plant, the embeddings carry no frame index (RoPE is not in the residual stream).
    model = probe.model
    bare = TemporalProbe(model, site="input", layers=[0], target="frame_index")
    bare.collect([make_prompt(model, seed=s) for s in range(12)], progress=False)
    assert bare.fit(test_size=0.25, seed=0)["test_score"].iloc[0] < 1 / 8 + 0.2


def test_probe_splits_by_sample():
    probe = collected_probe()
    probe.fit(test_size=0.25, seed=3)
    train, test = probe.split_["train"], probe.split_["test"]
    assert not set(train) & set(test) and sorted([*train, *test]) == list(range(12))
    _, y, sample = probe.dataset(0)
    assert len(y) == 12 * 32 and set(np.bincount(sample)) == {32}  # 32 video tokens per sample
    probe.fit(train_groups=range(8), test_groups=[8, 9])
    assert probe.results_["n_test"].iloc[0] == 2 * 32
    with pytest.raises(VideoLensError, match="both train and test"):
        probe.fit(train_groups=[0, 1, 2], test_groups=[2, 3])


def test_probe_holds_out_videos_not_questions():
    """Two questions per video: a label that only names the video is memorised by a split of
    samples (both questions of a video on either side) but not by a split of videos."""
    model = tiny("llava_next_video")
    labels = np.random.default_rng(1).integers(0, 2, 20)
    pairs = [
        (make_prompt(model, seed=v, question=q), int(labels[v]))
        for v in range(20)
        for q in ("What moved first?", "Which colour came last?")
    ]
    probe = TemporalProbe(model, layers=[1], pool="frame_mean").collect(pairs, progress=False)
    video_of_sample = [v for v in range(20) for _ in range(2)]
    assert len(set(probe.videos)) == 20  # the frames' hash tells the videos apart...
    assert [probe.videos.index(k) for k in probe.videos] == [2 * v for v in video_of_sample]  # ...and pairs them
    for seed in range(5):
        train, test = probe.split(test_size=0.25, seed=seed)
        held_out = {video_of_sample[i] for i in test}
        assert held_out.isdisjoint(video_of_sample[i] for i in train) and len(held_out) == 5
    # The same probe fitted by hand on a split of samples: the other question of each video is held out.
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, sample = probe.dataset(1)
    leaky_train, leaky_test = sample % 2 == 0, sample % 2 == 1
    leaky = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X[leaky_train], y[leaky_train])
    assert leaky.score(X[leaky_test], y[leaky_test]) > 0.8  # memorised videos (measured 0.85)
    # Held out by video, the label cannot be memorised: near chance (measured mean 0.46).
    by_video = [probe.fit(seed=seed) for seed in range(8)]
    assert np.mean([fit["test_score"].iloc[0] for fit in by_video]) < 0.6
    assert all(fit["n_test"].iloc[0] == 5 * 2 * 8 for fit in by_video)
    with pytest.raises(VideoLensError, match="both train and test"):
        probe.fit(train_groups=range(0, 40, 2), test_groups=range(1, 40, 2))
    for bad in (0, 1, 1.5, -1):
        with pytest.raises(VideoLensError, match="test_size"):
            probe.fit(test_size=bad)
    one_video = TemporalProbe(model, layers=[1], pool="frame_mean").collect(pairs[:2], progress=False)
    with pytest.raises(VideoLensError, match="2 different videos"):
        one_video.fit()


def test_probe_labels_and_pooling():
    model = tiny("llava_next_video")
    prompts = [make_prompt(model, seed=s) for s in range(3)]
    per_sample = TemporalProbe(model, layers=[1]).collect([(p, s % 2) for s, p in enumerate(prompts)], progress=False)
    _, y, sample = per_sample.dataset(1)
    np.testing.assert_array_equal(y, sample % 2)
    by_position = TemporalProbe(model, positions="frame(0)", site="input").collect(
        [(p, lambda layout, pos: int(pos)) for p in prompts], progress=False
    )
    np.testing.assert_array_equal(by_position.dataset(0)[1], np.tile(prompts[0].layout.frame(0).numpy(), 3))
    pooled = TemporalProbe(model, pool="frame_mean", target="frame_index").collect(prompts, progress=False)
    X, y, _ = pooled.dataset(0)
    assert X.shape == (3 * 8, model.cfg.d_model) and y.tolist() == list(range(8)) * 3
    with torch.no_grad():
        _, cache = model.run_with_cache(prompts[0], names_filter="blocks.0.hook_resid_post", device="cpu")
    frame3 = cache["blocks.0.hook_resid_post"][0, prompts[0].layout.frame(3)].mean(0)
    np.testing.assert_allclose(X[3], frame3.numpy(), atol=1e-6)
    with pytest.raises(VideoLensError, match="labels"):
        TemporalProbe(model).collect(prompts, progress=False)


# ---- figures ----------------------------------------------------------------------------------------
def test_figures_build():
    model = tiny("qwen2_5_vl")
    prompt = make_prompt(model)
    lens = LogitLens(model)
    vf = vocab_frequency(lens, [prompt], {"letters": ["A", "B", "C", "the"]}, bin_size=1, progress=False)
    assert plot_vocab_frequency(vf).to_dict()["data"]
    words = lens.video_tokens(prompt, top_k=1)
    fig = plot_frame_words(words, prompt.frames, n_layers=model.cfg.n_layers, bin_size=1)
    data = fig.to_dict()["data"]
    assert sum(trace["type"] == "image" for trace in data) == model.cfg.n_layers
    texts = [t for trace in data if trace["type"] == "scatter" for t in trace["text"]]
    assert len(texts) == model.cfg.n_layers * len(prompt.layout.video_coords())
    in_bag = plot_frame_words(words, prompt.frames, bag=[int(words["token_id"].iloc[0])]).to_dict()["data"]
    assert sum(len(trace["text"]) for trace in in_bag if trace["type"] == "scatter") >= 1
    probe = collected_probe()
    probe.fit()
    assert len(probe.plot().to_dict()["data"]) == 3
    assert plot_probe_scores(probe.results_).to_dict()["data"]


def test_frame_index_probe_labels_frame_prefix_tokens():
    model = tiny("video_llava")
    prompt = make_prompt(model)
    probe = TemporalProbe(model, layers=[0], target="frame_index")
    pos, _, keys = probe._examples(prompt.layout)
    labels = probe._labels_for(prompt.layout, None, keys)
    first = int(prompt.layout["video"].min())
    per_frame = len(prompt.layout["video"]) // 8  # Video-LLaVA: a CLS token and a patch grid per frame, back to back
    assert labels.tolist() == [(int(p) - first) // per_frame for p in pos]
    assert {int(prompt.layout.frames[t].prefix[0]) for t in range(8)} <= set(pos.tolist())


def test_the_paper_site_reads_the_entries_the_paper_read():
    """The paper's logit lens: HF's hidden_states[0..L-2] (layer inputs) and its last entry
    (after the final norm), through the input embeddings, no norm on the others."""
    model = deep_llava()
    prompt = make_prompt(model)
    n = model.cfg.n_layers
    with torch.no_grad():
        hidden = model.hf_model(**prompt.inputs, output_hidden_states=True).hidden_states
        entries = [hidden[layer] for layer in range(n - 1)] + [hidden[-1]]
        video = prompt.layout["video"]
        expected = [(h[0, video] @ model.hf_model.get_input_embeddings().weight.T).argmax(-1) for h in entries]
    paper = LogitLens(model, projection="embed", apply_final_norm=False)
    words = paper.video_tokens(prompt, site="paper", top_k=1)
    assert set(words["site"]) == {"paper"}
    for layer in range(n):
        got = words[words["layer"] == layer].sort_values("position")["token_id"].to_numpy()
        assert got.tolist() == expected[layer].tolist(), layer
    # "input" differs exactly at the last layer: it reads that layer's input
    plain = LogitLens(model, projection="embed", apply_final_norm=False).video_tokens(prompt, site="input", top_k=1)
    last = plain[plain["layer"] == n - 1].sort_values("position")["token_id"].to_numpy()
    assert (
        last.tolist() == (hidden[n - 1][0, video] @ model.hf_model.get_input_embeddings().weight.T).argmax(-1).tolist()
    )
    with pytest.raises(VideoLensError, match="site='paper'"):
        paper.video_tokens(prompt, site="papers")
    with pytest.raises(VideoLensError):
        TemporalProbe(model, layers=[1], site="paper")


def test_probe_refuses_inputs_it_cannot_fit():
    """Each mistake gets a VideoLensError naming it (not sklearn's or numpy's own error)."""
    model = tiny("llava_next_video")
    prompts = [make_prompt(model, seed=s) for s in range(4)]
    with pytest.raises(VideoLensError, match="collect"):
        TemporalProbe(model, layers=[1]).fit()
    with pytest.raises(VideoLensError, match="also gave labels"):
        TemporalProbe(model, layers=[1], target="frame_index").collect([(prompts[0], 3)], progress=False)
    with pytest.raises(VideoLensError, match="Labels are a dict"):
        TemporalProbe(model, layers=[1]).collect([(prompts[0], {"direction": 1})], progress=False)
    zero_d = TemporalProbe(model, layers=[1], pool="frame_mean").collect([(prompts[0], np.array(3))], progress=False)
    assert zero_d.dataset(1)[1].tolist() == [3] * prompts[0].layout.n_frames  # a 0-d array is one label per sample
    floats = [(p, 0.5 + i) for i, p in enumerate(prompts)]
    with pytest.raises(VideoLensError, match="task='regression'"):
        TemporalProbe(model, layers=[1], task="classification").collect(floats, progress=False).fit(test_size=0.5)
    words = [(p, ["left", "right"][i % 2]) for i, p in enumerate(prompts)]
    with pytest.raises(VideoLensError, match="numeric labels"):
        TemporalProbe(model, layers=[1], task="regression").collect(words, progress=False).fit(test_size=0.5)
    nan_hook = [("hook_video_embeds", lambda x, hook: x.index_fill(-1, torch.tensor([0]), float("nan")))]
    broken = TemporalProbe(model, layers=[1], pool="frame_mean").collect(
        [(p, i % 2) for i, p in enumerate(prompts)], fwd_hooks=nan_hook, progress=False
    )
    with pytest.raises(VideoLensError, match="NaN or inf"):
        broken.fit(test_size=0.5)
