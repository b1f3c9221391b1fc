"""TransformerLens' own ActivationCache tools give their identities on every videolens model.

Each identity is checked against the model's own outputs (the logits, the residual
stream, the attention output), computed by the forward pass, not by the tool under test.
"""

from __future__ import annotations

import pytest
import torch

from videolens import HookedVideoLLM
from videolens.testing import build_tiny_model

from conftest import FAMILIES, make_prompt, tiny

TOL = 1e-4


def _cache(family):
    model = tiny(family)
    prompt = make_prompt(model, answer=1)
    with torch.no_grad():
        logits, cache = model.run_with_cache(prompt)
    return model, prompt, logits, cache


@pytest.mark.parametrize("family", FAMILIES)
def test_accumulated_resid_with_ln_times_W_U_is_the_logits(family):
    model, _, logits, cache = _cache(family)
    with torch.no_grad():
        final = cache.accumulated_resid(layer=-1, apply_ln=True, pos_slice=-1)[-1]  # (batch, d_model)
        assert ((final @ model.W_U + model.b_U) - logits[:, -1]).abs().max().item() <= TOL
        lens = cache.logit_lens()  # TransformerLens' own one-call logit lens at the last position
    assert lens.labels[-1] == "final_post" and lens.values.shape[0] == model.cfg.n_layers + 1
    assert (lens.values[-1] - logits[:, -1]).abs().max().item() <= TOL


@pytest.mark.parametrize("family", FAMILIES)
def test_logit_attributions_sum_to_the_logit_difference(family):
    model, _, logits, cache = _cache(family)
    a, b = 5, 7  # two answer tokens
    with torch.no_grad():
        stack, _ = cache.decompose_resid(layer=-1, pos_slice=-1, return_labels=True)
        attrs = cache.logit_attrs(stack, tokens=torch.tensor([a]), incorrect_tokens=torch.tensor([b]), pos_slice=-1)
    assert attrs.sum(0).item() == pytest.approx((logits[0, -1, a] - logits[0, -1, b]).item(), abs=TOL)


@pytest.mark.parametrize("family", FAMILIES)
def test_full_resid_decomposition_sums_to_the_final_residual(family):
    model, _, _, cache = _cache(family)
    with torch.no_grad():
        parts = cache.get_full_resid_decomposition(expand_neurons=True)
    final = cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]
    total = parts.sum(0)
    # Qwen3-VL adds DeepStack features at the video positions between layers: no component of
    # TransformerLens' decomposition holds them, so the identity holds at the text positions.
    text = torch.ones(final.shape[1], dtype=torch.bool)
    if family == "qwen3_vl":
        text[make_prompt(model).layout["video"]] = False
    assert (total[:, text] - final[:, text]).abs().max().item() <= TOL


@pytest.mark.parametrize("family", FAMILIES)
def test_head_results_sum_to_the_attention_output(family):
    model, _, _, cache = _cache(family)
    with torch.no_grad():
        heads, labels = cache.stack_head_results(layer=-1, return_labels=True)
        neurons = cache.stack_neuron_results(layer=-1)
    n_heads = model.cfg.n_heads
    assert len(labels) == model.cfg.n_layers * n_heads
    for layer in range(model.cfg.n_layers):
        own = heads[layer * n_heads : (layer + 1) * n_heads].sum(0) + model.blocks[layer].attn.b_O
        assert (own - cache[f"blocks.{layer}.hook_attn_out"]).abs().max().item() <= TOL
    d_mlp = model.cfg.d_mlp
    mlp0 = neurons[:d_mlp].sum(0) + model.blocks[0].mlp.b_out
    assert (mlp0 - cache["blocks.0.hook_mlp_out"]).abs().max().item() <= TOL


@pytest.mark.parametrize("family", ["llava_next_video", "qwen2_5_vl"])
def test_apply_ln_to_stack_uses_the_cached_scale(family):
    model, _, _, cache = _cache(family)
    resid = cache["blocks.1.hook_resid_pre"]
    with torch.no_grad():
        scaled = cache.apply_ln_to_stack(resid[None], layer=1)[0]
    expected = model.blocks[1].hf_layer.input_layernorm(resid) / model.blocks[1].ln1.w
    assert (scaled - expected).abs().max().item() <= TOL


