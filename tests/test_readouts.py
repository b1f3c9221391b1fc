"""Chunked group-pooled attention equals pooling the full patterns."""

from __future__ import annotations

import pytest
import torch

from videolens.engine.readouts import pooled_attention

from conftest import FAMILIES, make_prompt, tiny


@pytest.mark.parametrize("family", FAMILIES)
def test_pooled_attention_equals_pooling_full_patterns(family):
    model = tiny(family)
    prompt = make_prompt(model)
    out = pooled_attention(model, prompt, rows="last", chunk=7)
    _, cache = model.run_with_cache(prompt, names_filter=lambda n: n.endswith("hook_pattern"))
    layout = prompt.layout
    groups = [layout.frame(t) for t in range(layout.n_frames)] + [layout["question"], layout["last"]]
    assert out.groups[-2:] == ["question", "last"] and len(out.groups) == len(groups)
    for i, layer in enumerate(out.layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0]
        for a, qg in enumerate(groups):
            for b, kg in enumerate(groups):
                expected = pattern[:, qg][..., kg].sum(-1).mean(-1)
                assert torch.allclose(out.pooled[i, :, a, b], expected, atol=1e-5)
        assert torch.allclose(out.rows[i, :, 0], pattern[:, -1], atol=1e-5)
    df = out.to_frame()
    assert len(df) == out.pooled.numel() and set(df["query_group"]) == set(out.groups)


def test_pooled_attention_custom_groups_and_layers():
    model = tiny("qwen2_5_vl")
    prompt = make_prompt(model)
    out = pooled_attention(model, prompt, {"video": "video", "text": "text"}, layers=[1])
    assert out.pooled.shape == (1, model.cfg.n_heads, 2, 2)
    # causal attention rows sum to one over all keys, and video+text covers every key
    assert torch.allclose(out.pooled[0, :, 1].sum(-1), torch.ones(model.cfg.n_heads), atol=1e-5)
