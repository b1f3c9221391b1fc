"""Every hook fires with the right shape, reads the true value, and edits change the output."""

from __future__ import annotations

import inspect

import pytest
import torch

from videolens import VideoLensError

from conftest import FAMILIES, make_prompt, tiny
from test_parity import ours_left_on


def expected_shape(name: str, model, prompt) -> tuple[int, ...]:
    c, n = model.cfg, prompt.seq_len
    n_video = len(prompt.layout["video"])
    d_mlp = model.blocks[0].hf_layer.mlp.down_proj.in_features
    table = {
        "hook_embed": (1, n, c.d_model),
        "hook_video_embeds": (1, n_video, c.d_model),
        "hook_scale": (1, n, 1),
        "attn.hook_q": (1, n, c.n_heads, c.d_head),
        "attn.hook_k": (1, n, c.n_kv_heads, c.d_head),
        "attn.hook_rot_q": (1, n, c.n_heads, c.d_head),
        "attn.hook_rot_k": (1, n, c.n_kv_heads, c.d_head),
        "attn.hook_result": (1, n, c.n_heads, c.d_model),
        "mlp.hook_pre": (1, n, d_mlp),
        "mlp.hook_pre_linear": (1, n, d_mlp),
        "attn.hook_v": (1, n, c.n_kv_heads, c.d_head),
        "attn.hook_z": (1, n, c.n_heads, c.d_head),
        "attn.hook_attn_scores": (1, c.n_heads, n, n),
        "attn.hook_pattern": (1, c.n_heads, n, n),
        "mlp.hook_post": (1, n, d_mlp),
    }
    for suffix, shape in table.items():
        if name.endswith(suffix):
            return shape
    return (1, n, c.d_model)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_hook_fires_with_its_shape(family):
    model = tiny(family)
    prompt = make_prompt(model)
    with torch.no_grad():
        _, cache = model.run_with_cache(prompt)
    assert set(cache.keys()) == set(model.hook_dict)
    expected_names = {
        "hook_text_embed",
        "hook_embed",
        "hook_video_embeds",
        "ln_final.hook_scale",
        "ln_final.hook_normalized",
    }
    for layer in range(model.cfg.n_layers):
        for suffix in (
            "hook_resid_pre",
            "ln1.hook_scale",
            "ln1.hook_normalized",
            "ln2.hook_scale",
            "attn.hook_q",
            "attn.hook_k",
            "attn.hook_rot_q",
            "attn.hook_rot_k",
            "attn.hook_result",
            "mlp.hook_pre",
            "mlp.hook_pre_linear",
            "attn.hook_v",
            "attn.hook_attn_scores",
            "attn.hook_pattern",
            "attn.hook_z",
            "hook_attn_out",
            "hook_resid_mid",
            "ln2.hook_normalized",
            "mlp.hook_post",
            "hook_mlp_out",
            "hook_resid_post",
        ):
            expected_names.add(f"blocks.{layer}.{suffix}")
    assert expected_names <= set(cache.keys())
    for name in cache.keys():
        if not name.startswith("vision."):  # the vision tower's own layouts: tests/test_vision_hooks.py
            assert tuple(cache[name].shape) == expected_shape(name, model, prompt), name


