"""The sweep engine's fast paths (additive masks, sliced shared-prefix attention, late joins) equal the plain path."""

from __future__ import annotations

import pytest
import torch

from videolens import EdgeKnockout
from videolens.analyses.flow import TARGETS
from videolens.analyses.windows import center
from videolens.core import attention
from videolens.engine.palette import MaskPalette
from videolens.engine.sweep import SweepEngine

from conftest import make_prompt, tiny

TOL = 1e-5


def _sweep(model, window: int = 3) -> list[EdgeKnockout]:
    n = model.cfg.n_layers
    kos = [make(center(layer, window, n)) for p in TARGETS.values() for make in p.values() for layer in range(n)]
    return kos + [EdgeKnockout("video", "last", layers=[1], heads=[0, 2]) + EdgeKnockout.cross_frame([0])]


def _plain(model, prompt, knockouts) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([model(prompt, interventions=[ko])[0, -1] for ko in knockouts])


@pytest.mark.parametrize("family", ["llava_next_video", "qwen2_5_vl"])
def test_additive_masks_and_sliced_prefix_attention_equal_the_plain_path(family, monkeypatch):
    """The CUDA forms (additive biases, prefix attention in slices), forced on the CPU."""
    model = tiny(family)
    prompt = make_prompt(model, answer=1)
    knockouts = _sweep(model)
    plain = _plain(model, prompt, knockouts)
    monkeypatch.setattr(MaskPalette, "additive", True)
    assert (SweepEngine(model, prompt).last_logits(knockouts) - plain).abs().max().item() <= TOL
    monkeypatch.setattr(attention, "_SCORE_BUDGET", 1)  # one row per slice
    assert (SweepEngine(model, prompt, max_batch=5).last_logits(knockouts) - plain).abs().max().item() <= TOL


def test_results_do_not_depend_on_how_conditions_are_chunked():
    model = tiny("llava_next_video")
    prompt = make_prompt(model, answer=0)
    knockouts = _sweep(model)
    runs = [SweepEngine(model, prompt, max_batch=b).last_logits(knockouts) for b in (1, 3, 256)]
    assert max((r - runs[0]).abs().max().item() for r in runs[1:]) <= TOL
    tight = SweepEngine(model, prompt, max_tokens=1).last_logits(knockouts)  # one condition per forward
    assert (tight - runs[0]).abs().max().item() <= TOL


@pytest.mark.parametrize("additive", [False, True])
def test_palette_masks_equal_brute_force(additive, monkeypatch):
    """Each batch row's mask in each layer is the causal mask minus that condition's blocked edges."""
    monkeypatch.setattr(MaskPalette, "additive", additive)
    model = tiny("llava_next_video")
    prompt = make_prompt(model)
    engine = SweepEngine(model, prompt)
    n, n_layers = engine.seq_len, model.cfg.n_layers
    knockouts = [EdgeKnockout.cross_frame(center(layer, 3, n_layers)) for layer in range(n_layers)] + [
        EdgeKnockout.cross_frame([0]) + EdgeKnockout("question", "last", layers=[n_layers - 1], heads=[1])
    ]
    members = sorted(engine.compile(knockouts), key=lambda c: c.first_layer)
    q0 = members[0].first_query
    palette = MaskPalette(engine, q0, members)
    causal = torch.ones(n, n, dtype=torch.bool).tril()[q0:]
    for layer in range(n_layers):
        for start, stop in [(0, len(members)), (1, 3), (2, 3)]:
            got = palette.layer_mask(layer, start, stop)
            got = got == 0 if additive else got
            for row, cond in enumerate(members[start:stop]):
                blocked = cond.blocked.get(layer)
                want = causal if blocked is None else causal & ~blocked[0, :, q0:]
                assert torch.equal(
                    got[row if got.shape[0] > 1 else 0].expand_as(want.expand(got.shape[1], -1, -1)),
                    want.expand(got.shape[1], -1, -1),
                )