KINDS = [
    "blocks.0.hook_resid_pre",
    "blocks.0.ln1.hook_scale",
    "blocks.0.ln1.hook_normalized",
    "blocks.0.attn.hook_q",
    "blocks.0.attn.hook_k",
    "blocks.0.attn.hook_v",
    "blocks.0.attn.hook_rot_q",
    "blocks.0.attn.hook_rot_k",
    "blocks.0.attn.hook_attn_scores",
    "blocks.0.attn.hook_pattern",
    "blocks.0.attn.hook_z",
    "blocks.0.attn.hook_result",
    "blocks.0.hook_attn_out",
    "blocks.0.hook_resid_mid",
    "blocks.0.mlp.hook_pre",
    "blocks.0.mlp.hook_pre_linear",
    "blocks.0.mlp.hook_post",
    "blocks.0.hook_mlp_out",
    "blocks.1.hook_resid_post",
    "ln_final.hook_normalized",
    "hook_embed",
    "hook_video_embeds",
]


@pytest.mark.parametrize("name", KINDS)
def test_a_backward_hook_fires_with_the_true_gradient(name):
    model = tiny("llava_next_video")
    prompt = make_prompt(model, answer=1)
    kept = {}

    def keep(x, hook):  # a forward hook that keeps the activation in the graph
        x.retain_grad()
        kept["act"] = x
        return x

    seen = {}

    def grad_hook(grad, hook):
        seen["grad"] = grad.detach().clone()

    logits = model.run_with_hooks(prompt, fwd_hooks=[(name, keep)])
    expected = torch.autograd.grad(logits[0, -1].logsumexp(-1), kept["act"])[0]
    model.run_with_hooks(prompt, bwd_hooks=[(name, grad_hook)])[0, -1].logsumexp(-1).backward()
    assert "grad" in seen, f"the backward hook on {name} never fired"
    assert torch.allclose(seen["grad"], expected, atol=1e-6, rtol=1e-4)
    model.zero_grad(set_to_none=True)
    model.hf_model.zero_grad(set_to_none=True)


def test_run_with_cache_takes_transformerlens_options():
    model = tiny("llava_next_video")
    prompt = make_prompt(model)
    loss, cache = model.run_with_cache(
        prompt, return_type="loss", incl_bwd=True, names_filter=lambda n: n.endswith("hook_resid_post")
    )
    assert "blocks.0.hook_resid_post_grad" in cache.keys()
    _, sliced = model.run_with_cache(prompt, pos_slice=-1, names_filter="blocks.0.hook_resid_post")
    with torch.no_grad():
        _, full = model.run_with_cache(prompt, names_filter="blocks.0.hook_resid_post")
    assert torch.equal(sliced["blocks.0.hook_resid_post"], full["blocks.0.hook_resid_post"][:, -1:])
    _, plain = model.run_with_cache(prompt, names_filter="blocks.0.hook_resid_post", return_cache_object=False)
    assert isinstance(plain, dict)
    model.hf_model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("family", ["llava_next_video", "qwen2_5_vl", "qwen3_vl"])
def test_cfg_carries_transformerlens_fields_with_true_values(family):
    model = tiny(family)
    cfg, text = model.cfg, model.adapter.text_config(model.hf_model.config)
    assert cfg.normalization_type == "RMSPre" and not cfg.attn_only and cfg.gated_mlp
    assert cfg.d_mlp == model.blocks[0].hf_layer.mlp.down_proj.in_features
    assert cfg.n_key_value_heads == text.num_key_value_heads
    assert cfg.act_fn == text.hidden_act
    assert cfg.tokenizer_prepends_bos == (model.tokenizer("a")["input_ids"][0] == model.tokenizer.bos_token_id)
    assert model.W_Q.shape == (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head)
    assert model.OV.shape == (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_model)
    direction = model.tokens_to_residual_directions(5)
    assert torch.equal(direction, model.W_U[:, 5])


def test_hooks_given_as_a_generator_fire_as_a_list_does():
    model = tiny("llava_next_video")
    prompt = make_prompt(model)

    def double(x, hook):
        return 2 * x

    with torch.no_grad():
        clean = model(prompt)
        as_list = model.run_with_hooks(prompt, fwd_hooks=[("blocks.0.hook_resid_pre", double)])
        as_generator = model.run_with_hooks(prompt, fwd_hooks=((n, double) for n in ["blocks.0.hook_resid_pre"]))
    assert not torch.equal(as_list, clean)
    assert torch.equal(as_generator, as_list)


def test_module_parameter_api_acts_on_the_hf_weights():
    torch.manual_seed(0)
    hf, processor = build_tiny_model("qwen2_5_vl")
    model = HookedVideoLLM.from_hf(hf, processor)
    named = dict(model.named_parameters())
    assert named.keys() == dict(hf.named_parameters()).keys()
    assert all(named[n] is p for n, p in hf.named_parameters())
    assert model.state_dict().keys() == hf.state_dict().keys()
    prompt = make_prompt(model)
    model(prompt)[0, -1].logsumexp(-1).backward()
    assert hf.lm_head.weight.grad is not None
    model.zero_grad()
    assert all(p.grad is None for p in hf.parameters())
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in hf.parameters())
    with torch.no_grad():
        before = model(prompt).double()
        model.double()
        assert model.cfg.dtype == torch.float64 and all(p.dtype == torch.float64 for p in hf.parameters())
        after = model(prompt)
    assert after.dtype == torch.float64 and (after - before).abs().max() < 1e-4


