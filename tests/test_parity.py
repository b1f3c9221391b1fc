"""With no hooks and no interventions, logits equal the HF model's own."""

from __future__ import annotations

import pytest
import torch

from conftest import FAMILIES, make_prompt, tiny

TOL = 1e-5


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_single_prompt_matches_hf(family, attn):
    model = tiny(family, attn)
    prompt = make_prompt(model)
    with torch.no_grad():
        ours = model(prompt)
        ref = model.hf_model(**prompt.inputs).logits
    assert ours.shape == ref.shape
    diff = (ours - ref).abs().max().item()
    assert diff <= TOL, f"max abs diff {diff}"


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_padded_batch_matches_hf(family, attn):
    model = tiny(family, attn)
    short = make_prompt(model, seed=1, question="Which came first?")
    long = make_prompt(
        model, seed=2, question="After the red square moved left, which object appeared next in the video?"
    )
    assert short.seq_len != long.seq_len
    batch = model.batch([short, long])
    assert batch.padded
    with torch.no_grad():
        ours = model(batch)
        ref = model.hf_model(**batch.inputs).logits
    valid = batch.inputs["attention_mask"].bool()
    diff = (ours - ref).abs()[valid].max().item()
    assert diff <= TOL, f"max abs diff {diff}"
    # each row of the batch also agrees with the prompt run alone at its last position
    with torch.no_grad():
        alone = model(long)
    assert (ours[1, -1] - alone[0, -1]).abs().max().item() < 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_hf_model_untouched_after_calls(family):
    model = tiny(family, "sdpa")
    prompt = make_prompt(model)
    impl = model.hf_model.config.text_config._attn_implementation
    with torch.no_grad():
        model(prompt)
    assert model.hf_model.config.text_config._attn_implementation == impl
    assert not ours_left_on(model.hf_model)


def ours_left_on(hf_model) -> list[str]:
    """PyTorch hooks that videolens code registered and left on the HF modules."""
    left = []
    for name, module in hf_model.named_modules():
        for fn in [*module._forward_pre_hooks.values(), *module._forward_hooks.values()]:
            if getattr(fn, "__module__", "").startswith("videolens"):
                left.append(name)
    return left


@pytest.mark.parametrize("family", FAMILIES)
def test_fused_and_explicit_paths_agree(family):
    model = tiny(family, "sdpa")
    prompt = make_prompt(model)
    with torch.no_grad():
        fused = model(prompt)
        explicit = model.run_with_hooks(prompt, fwd_hooks=[(lambda n: n.endswith("hook_pattern"), lambda x, hook: x)])
    assert (fused - explicit).abs().max().item() <= TOL


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_generate_matches_hf(family):
    model = tiny(family, "eager")
    prompt = make_prompt(model)
    with torch.no_grad():
        ours = model.generate(prompt, max_new_tokens=6, stop_at_eos=False, return_type="tokens")
        ref = model.hf_model.generate(**prompt.inputs, max_new_tokens=6, do_sample=False, min_new_tokens=6)
    assert ours[0].tolist() == ref[0, prompt.seq_len :].tolist()


def test_start_and_stop_at_layer_compose():
    model = tiny("llava_next_video")
    prompt = make_prompt(model)
    with torch.no_grad():
        full = model(prompt)
        mid = model(prompt, stop_at_layer=1)
        resumed = model(prompt, start_at_layer=1, residual=mid)
        _, cache = model.run_with_cache(prompt, names_filter="blocks.1.hook_resid_pre")
    assert torch.allclose(mid, cache["blocks.1.hook_resid_pre"], atol=1e-6)
    assert (full - resumed).abs().max().item() <= TOL