@pytest.mark.parametrize("merged", [False, True])
@pytest.mark.parametrize("as_bias", [False, True])
@pytest.mark.parametrize("mask_heads", [1, 4])
def test_shared_prefix_attention_equals_softmax_over_all_keys(merged, as_bias, mask_heads):
    """Shared-prefix attention equals one float64 softmax over [prefix, own keys], both ways.

    Merged: prefix and own keys attended apart and merged by log-sum-exp (the CUDA way;
    its fused kernel is checked by ``benchmarks/prefix_attention_check.py``); explicit: one
    score matrix (the CPU way). Includes a query whose own keys are all blocked and one whose prefix keys are all blocked
    (each part then carries no weight; NaNs must not leak into the result).
    """
    torch.manual_seed(0)
    rows, heads, kv_heads, q_len, prefix, d_head = 5, 4, 2, 9, 40, 8
    query = torch.randn(rows, heads, q_len, d_head)
    past_k, past_v = torch.randn(2, 1, kv_heads, prefix, d_head)
    key, value = torch.randn(2, rows, kv_heads, q_len, d_head)
    blocked = torch.rand(rows, mask_heads, q_len, prefix + q_len) < 0.3
    blocked[..., 3, prefix:] = True
    blocked[..., 5, :prefix] = True
    allowed = attention.causal_allowed(q_len, prefix + q_len, "cpu") & ~blocked
    mask = torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf")) if as_bias else allowed
    got = attention._attend_shared_prefix(query, past_k, past_v, key, value, mask, d_head**-0.5, 2, merged)
    k_all = torch.cat([past_k.expand(rows, -1, -1, -1), key], 2).repeat_interleave(2, dim=1).double()
    v_all = torch.cat([past_v.expand(rows, -1, -1, -1), value], 2).repeat_interleave(2, dim=1).double()
    scores = (query.double() @ k_all.transpose(2, 3) * d_head**-0.5).masked_fill(~allowed, float("-inf"))
    want = torch.softmax(scores, dim=-1) @ v_all
    assert (got.double() - want).abs().max().item() <= 1e-5


@pytest.mark.parametrize("additive", [False, True])
@pytest.mark.parametrize("mask_heads", [1, 4])
@pytest.mark.parametrize("shape", [(2, 70, 90), (1, 64, 64), (3, 33, 200)])
def test_causal_chunks_equal_one_masked_attention(shape, mask_heads, additive, monkeypatch):
    """Chunks of queries over the keys up to each chunk's end give the one-call result."""
    monkeypatch.setattr(attention, "_CAUSAL_CHUNK", 8)
    batch, q_len, k_len = shape
    torch.manual_seed(q_len)
    query = torch.randn(batch, 4, q_len, 16)
    key, value = torch.randn(2, batch, 4, k_len, 16)
    allowed = attention.causal_allowed(q_len, k_len, "cpu") & (torch.rand(batch, mask_heads, q_len, k_len) > 0.3)
    allowed[..., 0] = True  # every query keeps a key
    mask = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf")) if additive else allowed
    want = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=0.25)
    got = attention._attend_in_causal_chunks(query, key, value, mask, 0.25)
    assert got.shape == want.shape and (got - want).abs().max().item() <= TOL


def test_sweep_with_causal_chunks_equals_the_plain_path(monkeypatch):
    model = tiny("qwen2_5_vl")
    prompt = make_prompt(model, answer=1)
    knockouts = _sweep(model)
    plain = _plain(model, prompt, knockouts)
    monkeypatch.setattr(attention, "_CAUSAL_CHUNK", 16)  # the toy prompt's ~200 recomputed queries: 8 chunks
    calls = []
    chunked = attention._attend_in_causal_chunks
    monkeypatch.setattr(attention, "_attend_in_causal_chunks", lambda *a: calls.append(1) or chunked(*a))
    assert (SweepEngine(model, prompt).last_logits(knockouts) - plain).abs().max().item() <= TOL
    assert calls  # the chunked path ran
    with torch.no_grad():
        cross_frame = EdgeKnockout.cross_frame([0, 1])
        direct = model(prompt, interventions=[cross_frame])[0, -1]
    monkeypatch.setattr(attention, "_CAUSAL_CHUNK", 10**9)
    with torch.no_grad():
        assert (direct - model(prompt, interventions=[cross_frame])[0, -1]).abs().max().item() <= TOL