@pytest.mark.parametrize("family", FAMILIES)
def test_hooks_read_the_true_values(family):
    model = tiny(family)
    prompt = make_prompt(model)
    with torch.no_grad():
        logits, cache = model.run_with_cache(prompt, device="cpu")
        ref = model.hf_model(**prompt.inputs, output_hidden_states=True, output_attentions=True)
    last = model.cfg.n_layers - 1
    # HF's hidden states are the embeddings and each block's output; what enters the next
    # block is that output after the adapter's between-layer step (Qwen3-VL's DeepStack)
    assert torch.allclose(cache["blocks.0.hook_resid_pre"], ref.hidden_states[0], atol=1e-5)
    extra = model.lm_inputs(model.batch(prompt)).extra
    for layer in range(model.cfg.n_layers - 1):
        post = cache[f"blocks.{layer}.hook_resid_post"]
        assert torch.allclose(post, ref.hidden_states[layer + 1], atol=1e-5)
        after = model.adapter.after_layer(layer, post, extra)
        assert torch.allclose(cache[f"blocks.{layer + 1}.hook_resid_pre"], after, atol=1e-6)
    # the attention pattern is HF's eager attention weights
    for layer in range(model.cfg.n_layers):
        assert torch.allclose(cache[f"blocks.{layer}.attn.hook_pattern"], ref.attentions[layer], atol=1e-5)
    # the split norms and the projections are HF's own modules' values
    for layer, block in enumerate(model.blocks):
        hf = block.hf_layer
        resid, mid = cache[f"blocks.{layer}.hook_resid_pre"], cache[f"blocks.{layer}.hook_resid_mid"]
        rms = torch.sqrt(resid.pow(2).mean(-1, keepdim=True) + block.ln1.eps)
        assert torch.allclose(cache[f"blocks.{layer}.ln1.hook_scale"], rms, atol=1e-6)
        normed = hf.input_layernorm(resid)
        assert torch.allclose(cache[f"blocks.{layer}.ln1.hook_normalized"] * block.ln1.w, normed, atol=1e-5)
        q = hf.self_attn.q_proj(normed).view(1, resid.shape[1], model.cfg.n_heads, -1)
        assert torch.allclose(cache[f"blocks.{layer}.attn.hook_q"], q, atol=1e-5)
        heads = cache[f"blocks.{layer}.attn.hook_result"].sum(-2) + block.attn.b_O
        assert torch.allclose(heads, cache[f"blocks.{layer}.hook_attn_out"], atol=1e-5)
        gate = hf.mlp.gate_proj(hf.post_attention_layernorm(mid))
        assert torch.allclose(cache[f"blocks.{layer}.mlp.hook_pre"], gate, atol=1e-5)
    # the final residual stream, normed and unembedded, gives the logits
    assert torch.allclose(model.resid_to_logits(cache[f"blocks.{last}.hook_resid_post"]), logits, atol=1e-5)
    # the video embeddings are what the HF model spliced in
    inner = getattr(model.hf_model, "model", model.hf_model)  # PLLaVA keeps its towers at the top
    if hasattr(inner, "get_video_features"):
        # the video inputs the feature function takes (VideoLLaMA3 also needs video_merge_sizes)
        params = inspect.signature(inner.get_video_features).parameters
        keys = {"pixel_values_videos", "pixel_values", "video_grid_thw", "video_merge_sizes"} & set(params)
        video = inner.get_video_features(**{k: v for k, v in prompt.inputs.items() if k in keys}, return_dict=True)
    else:  # InternVL encodes video frames as images
        video = inner.get_image_features(pixel_values=prompt.inputs["pixel_values"], return_dict=True)
    video = video.pooler_output
    video = torch.cat([v.reshape(-1, model.cfg.d_model) for v in video])
    if "video_compression_mask" in prompt.inputs:  # VideoLLaMA3 splices in only the kept tokens
        video = video[prompt.inputs["video_compression_mask"]]
    assert torch.allclose(cache["hook_video_embeds"][0], video, atol=1e-6)


def _edit(name: str):
    gen = torch.Generator().manual_seed(0)

    def fn(x, hook):
        if name.endswith("hook_pattern"):
            return x * 0.5
        if name.endswith("hook_attn_scores"):
            return x + torch.randn(x.shape, generator=gen) * 3.0
        return x + torch.randn(x.shape, generator=gen) * x.std().clamp_min(1.0)

    return fn


@pytest.mark.parametrize("family", FAMILIES)
def test_an_edit_at_every_hook_changes_the_logits(family):
    model = tiny(family)
    prompt = make_prompt(model)
    with torch.no_grad():
        clean = model(prompt)
        for name in (n for n in model.hook_dict if not n.startswith("vision.")):  # vision.*: test_vision_hooks.py
            edited = model.run_with_hooks(prompt, fwd_hooks=[(name, _edit(name))])
            assert (edited - clean).abs().max().item() > 1e-3, f"edit at {name} did not change the logits"


def test_hooks_are_removed_after_an_exception():
    model = tiny("qwen2_5_vl")
    prompt = make_prompt(model)

    def boom(x, hook):
        raise RuntimeError("boom")

    impl = model.hf_model.config.text_config._attn_implementation
    with pytest.raises(RuntimeError, match="boom"):
        model.run_with_hooks(prompt, fwd_hooks=[("blocks.1.mlp.hook_post", boom)])
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())
    assert not ours_left_on(model.hf_model)
    assert model.hf_model.config.text_config._attn_implementation == impl
    with torch.no_grad():
        assert torch.allclose(model(prompt), model.hf_model(**prompt.inputs).logits, atol=1e-5)


def test_hooks_context_manager_and_generation_with_hooks():
    model = tiny("llava_next_video")
    prompt = make_prompt(model)
    seen = []
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", lambda x, hook: seen.append(x.shape[1]))]):
        model.generate(prompt, max_new_tokens=3, stop_at_eos=False)
    assert seen[0] == prompt.seq_len and seen[1:] == [1, 1]
    assert not model.hook_dict["blocks.0.hook_resid_post"].fwd_hooks


