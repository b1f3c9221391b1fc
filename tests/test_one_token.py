"""The one-token layer path (knockouts into the last token) equals HF's layer code, and steps aside when it must."""

from __future__ import annotations

import importlib

import pytest
import torch

from videolens import EdgeKnockout, HookedVideoLLM
from videolens.analyses.flow import TARGETS
from videolens.analyses.windows import center
from videolens.core import attention
from videolens.core.one_token import OneTokenLayer, RotaryAtOnePosition
from videolens.engine.sweep import SweepEngine
from videolens.testing import build_tiny_model

from conftest import FAMILIES, make_prompt, tiny

TOL = 1e-5


def _to_last(model) -> list[EdgeKnockout]:
    n = model.cfg.n_layers
    pathways = TARGETS["question-and-options-to-last"].values()
    return [make(center(layer, 3, n)) for make in pathways for layer in range(n)]


def _plain(model, prompt, knockouts) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([model(prompt, interventions=[ko])[0, -1] for ko in knockouts])


def _assert_fast_sweep_equals_plain(model, prompt, monkeypatch) -> None:
    """A sweep into the last token runs every layer through the one-token path and equals full forwards."""
    knockouts = _to_last(model)
    plain = _plain(model, prompt, knockouts)
    fast_layers = _count_fast_calls(monkeypatch)
    got = SweepEngine(model, prompt).last_logits(knockouts)
    assert sorted(set(fast_layers)) == list(range(model.cfg.n_layers))
    assert (got - plain).abs().max().item() <= TOL


def _count_fast_calls(monkeypatch) -> list[int]:
    """Spy on the one-token layer's arithmetic: the layers it ran, call by call."""
    layers: list[int] = []
    compute = OneTokenLayer._compute

    def spy(self, resid, call, position_embeddings):
        layers.append(call.layer)
        return compute(self, resid, call, position_embeddings)

    monkeypatch.setattr(OneTokenLayer, "_compute", spy)
    return layers


@pytest.mark.parametrize("family", FAMILIES)
def test_one_token_layer_equals_the_layers_own_code(family):
    """On one-token rows over a cached prefix, the flat layer gives what HF's decoder layer gives."""
    model = tiny(family)
    engine = SweepEngine(model, make_prompt(model, answer=1))
    n = engine.seq_len
    pe, past = engine._suffix_inputs(n - 1)
    torch.manual_seed(1)
    for layer, block in enumerate(model.blocks):
        assert block._one_token is not None, f"{family} layer {layer} has no one-token path"
        resid = engine.resid_pre[layer][:, -1:] + 0.1 * torch.randn(5, 1, model.cfg.d_model)
        allowed = torch.rand(5, 1, 1, n) > 0.3
        allowed[..., -1] = True
        call = attention.LayerCall(layer, block.attn, allowed, past, None)
        with torch.no_grad(), model.driving():
            fast = block._one_token._compute(resid, call, pe)
            own = block._compute(resid, call, pe)
        assert (fast - own).abs().max().item() <= TOL


def test_rotary_matrix_equals_hfs_rotary_function():
    """The one-position rotary matrix of each family rotates queries and keys as HF's own function does."""
    for family in ("llava_next_video", "qwen2_5_vl", "qwen3_vl"):
        model = tiny(family)
        engine = SweepEngine(model, make_prompt(model))
        attn = model.blocks[0].attn.hf_module
        hf_rotary = importlib.import_module(type(attn).__module__).apply_rotary_pos_emb
        cos, sin = engine.position_embeddings
        torch.manual_seed(2)
        h, kv, d = model.cfg.n_heads, model.cfg.n_kv_heads, model.cfg.d_head
        query, key = torch.randn(6, h, d), torch.randn(6, kv, d)
        for position in (0, 7, engine.seq_len - 1):
            pe = (cos[..., position : position + 1, :], sin[..., position : position + 1, :])
            got_q, got_k = RotaryAtOnePosition(hf_rotary)(query, key, pe)
            want_q, want_k = hf_rotary(query[:, :, None], key[:, :, None], *pe)  # (rows, head, 1 position, d)
            assert (got_q - want_q[:, :, 0]).abs().max().item() <= 1e-6
            assert (got_k - want_k[:, :, 0]).abs().max().item() <= 1e-6


