"""Compiled decoder layers (``compile_blocks``) give HF's logits and the eager sweep; hooked layers stay eager.

The compiler backend is ``aot_eager`` (traced graphs, no generated C++), so the tests need
no compiler toolchain; the GPU path differs only in the code generator.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from videolens import EdgeKnockout, HookedVideoLLM
from videolens.engine.sweep import SweepEngine
from videolens.testing import build_tiny_model

from conftest import make_prompt

TOL = 1e-5


@contextmanager
def counting_compiled_calls(block):
    """Count the calls of ``block``'s compiled layer while the context is open."""
    calls: list[int] = []
    compiled_layer = block._compiled
    block._compiled = lambda *args: calls.append(1) or compiled_layer(*args)
    try:
        yield calls
    finally:
        block._compiled = compiled_layer


@pytest.fixture(scope="module")
def compiled():
    """A fresh tiny model (not the shared cache: compiling changes it), its prompt and eager reference figures."""
    torch.manual_seed(0)
    hf, processor = build_tiny_model("llava_next_video", attn_implementation="eager")
    model = HookedVideoLLM.from_hf(hf, processor)
    prompt = make_prompt(model, answer=1)
    knockouts = [EdgeKnockout("video", "last", layers=[layer]) for layer in range(model.cfg.n_layers)]
    knockouts.append(EdgeKnockout.cross_frame([0, 1]))
    with torch.no_grad():
        eager_logits = model(prompt)
        eager_sweep = torch.stack([model(prompt, interventions=[ko])[0, -1] for ko in knockouts])
        _, eager_cache = model.run_with_cache(prompt, names_filter=lambda name: name.startswith("blocks.1."))
    torch._dynamo.reset()
    model.compile_blocks(backend="aot_eager")
    yield model, prompt, knockouts, eager_logits, eager_sweep, eager_cache
    model.compile_blocks(False)
    torch._dynamo.reset()


def test_compiled_forward_matches_hf(compiled):
    model, prompt, *_ = compiled
    with torch.no_grad():
        ours = model(prompt)
        ref = model.hf_model(**prompt.inputs).logits
    assert all(block._compiled is not None for block in model.blocks)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the layers ran compiled
    assert (ours - ref).abs().max().item() <= TOL


def test_compiled_sweep_matches_eager_forwards(compiled):
    model, prompt, knockouts, _, eager_sweep, _ = compiled
    fast = SweepEngine(model, prompt).last_logits(knockouts)
    assert (fast - eager_sweep).abs().max().item() <= TOL


def test_hooked_layer_runs_eagerly_and_sees_the_eager_activations(compiled):
    model, prompt, _, eager_logits, _, eager_cache = compiled
    seen: list[str] = []
    model.blocks[1].hook_resid_mid.add_hook(lambda act, hook: seen.append(hook.name))
    try:
        with counting_compiled_calls(model.blocks[1]) as compiled_calls, torch.no_grad():
            model(prompt)
    finally:
        model.reset_hooks()
    assert seen == ["blocks.1.hook_resid_mid"] and not compiled_calls  # the hooked layer ran its eager code
    with torch.no_grad():
        logits, cache = model.run_with_cache(prompt, names_filter=lambda name: name.startswith("blocks.1."))
    assert set(cache.keys()) == set(eager_cache.keys())
    for name in eager_cache.keys():
        assert (cache[name] - eager_cache[name]).abs().max().item() <= TOL, name
    assert (logits - eager_logits).abs().max().item() <= TOL


def test_compile_blocks_off_restores_the_bitwise_eager_forward(compiled):
    model, prompt, _, eager_logits, *_ = compiled
    model.compile_blocks(False)
    try:
        with torch.no_grad():
            assert torch.equal(model(prompt), eager_logits)
    finally:
        model.compile_blocks(backend="aot_eager")


def test_flow_command_with_compile_blocks_gives_the_eager_run(tmp_path, capsys, monkeypatch):
    from videolens.cli import main
    from videolens.runs.run import Run

    compiled_models = []
    eager_compile = HookedVideoLLM.compile_blocks

    def compile_without_a_toolchain(self, enabled=True, **options):
        compiled_models.append(self)
        return eager_compile(self, enabled, **{"backend": "aot_eager", **options})

    monkeypatch.setattr(HookedVideoLLM, "compile_blocks", compile_without_a_toolchain)
    flow = ["flow", "--target", "vql-to-ql", "--n-per-task", "1", "--tasks", "after", "--no-progress"]
    assert main([*flow, "--out", str(tmp_path / "eager")]) == 0 and not compiled_models
    torch._dynamo.reset()
    try:
        assert main([*flow, "--out", str(tmp_path / "compiled"), "--compile-blocks"]) == 0
    finally:
        torch._dynamo.reset()
    assert len(compiled_models) == 1
    eager = Run.load(tmp_path / "eager").records("flow_vql-to-ql")
    fused = Run.load(tmp_path / "compiled").records("flow_vql-to-ql")
    assert [r["key"] for r in fused] == [r["key"] for r in eager]
    for mine, theirs in zip(fused, eager, strict=True):
        assert len(mine["rows"]) == len(theirs["rows"]) > 0
        for row_c, row_e in zip(mine["rows"], theirs["rows"], strict=True):
            assert row_c.keys() == row_e.keys()
            for key, value in row_e.items():
                if isinstance(value, float):
                    assert abs(row_c[key] - value) <= TOL, key
                else:
                    assert row_c[key] == value, key


def test_a_pytorch_hook_on_the_hf_layer_keeps_it_eager(compiled):
    model, prompt, _, eager_logits, _, eager_cache = compiled
    seen = []
    block = model.blocks[1]
    handle = block.hf_layer.mlp.register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
    try:
        with counting_compiled_calls(block) as compiled_calls, torch.no_grad():
            logits = model(prompt)
            assert not compiled_calls  # the hooked layer ran its eager code
            handle.remove()
            model(prompt)
            assert compiled_calls == [1]  # and is compiled again once the hook is gone
    finally:
        handle.remove()
    assert len(seen) == 1
    assert (seen[0] - eager_cache["blocks.1.hook_mlp_out"]).abs().max().item() <= TOL
    assert (logits - eager_logits).abs().max().item() <= TOL