def test_weight_views_share_storage():
    model = tiny("llava_onevision")
    attn = model.blocks[0].attn
    q_proj = model.blocks[0].hf_layer.self_attn.q_proj
    assert attn.W_Q.shape == (model.cfg.n_heads, model.cfg.d_model, model.cfg.d_head)
    # W_Q carries ln1's weight (TransformerLens' fold_ln): normalized @ W_Q + b_Q is the query
    x = torch.randn(3, model.cfg.d_model)
    folded = torch.einsum("pm,hmd->phd", x, attn.W_Q) + attn.b_Q
    assert torch.allclose(folded.flatten(1), q_proj(model.blocks[0].ln1.w * x), atol=1e-5)
    o_proj = model.blocks[0].hf_layer.self_attn.o_proj
    assert attn.W_O.shape == (model.cfg.n_heads, model.cfg.d_head, model.cfg.d_model)
    assert attn.W_O.data_ptr() == o_proj.weight.data_ptr()  # a view, no copy
    assert model.W_U.shape == (model.cfg.d_model, model.cfg.d_vocab)
    assert attn.W_K.shape == attn.W_V.shape == (model.cfg.n_heads, model.cfg.d_model, model.cfg.d_head)


@pytest.mark.parametrize("family", ["llava_onevision", "video_llava", "qwen2_5_vl"])
def test_str_tokens_label_every_video_token_by_frame_and_patch(family):
    model = tiny(family)
    prompt = make_prompt(model)
    labels = model.to_str_tokens(prompt)
    layout = prompt.layout
    assert len(labels) == prompt.seq_len
    for t in range(layout.n_frames):
        grid = layout.grid(t)
        for r in range(grid.shape[0]):
            for c in range(grid.shape[1]):
                assert labels[layout.patch(t, r, c)] == f"<f{t} r{r} c{c}>"
    video = set(layout["video"].tolist())
    assert all(label.startswith("<f") or label == "<video_extra>" for p, label in enumerate(labels) if p in video)
    text = [p for p in range(prompt.seq_len) if p not in video]
    ids = prompt.input_ids[0]
    assert [labels[p] for p in text] == [model.tokenizer.decode([int(ids[p])]) for p in text]


def test_token_helpers_on_plain_text():
    model = tiny("llava_next_video")
    tokens = model.to_tokens("What moved first?")
    assert tokens[0].tolist() == model.tokenizer("What moved first?")["input_ids"]
    assert model.to_string(tokens[0]) == model.tokenizer.decode(tokens[0].tolist())
    assert "".join(model.to_str_tokens("What moved", prepend_bos=False)) == "What moved"
    assert model.to_single_token("A") == model.tokenizer.convert_tokens_to_ids("A")
    with pytest.raises(VideoLensError, match="not one"):
        model.to_single_token("What moved first?")


def test_loss_is_the_hand_computed_next_token_cross_entropy():
    model = tiny("llava_next_video")
    prompts = [make_prompt(model, question="Why?"), make_prompt(model, seed=1)]
    with torch.no_grad():
        logits, loss = model(prompts, return_type="both")
        per_token = model(prompts, return_type="loss", loss_per_token=True)
    batch = model.batch(prompts)
    ids, valid = batch.inputs["input_ids"], batch.inputs["attention_mask"].bool()
    terms = []
    for b in range(ids.shape[0]):
        for p in range(ids.shape[1] - 1):
            target = int(ids[b, p + 1])
            if valid[b, p] and valid[b, p + 1] and target != model.cfg.video_token_id:
                log_probs = torch.log_softmax(logits[b, p].double(), -1)
                terms.append(-float(log_probs[target]))
                assert float(per_token[b, p]) == pytest.approx(terms[-1], rel=1e-4, abs=1e-5)
    assert float(loss) == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_the_wrapper_follows_the_hf_models_mode(tmp_path):
    from videolens import HookedVideoLLM

    model = HookedVideoLLM.from_pretrained("videolens/toy-moving-shapes")
    assert not model.training and not model.hf_model.training
    model.train()
    assert model.training and model.hf_model.training and model.blocks[0].training
    model.eval()
    assert not model.hf_model.training


@pytest.mark.parametrize("family", ["llava_next_video", "qwen2_5_vl", "internvl"])
def test_plain_text_runs_the_language_model_alone(family):
    model = tiny(family)
    text = "Which shape moved first?"
    ids = model.to_tokens(text)
    with torch.no_grad():
        ours = model(text)
        hf = model.hf_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        loss = model(text, return_type="loss")
    assert (ours - hf).abs().max().item() <= 1e-5
    by_hand = torch.nn.functional.cross_entropy(hf[0, :-1], ids[0, 1:])
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-5)
    with pytest.raises(VideoLensError, match="prepared prompt"):
        model(text, start_at_layer=1, residual=torch.zeros(1))