@pytest.mark.parametrize("as_bias", [False, True])
@pytest.mark.parametrize("mask_rows", [1, 5])
@pytest.mark.parametrize("mask_heads", [1, 4])
def test_one_query_attention_equals_softmax_over_all_keys(as_bias, mask_rows, mask_heads):
    """One query per row over [shared prefix, own key]: one float64 softmax, grouped heads, a row with only its own key."""
    torch.manual_seed(0)
    rows, heads, kv_heads, prefix, d_head = 5, 4, 2, 40, 8
    query = torch.randn(rows, heads, 1, d_head)
    past_k, past_v = torch.randn(2, 1, kv_heads, prefix, d_head)
    key, value = torch.randn(2, rows, kv_heads, 1, d_head)
    allowed = torch.rand(mask_rows, mask_heads, 1, prefix + 1) > 0.3
    allowed[..., -1] = True
    allowed[-1, :, :, :prefix] = False  # this row may attend to its own key only
    mask = torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf")) if as_bias else allowed
    got = attention._attend_shared_prefix(query, past_k, past_v, key, value, mask, d_head**-0.5, 2, merged=False)
    k_all = torch.cat([past_k.expand(rows, -1, -1, -1), key], 2).repeat_interleave(2, dim=1).double()
    v_all = torch.cat([past_v.expand(rows, -1, -1, -1), value], 2).repeat_interleave(2, dim=1).double()
    scores = (query.double() @ k_all.transpose(2, 3) * d_head**-0.5).masked_fill(~allowed, float("-inf"))
    want = torch.softmax(scores, dim=-1) @ v_all
    assert got.shape == want.shape and (got.double() - want).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_a_sweep_into_the_last_token_runs_the_one_token_path_and_equals_full_forwards(family, monkeypatch):
    """Every family (grouped-query ones included) against full HF forwards with the same knockouts."""
    model = tiny(family)
    _assert_fast_sweep_equals_plain(model, make_prompt(model, answer=2), monkeypatch)


def test_a_hooked_layer_runs_its_own_code(monkeypatch):
    """A hook on one layer sends that layer (only) through HF's code, and the hook sees the one-token rows."""
    model = tiny("llava_next_video")
    prompt = make_prompt(model, answer=0)
    knockouts = _to_last(model)
    seen = []
    with torch.no_grad():
        plain = torch.stack(
            [
                model.run_with_hooks(
                    prompt,
                    interventions=[ko],
                    fwd_hooks=[("blocks.1.attn.hook_pattern", lambda p, hook: p.mul(0.5))],
                )[0, -1]
                for ko in knockouts
            ]
        )
    fast_layers = _count_fast_calls(monkeypatch)
    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", lambda p, hook: seen.append(p.shape) or p.mul(0.5))]):
        got = SweepEngine(model, prompt).last_logits(knockouts)
    assert 1 not in fast_layers and 0 in fast_layers
    assert seen and all(shape[-2] == 1 for shape in seen[1:])  # after the clean pass: one query per row
    assert (got - plain).abs().max().item() <= TOL


def test_a_layer_of_unknown_structure_has_no_one_token_path():
    hf, processor = build_tiny_model("llava_next_video")
    hf.model.language_model.layers[1].extra_norm = torch.nn.LayerNorm(hf.config.text_config.hidden_size)
    model = HookedVideoLLM.from_hf(hf, processor)
    assert model.blocks[0]._one_token is not None
    assert model.blocks[1]._one_token is None


def test_a_layer_whose_code_differs_keeps_its_own_code_with_a_warning(monkeypatch):
    """The first call of each layer is checked against the layer's own code; a mismatch is caught, not returned."""
    torch.manual_seed(0)
    model = HookedVideoLLM.from_hf(*build_tiny_model("llava_next_video"))
    prompt = make_prompt(model, answer=0)
    knockouts = _to_last(model)
    plain = _plain(model, prompt, knockouts)
    compute = OneTokenLayer._compute

    def off_in_layer_1(self, resid, call, position_embeddings):
        out = compute(self, resid, call, position_embeddings)
        return out * 1.5 if call.layer == 1 else out

    monkeypatch.setattr(OneTokenLayer, "_compute", off_in_layer_1)
    with pytest.warns(UserWarning, match="Layer 1: the one-token fast path differs"):
        got = SweepEngine(model, prompt).last_logits(knockouts)
    assert (got - plain).abs().max().item() <= TOL
    assert model.blocks[1]._one_token is None and model.blocks[0]._one_token is not None
    again = SweepEngine(model, prompt).last_logits(knockouts)
    assert (again - plain).abs().max().item() <= TOL


def test_transformers_own_output_capturing_hooks_leave_the_fast_path_on(monkeypatch):
    """Asking the HF model for hidden states installs transformers' (inert) capture hooks on its layers; they must not count as hooks."""
    torch.manual_seed(0)
    model = HookedVideoLLM.from_hf(*build_tiny_model("llava_next_video"))
    prompt = make_prompt(model, answer=0)
    with torch.no_grad():
        model.hf_model(**prompt.inputs, output_hidden_states=True)
    assert any(block.hf_layer._forward_hooks for block in model.blocks)  # transformers put them there
    _assert_fast_sweep_equals_plain(model, prompt, monkeypatch)


