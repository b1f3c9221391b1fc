"""TransformerLens' own ActivationCache tools give their identities on every videolens model.

Each identity is checked against the model's own outputs (the logits, the residual
stream, the attention output), computed by the forward pass, not by the tool under test.
"""

from __future__ import annotations

import pytest
import torch

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
