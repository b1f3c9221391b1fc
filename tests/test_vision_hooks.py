"""The ``vision.`` hooks read the vision tower's and projector's true values, edits land, and they cost nothing unused.

References are HF's own: the tower's ``output_hidden_states`` (called through the model's
feature function on the prompt's pixels), the weights HF's own eager attention function
computes in its own per-chunk calls, and the HF modules applied to those values.
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager

import pytest
import torch
from test_hooks import _edit
from transformers import AttentionInterface

from videolens import VideoLensError
from videolens.adapters.protocol import get_path
from videolens.core import vision as vision_module
from videolens.core.vision import VISION_ATTN_IMPLEMENTATION, vision_attention
from videolens.errors import LayerRangeError
from videolens.testing.sizes import VISION_LAYERS

from conftest import FAMILIES, make_prompt, tiny
from test_parity import ours_left_on

#: Families whose features are HF's ``vision_feature_layer=-2``: the tower's last layer feeds nothing.
FEATURES_AT_MINUS_2 = {"llava_next_video", "video_llava", "pllava"}
#: Families whose tower packs all frames into one sequence, features = its last hidden state.
PACKED = {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "videollama3"}
#: The output projection of each family's vision attention (it takes ``attn.hook_z``).
O_PROJ = {"internvl": "projection_layer", "qwen2_vl": "proj", "qwen2_5_vl": "proj", "qwen3_vl": "proj"}
RECORDER = "videolens_test_eager_recorder"


def vision_names(model) -> list[str]:
    return [name for name in model.hook_dict if name.startswith("vision.")]


@contextmanager
def hf_eager_weights(model):
    """The tower runs HF's own eager attention (its per-chunk calls); yields the weights each module computed."""
    attns = [block.attn.hf_module for block in model.vision.blocks]
    eager = sys.modules[type(attns[0]).__module__].eager_attention_forward
    weights: dict[torch.nn.Module, list[torch.Tensor]] = {}

    def record(module, *args, **kwargs):
        out, w = eager(module, *args, **kwargs)
        weights.setdefault(module, []).append(w)
        return out, w

    AttentionInterface.register(RECORDER, record)
    configs = {id(a.config): (a.config, a.config._attn_implementation_internal) for a in attns}
    try:
        for config, _ in configs.values():
            config._attn_implementation_internal = RECORDER
        yield weights
    finally:
        for config, impl in configs.values():
            config._attn_implementation_internal = impl


def hf_tower_outputs(family: str, model, prompt):
    """HF's tower outputs (hidden states, last hidden state, pooler output) for the prompt's frames."""
    hf, inputs = model.hf_model, prompt.inputs
    if family == "pllava":  # videolens' own PLLaVA class: its CLIP tower directly
        return hf.vision_tower(inputs["pixel_values"].flatten(0, 1), output_hidden_states=True)
    if family == "internvl":  # frames are encoded as images
        return hf.model.get_image_features(pixel_values=inputs["pixel_values"], output_hidden_states=True)
    keys = ("pixel_values_videos", "video_grid_thw", "video_merge_sizes")
    return hf.model.get_video_features(**{k: inputs[k] for k in keys if k in inputs}, output_hidden_states=True)


def hf_features(family: str, model, out) -> torch.Tensor:
    """What the family hands the module after its tower, from HF's outputs (its feature-layer selection)."""
    config = model.hf_model.config
    if family in PACKED:
        return out.last_hidden_state
    if family == "internvl":  # CLS dropped, then HF's pixel shuffle
        patches = out.last_hidden_state[:, 1:]
        side = math.isqrt(patches.shape[1])
        grid = patches.reshape(patches.shape[0], side, side, -1)
        shuffled = model.hf_model.model.pixel_shuffle(grid, scale_factor=config.downsample_ratio)
        return shuffled.reshape(patches.shape[0], -1, shuffled.shape[-1])
    selected = out.hidden_states[config.vision_feature_layer]
    # Video-LLaVA keeps the CLS of video frames; LLaVA-OneVision's strategy is "full"
    return selected if family in ("video_llava", "llava_onevision") else selected[:, 1:]