class _Scaled(torch.nn.Module):
    """A stand-in for an adapter wrapper (LoRA): the wrapped linear's output, changed."""

    def __init__(self, base: torch.nn.Linear) -> None:
        super().__init__()
        self.base_layer = base
        self.weight = base.weight  # as wrappers expose it: reading it alone would miss the change

    def forward(self, x):
        return 1.5 * self.base_layer(x)


def test_a_projection_swapped_in_later_sends_the_layer_back_to_its_own_code(monkeypatch):
    torch.manual_seed(0)
    model = HookedVideoLLM.from_hf(*build_tiny_model("llava_next_video"))
    prompt = make_prompt(model, answer=0)
    SweepEngine(model, prompt).last_logits(_to_last(model))  # verified before the swap
    attn = model.blocks[1].hf_layer.self_attn
    attn.v_proj = _Scaled(attn.v_proj)
    knockouts = _to_last(model)
    plain = _plain(model, prompt, knockouts)
    fast_layers = _count_fast_calls(monkeypatch)
    got = SweepEngine(model, prompt).last_logits(knockouts)
    assert 1 not in fast_layers and 0 in fast_layers
    assert (got - plain).abs().max().item() <= TOL


def test_a_projection_that_is_not_a_plain_linear_has_no_one_token_path():
    class QuantizedLike(torch.nn.Linear):
        def forward(self, x):
            return super().forward(x).round()

    hf, processor = build_tiny_model("llava_next_video")
    mlp = hf.model.language_model.layers[0].mlp
    quantized = QuantizedLike(mlp.up_proj.in_features, mlp.up_proj.out_features, bias=False)
    quantized.weight = mlp.up_proj.weight
    mlp.up_proj = quantized
    model = HookedVideoLLM.from_hf(hf, processor)
    assert model.blocks[0]._one_token is None and model.blocks[1]._one_token is not None


def test_rotary_with_embeddings_per_row_equals_hfs_rotary_function():
    """Rows whose position embeddings differ (one position each) rotate as HF's function rotates each row."""
    model = tiny("llava_next_video")
    engine = SweepEngine(model, make_prompt(model))
    hf_rotary = importlib.import_module(type(model.blocks[0].attn.hf_module).__module__).apply_rotary_pos_emb
    cos, sin = engine.position_embeddings
    positions = torch.tensor([3, 0, 11, engine.seq_len - 1])
    pe = (cos[0, positions][:, None], sin[0, positions][:, None])  # (rows, 1 position, d_head)
    torch.manual_seed(3)
    query, key = (
        torch.randn(4, model.cfg.n_heads, model.cfg.d_head),
        torch.randn(4, model.cfg.n_kv_heads, model.cfg.d_head),
    )
    got_q, got_k = RotaryAtOnePosition(hf_rotary)(query, key, pe)
    for row, position in enumerate(positions.tolist()):
        one = (cos[..., position : position + 1, :], sin[..., position : position + 1, :])
        want_q, want_k = hf_rotary(query[row : row + 1, :, None], key[row : row + 1, :, None], *one)
        assert (got_q[row] - want_q[0, :, 0]).abs().max().item() <= 1e-6
        assert (got_k[row] - want_k[0, :, 0]).abs().max().item() <= 1e-6


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava_onevision"])
def test_head_specific_knockouts_into_the_last_token_equal_full_forwards(family, monkeypatch):
    """Per-head masks in the grouped one-query attention: heads of one key head blocked apart, mixed with all-head rows."""
    model = tiny(family)
    prompt = make_prompt(model, answer=1)
    n = model.cfg.n_layers
    assert model.cfg.n_heads // model.cfg.n_kv_heads > 1  # the grouping this checks
    knockouts = [EdgeKnockout("question", "last", layers=center(layer, 3, n), heads=[1]) for layer in range(n)]
    knockouts += [EdgeKnockout("video", "last", layers=[layer], heads=[0, 3]) for layer in range(n)]
    knockouts += [EdgeKnockout("video", "last", layers=[layer]) for layer in range(n)]
    plain = _plain(model, prompt, knockouts)
    fast_layers = _count_fast_calls(monkeypatch)
    got = SweepEngine(model, prompt).last_logits(knockouts)
    assert sorted(set(fast_layers)) == list(range(n))
    assert (got - plain).abs().max().item() <= TOL
