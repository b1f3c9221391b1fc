"""PLLaVA-format models: what the generic per-family tests do not cover.

PLLaVA runs every generic test (parity, hooks, layout, knockouts, sweeps, save/load) through
``conftest.FAMILIES``; here: adaptive pooling bins, the checkpoint format on disk, the
projector's pooling and HF's own generation with the custom class.
"""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file, save_file

from model_adapters.pllava.modeling import PllavaProcessor
from videolens import HookedVideoLLM
from videolens.testing import build_tiny_pllava, random_video

from conftest import make_prompt, tiny

TOL = 1e-5


def test_frames_map_to_adaptive_pooling_bins():
    model = tiny("pllava")
    prompt = model.prepare(random_video(16), "What moved first?")
    assert prompt.layout.n_frames == 8
    assert [f.input_frames for f in prompt.layout.frames] == [(2 * t, 2 * t + 1) for t in range(8)]


def test_pooling_shape_is_a_build_option():
    # 8 input frames pooled to 4 temporal bins of 2x2: 16 <image> tokens, each unit two frames
    hf, processor = build_tiny_pllava(pooling_shape=(4, 2, 2))
    model = HookedVideoLLM.from_hf(hf, processor)
    prompt = make_prompt(model)
    assert int((prompt.input_ids == hf.config.image_token_index).sum()) == 4 * 2 * 2
    assert [f.input_frames for f in prompt.layout.frames] == [(2 * t, 2 * t + 1) for t in range(4)]
    with torch.no_grad():
        assert (model(prompt) - hf(**prompt.inputs).logits).abs().max().item() <= TOL


def test_save_and_load_offline(tmp_path):
    model = tiny("pllava")
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
    hf = tiny("pllava").hf_model
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
    pixels = make_prompt(tiny("pllava")).inputs["pixel_values"]
    with torch.no_grad():
        assert torch.equal(hf.get_video_features(pixels), hf.get_video_features(pixels[0], n_videos=1))


def test_greedy_generation_matches_repeated_forwards():
    model = tiny("pllava")
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