def hf_projected(family: str, model, out, features: torch.Tensor) -> torch.Tensor:
    """The projector's output from HF: the pooler output, or (pooling after the projector) its layers on the features."""
    if family == "llava_onevision":
        return model.hf_model.model.multi_modal_projector(features)
    if family == "pllava":
        proj = model.hf_model.multi_modal_projector
        return proj.linear_2(proj.act(proj.linear_1(features)))
    pooled = out.pooler_output  # the tiny Qwen2.5-VL tower has one window per frame: window order is frame order
    return torch.cat(list(pooled)) if isinstance(pooled, tuple) else pooled


def close(ours: torch.Tensor, ref: torch.Tensor, atol: float = 1e-5) -> bool:
    return ours.shape == ref.shape and torch.allclose(ours, ref, atol=atol)


@pytest.mark.parametrize("family", FAMILIES)
def test_vision_hooks_read_hfs_own_values(family):
    model = tiny(family)
    prompt = make_prompt(model)
    assert model.vision.n_layers == (VISION_LAYERS - 1 if family in FEATURES_AT_MINUS_2 else VISION_LAYERS)
    with torch.no_grad():
        _, cache = model.run_with_cache(prompt, names_filter=lambda n: n.startswith("vision."))
        with hf_eager_weights(model) as weights:
            out = hf_tower_outputs(family, model, prompt)
    assert set(cache.keys()) == set(vision_names(model))
    hidden = out.hidden_states
    for layer, block in enumerate(model.vision.blocks):
        name = f"vision.blocks.{layer}"
        pre, post = cache[f"{name}.hook_resid_pre"], cache[f"{name}.hook_resid_post"]
        assert close(pre, hidden[layer]) and close(post, hidden[layer + 1]), name
        pattern = torch.cat(weights[block.attn.hf_module])  # HF's chunks (or frames), stacked
        assert close(cache[f"{name}.attn.hook_pattern"], pattern), name
        assert close(cache[f"{name}.attn.hook_attn_scores"].softmax(-1), pattern), name
        attn_out = cache[f"{name}.hook_attn_out"]
        o_proj = getattr(block.attn.hf_module, O_PROJ.get(family, "out_proj"))
        assert close(o_proj(cache[f"{name}.attn.hook_z"].reshape(*attn_out.shape[:-1], -1)), attn_out), name
        # HF's residual arithmetic (InternViT scales each branch by its layer scale)
        scale_1, scale_2 = (block.hf_module.lambda_1, block.hf_module.lambda_2) if family == "internvl" else (1, 1)
        assert close(pre + scale_1 * attn_out + scale_2 * cache[f"{name}.hook_mlp_out"], post), name
    features = hf_features(family, model, out)
    assert close(cache["vision.hook_vision_features"], features)
    projected = hf_projected(family, model, out, features)
    d_model = model.cfg.d_model
    assert close(cache["vision.hook_projected"].reshape(-1, d_model), projected.reshape(-1, d_model))


@pytest.mark.parametrize("family", FAMILIES)
def test_an_edit_at_every_vision_hook_changes_the_logits(family):
    model = tiny(family)
    prompt = make_prompt(model)
    names = vision_names(model)
    with torch.no_grad():
        clean = model(prompt)
        read = model.run_with_hooks(prompt, fwd_hooks=[(lambda n: n in names, lambda x, hook: x)])
        moves = {n: (model.run_with_hooks(prompt, fwd_hooks=[(n, _edit(n))]) - clean).abs().max().item() for n in names}
    assert (read - clean).abs().max().item() <= 1e-6  # reading them all (videolens' attention path) changes nothing
    # the tiny InternViT scales attention by its layer scale 0.1: its pattern edits move the logits ~4e-4
    assert min(moves.values()) > 1e-4, moves
    assert not ours_left_on(model.hf_model)


