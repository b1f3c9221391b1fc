"""PLLaVA-format models: parity, layout, hooks, knockouts, offline loading, pooling, generation."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import model_adapters.pllava  # noqa: F401  (registers the adapter)
from model_adapters.pllava.modeling import PllavaProcessor
from videolens import EdgeKnockout, HookedVideoLLM
from videolens.engine.reference import reference_logits
from videolens.testing import build_tiny_pllava, random_video

TOL = 1e-5


@functools.cache
def tiny_pllava(attn: str = "eager") -> HookedVideoLLM:
    return HookedVideoLLM.from_hf(*build_tiny_pllava(attn_implementation=attn))


def make_prompt(model: HookedVideoLLM, seed: int = 0):
    return model.prepare(
        random_video(8, seed=seed),
        "What moved first?",
        options=["the red square", "the blue circle", "nothing"],
        answer_prefix="Best option:(",
        system="Watch.",
    )


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_logits_equal_the_hf_model(attn):
    model = tiny_pllava(attn)
    prompt = make_prompt(model)
    with torch.no_grad():
        ours = model(prompt)
        ref = model.hf_model(**prompt.inputs).logits
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= TOL


def test_layout_is_eight_frames_of_two_by_two():
    model = tiny_pllava()
    prompt = make_prompt(model)
    image_id = model.hf_model.config.image_token_index
    assert model.cfg.video_token_id == image_id
    positions = torch.nonzero(prompt.input_ids[0] == image_id)[:, 0]
    assert torch.equal(prompt.layout["video"], positions)
    assert len(positions) == 8 * 2 * 2
    assert prompt.layout.n_frames == 8
    for t in range(8):
        assert tuple(prompt.layout.grid(t).shape) == (2, 2)
        assert torch.equal(prompt.layout.frame(t), positions[4 * t : 4 * t + 4])
        assert prompt.layout.frames[t].input_frames == (t,)
    assert prompt.text.count("<image>") == 1


def test_frames_map_to_adaptive_pooling_bins():
    model = tiny_pllava()
    prompt = model.prepare(random_video(16), "What moved first?")
    assert prompt.layout.n_frames == 8
    assert [f.input_frames for f in prompt.layout.frames] == [(2 * t, 2 * t + 1) for t in range(8)]


def test_every_hook_fires_and_edits_change_the_logits():
    model = tiny_pllava()
    prompt = make_prompt(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        clean, cache = model.run_with_cache(prompt)
        assert set(cache.keys()) == set(model.hook_dict)
        assert cache["hook_video_embeds"].shape == (1, 32, model.cfg.d_model)
        video = model.hf_model.get_video_features(prompt.inputs["pixel_values"])
        assert torch.allclose(cache["hook_video_embeds"], video, atol=1e-6)
        for name in model.hook_dict:

            def edit(x, hook, name=name):
                if name.endswith("hook_pattern"):
                    return x * 0.5
                if name.endswith("hook_attn_scores"):
                    return x + torch.randn(x.shape, generator=gen) * 3.0
                return x + torch.randn(x.shape, generator=gen) * x.std().clamp_min(1.0)

            edited = model.run_with_hooks(prompt, fwd_hooks=[(name, edit)])
            assert (edited - clean).abs().max().item() > 1e-3, name


def test_knockout_equals_reference_method():
    model = tiny_pllava("eager")
    prompt = make_prompt(model)
    lay = prompt.layout
    cross = [(torch.cat([lay.frame(s) for s in range(t)]), lay.frame(t)) for t in range(1, lay.n_frames)]
    ko = EdgeKnockout.cross_frame(layers=[0, 1]) + EdgeKnockout("video", "last", layers=[1])
    with torch.no_grad():
        ours = model(prompt, interventions=[ko])
        clean = model(prompt)
    ref = reference_logits(model, prompt, {0: cross, 1: [*cross, (lay["video"], lay["last"])]})
    assert (ours - ref).abs().max().item() <= TOL
    assert (ours - clean).abs().max().item() > 1e-4


def test_save_and_load_offline(tmp_path):
    model = tiny_pllava()
    prompt = make_prompt(model)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "llava"
    assert config["architectures"] == ["PllavaForConditionalGeneration"]
    assert config["pooling_shape"] == [8, 2, 2]
    loaded = HookedVideoLLM.from_pretrained(tmp_path, attn_implementation="eager")
    assert type(loaded.hf_model).__name__ == "PllavaForConditionalGeneration"
    assert loaded.cfg.family == "pllava"
    again = make_prompt(loaded)
    assert torch.equal(again.input_ids, prompt.input_ids)
    assert torch.equal(again.inputs["pixel_values"], prompt.inputs["pixel_values"])
    with torch.no_grad():
        assert (loaded(again) - model(prompt)).abs().max().item() <= TOL
    # checkpoints name the CLIP tower ``vision_tower.vision_model.*`` (transformers 5 saves it
    # without ``vision_model``); such a checkpoint loads to the same logits
    weights = load_file(tmp_path / "model.safetensors")
    assert {".".join(k.split(".")[:2]) for k in weights if not k.startswith("vision_tower.")} == {
        "multi_modal_projector.linear_1",
        "multi_modal_projector.linear_2",
        "language_model.model",
        "language_model.lm_head",
    }
    renamed = {k.replace("vision_tower.", "vision_tower.vision_model.", 1): v for k, v in weights.items()}
    save_file(renamed, tmp_path / "model.safetensors", metadata={"format": "pt"})
    original = HookedVideoLLM.from_pretrained(tmp_path, attn_implementation="eager")
    with torch.no_grad():
        assert (original(again) - model(prompt)).abs().max().item() <= TOL
    # a checkpoint without pllava_processor.json takes the pooling shape from config.json
    (tmp_path / PllavaProcessor.FILE).unlink()
    processor = PllavaProcessor.from_pretrained(tmp_path)
    assert processor.pooling_shape == (8, 2, 2)
    assert torch.equal(processor(text=[again.text], videos=[random_video(8)])["input_ids"], prompt.input_ids)


def test_projector_pooling_equals_adaptive_avg_pool3d():
    hf = tiny_pllava().hf_model
    proj = hf.multi_modal_projector
    features = torch.randn(2 * 8, 16, hf.config.vision_config.hidden_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = proj(features, n_videos=2)
        hidden = proj.linear_2(torch.nn.functional.gelu(proj.linear_1(features)))
        grid = hidden.view(2, 8, 4, 4, -1).permute(0, 4, 1, 2, 3)  # (B, D, T, 4, 4)
        pooled = torch.nn.functional.adaptive_avg_pool3d(grid, (8, 2, 2))
        expected = pooled.permute(0, 2, 3, 4, 1).reshape(2, 8 * 2 * 2, -1)
    assert ours.shape == (2, 32, hf.config.text_config.hidden_size)
    assert torch.allclose(ours, expected, atol=1e-6)
    # 4D pixels (PLLaVA's own (B*T, 3, H, W) convention) give the same features as 5D
    pixels = make_prompt(tiny_pllava()).inputs["pixel_values"]
    with torch.no_grad():
        assert torch.equal(hf.get_video_features(pixels), hf.get_video_features(pixels[0], n_videos=1))


def test_greedy_generation_matches_repeated_forwards():
    model = tiny_pllava()
    prompt = make_prompt(model)
    hf, inputs = model.hf_model, prompt.inputs
    with torch.no_grad():
        generated = hf.generate(**inputs, max_new_tokens=3, do_sample=False)[:, prompt.seq_len :]
        ids, expected = inputs["input_ids"], []
        for _ in range(3):
            logits = hf(input_ids=ids, pixel_values=inputs["pixel_values"]).logits
            token = logits[:, -1].argmax(-1, keepdim=True)
            expected.append(token)
            ids = torch.cat([ids, token], dim=1)
    assert torch.equal(generated, torch.cat(expected, dim=1))
    ours = model.generate(prompt, max_new_tokens=3, stop_at_eos=False, return_type="tokens")
    assert torch.equal(ours, generated)
