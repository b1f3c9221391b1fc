"""Models placed by accelerate (``device_map``): every path gives the single-device result.

CI has one CPU and no GPU, so the placement tested here is an offload map: odd layers
(and the final norm) keep their weights on disk, loaded by accelerate's hooks only while
they compute, the rest in memory. That exercises what a multi-GPU split needs (videolens
composing each block from HF's submodules outside the layer's own ``forward``, reading norm
weights directly, moving inputs to each layer's execution device), against the same model
loaded plainly.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.conftest import make_prompt
from videolens import EdgeKnockout, HookedVideoLLM
from videolens.core.placement import layer_device_map
from videolens.engine.sweep import SweepEngine
from videolens.errors import InputError
from videolens.testing import save_tiny_model

META = torch.device("meta")
#: Plain Llama (LLaVA-NeXT-Video), M-RoPE (Qwen2.5-VL), DeepStack injection (Qwen3-VL).
PLACED_FAMILIES = ["llava_next_video", "qwen2_5_vl", "qwen3_vl"]


@pytest.fixture(scope="module", params=PLACED_FAMILIES)
def pair(request, tmp_path_factory) -> tuple[HookedVideoLLM, HookedVideoLLM]:
    folder = save_tiny_model(request.param, tmp_path_factory.mktemp(request.param), num_layers=4)
    plain = HookedVideoLLM.from_pretrained(folder)
    lm = plain.adapter.language_model
    layers = f"{lm}.{plain.adapter.layers}"
    devices = ["cpu" if i % 2 == 0 else "disk" for i in range(plain.cfg.n_layers)]
    final_norm = f"{lm}.{plain.adapter.final_norm}"
    split = layer_device_map(plain.hf_model, layers, devices, overrides={final_norm: "disk"})
    with warnings.catch_warnings():  # accelerate: "device-map keys that are parameters match no submodule"
        warnings.simplefilter("ignore", UserWarning)
        placed = HookedVideoLLM.from_pretrained(
            folder, device_map=split, offload_folder=str(tmp_path_factory.mktemp("offload"))
        )
    return plain, placed


def _offloaded(model: HookedVideoLLM) -> bool:
    """Whether layer 1's weights are back on ``meta`` (loaded only while it computes)."""
    return next(model.blocks[1].hf_layer.parameters()).device == META


def test_the_map_really_offloads(pair):
    _plain, placed = pair
    assert _offloaded(placed)
    assert next(placed.blocks[0].hf_layer.parameters()).device == torch.device("cpu")
    assert placed.cfg.device == torch.device("cpu")


def test_forward_cache_and_knockouts_equal_single_device(pair):
    plain, placed = pair
    prompt_plain, prompt_placed = make_prompt(plain), make_prompt(placed)
    clean = placed(prompt_placed)
    names = lambda n: n.endswith(("hook_resid_post", "hook_pattern", "ln_final.hook_normalized"))  # noqa: E731
    ref_logits, ref_cache = plain.run_with_cache(prompt_plain, names_filter=names)
    logits, cache = placed.run_with_cache(prompt_placed, names_filter=names)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-6)
    assert set(cache.keys()) == set(ref_cache.keys())
    for name in ref_cache.keys():
        torch.testing.assert_close(cache[name], ref_cache[name], rtol=0, atol=1e-6)
    knockout = [EdgeKnockout("video", "last", layers=[1, 2]), EdgeKnockout.cross_frame([0, 1])]
    torch.testing.assert_close(
        placed(prompt_placed, interventions=knockout), plain(prompt_plain, interventions=knockout), rtol=0, atol=1e-6
    )
    assert torch.equal(placed(prompt_placed), clean)  # hooks and masks left nothing behind
    assert _offloaded(placed)


def test_sweep_engine_and_generation_equal_single_device(pair):
    plain, placed = pair
    knockouts = [None] + [EdgeKnockout("question", "last", layers=[layer]) for layer in range(plain.cfg.n_layers)]
    knockouts += [EdgeKnockout.cross_frame(range(layer, plain.cfg.n_layers)) for layer in range(2)]
    ref = SweepEngine(plain, make_prompt(plain)).last_logits(knockouts)
    got = SweepEngine(placed, make_prompt(placed)).last_logits(knockouts)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    assert torch.equal(
        placed.generate(make_prompt(placed), 4, return_type="tokens"),
        plain.generate(make_prompt(plain), 4, return_type="tokens"),
    )
    assert _offloaded(placed)


def test_placed_model_refuses_to_move_and_device_with_device_map(pair, tmp_path):
    _plain, placed = pair
    with pytest.raises(InputError, match="device_map"):
        placed.to("cpu")
    with pytest.raises(InputError, match="give one"):
        HookedVideoLLM.from_pretrained(tmp_path / "never-read", device="cpu", device_map="auto")


def test_layer_device_map_covers_every_parameter_once(pair):
    plain, _placed = pair
    lm = plain.adapter.language_model
    split = layer_device_map(plain.hf_model, f"{lm}.{plain.adapter.layers}", [0, 1, 1, 0], default="cpu")
    for name, _ in plain.hf_model.named_parameters():
        owners = [key for key in split if name == key or name.startswith(key + ".")]
        assert len(owners) == 1, (name, owners)
    assert [split[f"{lm}.layers.{i}"] for i in range(4)] == [0, 1, 1, 0]
    with pytest.raises(InputError, match="4 layers"):
        layer_device_map(plain.hf_model, f"{lm}.layers", [0, 1])