def test_vision_hooks_are_registered_only_while_used():
    model = tiny("qwen2_5_vl")
    prompt = make_prompt(model)
    tower = get_path(model.hf_model, model.adapter.vision_tower)
    config = model.vision.blocks[0].attn.hf_module.config
    impl = config._attn_implementation_internal
    seen = []

    def spy(_module, _args, _kwargs):  # when the HF forward reaches the language model, the tower is done
        seen.append((ours_left_on(tower), config._attn_implementation_internal))

    handle = model.language_model.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        with torch.no_grad():
            model(prompt)
            model.run_with_hooks(prompt, fwd_hooks=[("vision.blocks.1.hook_resid_post", lambda x, hook: None)])
            model.run_with_hooks(prompt, fwd_hooks=[("vision.blocks.0.attn.hook_pattern", lambda x, hook: None)])
    finally:
        handle.remove()
    assert seen == [([], impl), (["blocks.1"], impl), ([], VISION_ATTN_IMPLEMENTATION)]
    assert not ours_left_on(model.hf_model) and config._attn_implementation_internal == impl


def test_vision_hooks_are_removed_after_an_exception():
    model = tiny("llava_onevision", "sdpa")
    prompt = make_prompt(model)
    config = model.vision.blocks[0].attn.hf_module.config

    def boom(x, hook):
        raise RuntimeError("boom")

    hooks = [("vision.blocks.0.hook_mlp_out", lambda x, hook: None), ("vision.blocks.1.attn.hook_pattern", boom)]
    with pytest.raises(RuntimeError, match="boom"):
        model.run_with_hooks(prompt, fwd_hooks=hooks)
    assert not ours_left_on(model.hf_model) and not vision_module._ATTACHED
    assert config._attn_implementation == "sdpa"
    with torch.no_grad():
        assert torch.allclose(model(prompt), model.hf_model(**prompt.inputs).logits, atol=1e-5)


def test_bad_vision_hook_names_get_the_usual_errors():
    model = tiny("llava_next_video")  # features at layer -2: only vision layer 0 is hooked
    prompt = make_prompt(model)
    with pytest.raises(VideoLensError, match=r"Did you mean vision\.blocks\.0\.hook_resid_pre"):
        model.run_with_hooks(prompt, fwd_hooks=[("vision.blocks.0.hook_resid_pr", lambda x, hook: None)])
    with pytest.raises(VideoLensError, match=r"vision\.blocks\.1\.hook_resid_pre"):
        model.run_with_hooks(prompt, fwd_hooks=[("vision.blocks.1.hook_resid_pre", lambda x, hook: None)])
    with pytest.raises(LayerRangeError, match=r"vision layer 1; the vision tower has hooked layers 0\.\.0"):
        model.vision.check_hook_name("vision.blocks.1.hook_resid_pre")
    model.vision.check_hook_name("vision.blocks.0.hook_resid_pre")


def test_packed_chunks_of_unequal_length_match_hfs_eager_attention():
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import eager_attention_forward

    module = tiny("qwen2_5_vl").vision.blocks[0].attn.hf_module
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 10, 8, generator=gen) for _ in range(3))
    out, pattern = vision_attention(module, q, k, v, None, scaling=0.35, cu_seq_lens_q=torch.tensor([0, 3, 10]))
    assert out.shape == (1, 10, 4, 8) and pattern.shape == (2, 4, 7, 7)
    for chunk, (start, stop) in enumerate(((0, 3), (3, 10))):
        n = stop - start
        ref_out, ref_weights = eager_attention_forward(
            module, q[:, :, start:stop], k[:, :, start:stop], v[:, :, start:stop], None, scaling=0.35
        )
        assert torch.allclose(out[:, start:stop], ref_out, atol=1e-6)
        assert torch.allclose(pattern[chunk, :, :n, :n], ref_weights[0], atol=1e-6)
        assert not pattern[chunk, :, :, n:].any()  # padded keys get no weight