def test_return_type_none_still_runs_the_final_norm_hooks():
    model = tiny("llava_next_video")
    prompt = make_prompt(model, answer=1)
    with torch.no_grad():
        out, cache = model.run_with_cache(prompt, return_type=None)
        logits = model(prompt)
    assert out is None
    a, b = 3, 5
    stack = cache.accumulated_resid(layer=-1, pos_slice=-1)[-1:]
    attrs = cache.logit_attrs(stack, tokens=torch.tensor([a]), incorrect_tokens=torch.tensor([b]), pos_slice=-1)
    assert torch.allclose(attrs[0], logits[:, -1, a] - logits[:, -1, b], atol=TOL)


def test_stop_at_the_last_layer_returns_the_final_residual():
    model = tiny("qwen2_5_vl")
    prompt = make_prompt(model)
    with torch.no_grad():
        stopped = model(prompt, stop_at_layer=model.cfg.n_layers)
        final = model(prompt, return_type="resid")
    assert torch.equal(stopped, final)


def test_pos_slice_cuts_each_hook_on_its_own_position_axis():
    model = tiny("qwen2_5_vl")
    prompt = make_prompt(model)
    names = ["blocks.0.attn.hook_rot_q", "blocks.0.attn.hook_rot_k", "blocks.0.attn.hook_pattern", "hook_video_embeds"]
    names.append("vision.blocks.0.hook_resid_post")
    with torch.no_grad():
        _, full = model.run_with_cache(prompt, names_filter=names)
        _, sliced = model.run_with_cache(prompt, names_filter=names, pos_slice=[0, -1])
    keep = [0, prompt.seq_len - 1]
    for name in names[:2]:  # (batch, pos, head, d_head)
        assert torch.equal(sliced[name], full[name][:, keep])
    assert torch.equal(sliced[names[2]], full[names[2]][:, :, keep])  # (batch, head, query, key): the query axis
    for name in names[3:]:  # no prompt-position axis: kept whole
        assert torch.equal(sliced[name], full[name])


def test_a_read_only_hook_on_hook_scale_leaves_the_output_bitwise_equal():
    model = tiny("llava_next_video")
    prompt = make_prompt(model)
    edited_scale = {}

    def halve(scale, hook):
        edited_scale["value"] = scale
        return scale * 2

    with torch.no_grad():
        clean = model(prompt)
        read = model.run_with_hooks(prompt, fwd_hooks=[("ln_final.hook_scale", lambda x, hook: None)])
        resid = model(prompt, return_type="resid")
        edited = model.run_with_hooks(prompt, fwd_hooks=[("ln_final.hook_scale", halve)])
    assert torch.equal(read, clean)
    by_hand = model.unembed(resid / (2 * edited_scale["value"]))  # the edited divisor, applied by hand
    assert torch.allclose(edited, by_hand, atol=1e-5)


def test_key_value_weights_per_key_head_reproduce_hook_k_and_hook_v():
    torch.manual_seed(0)
    hf, processor = build_tiny_model("qwen2_5_vl")  # grouped-query attention with biases on q, k, v
    model = HookedVideoLLM.from_hf(hf, processor)
    attn = model.blocks[1].attn
    with torch.no_grad():  # HF initialises biases to zero: random ones, so that they count
        for proj in (attn.hf_module.k_proj, attn.hf_module.v_proj):
            proj.bias.normal_()
    prompt = make_prompt(model)
    with torch.no_grad():
        _, cache = model.run_with_cache(prompt, names_filter=lambda n: n.startswith("blocks.1."))
    x = cache["blocks.1.ln1.hook_normalized"]
    for kind in ("k", "v"):
        weight, bias = getattr(attn, f"_W_{kind.upper()}"), getattr(attn, f"_b_{kind.upper()}")
        assert weight.shape[0] == bias.shape[0] == model.cfg.n_kv_heads
        by_hand = torch.einsum("bpm,hmd->bphd", x, weight) + bias
        assert torch.allclose(by_hand, cache[f"blocks.1.attn.hook_{kind}"], atol=1e-5)


def test_token_directions_are_the_columns_of_W_U():
    model = tiny("internvl")
    tokens = torch.tensor([[3, 7], [11, 2]])
    assert torch.equal(model.tokens_to_residual_directions(tokens), model.W_U[:, tokens].movedim(0, -1))
