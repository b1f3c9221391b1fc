"""GPU check: decoder layers compiled by Inductor (``compile_blocks``) against HF and the eager layers.

    python benchmarks/compiled_blocks_check.py --out compiled_blocks_check.json

The CPU suite compiles with the ``aot_eager`` backend (no code generation); this runs the
real one, Inductor's Triton kernels, on every family with a tiny model, in fp32 on CUDA:

- the compiled forward against the HF model's own logits;
- a knockout sweep of every information-flow target of "Map the Flow" (centred window)
  through the sweep engine with compiled layers, against the same knockouts run one full
  eager forward each;
- ``run_with_cache`` with compiled layers against the eager cache (hooked layers run
  eagerly), and the eager forward after ``compile_blocks(False)`` bitwise unchanged.

With ``--device-map``: the same compiled layers on a model placed by accelerate. A tiny model
of three families (plain Llama, M-RoPE, DeepStack injection) is loaded twice from one saved
folder, once on the GPU and once with its decoder layers alternating between the GPU and the
CPU (``layer_device_map``); the placed model's layers are compiled, and its forward and a
sweep of every target are compared with the single-device eager model, and its eager forward
after ``compile_blocks(False)`` with its eager forward before (bitwise).

Prints and writes the worst differences (or the error that stopped a family); fails when one
is above 1e-5 (1e-4 for a cache entry).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import traceback
from pathlib import Path

import torch

from videolens import HookedVideoLLM
from videolens.analyses.flow import TARGETS
from videolens.analyses.windows import center
from videolens.core.placement import layer_device_map
from videolens.engine.sweep import SweepEngine
from videolens.testing import build_tiny_model, random_video, save_tiny_model, tiny_families

TOL = 1e-5
#: Families placed with --device-map: plain Llama, M-RoPE, DeepStack injection.
PLACED_FAMILIES = ["llava_next_video", "qwen2_5_vl", "qwen3_vl"]


def _prompt(model: HookedVideoLLM):
    return model.prepare(
        random_video(8, seed=0), "What moved first?", options=["the red square", "the blue circle", "nothing"],
        answer_prefix="Best option:(", answer=1, fps=2.0,
    )  # fmt: skip


def _every_target(n_layers: int) -> list:
    return [
        make(center(layer, 1, n_layers)) for pathways in TARGETS.values() for make in pathways.values()
        for layer in range(n_layers)
    ]  # fmt: skip


def check_family(family: str, device: str) -> dict[str, float | bool | int]:
    torch.manual_seed(0)
    hf, processor = build_tiny_model(family, attn_implementation="eager")
    model = HookedVideoLLM.from_hf(hf.to(device), processor)
    prompt = _prompt(model)
    knockouts = _every_target(model.cfg.n_layers)
    with torch.no_grad():
        hf_logits = hf(**model.hf_inputs(prompt.inputs)).logits
        eager_logits = model(prompt)
        eager_sweep = torch.stack([model(prompt, interventions=[ko])[0, -1] for ko in knockouts])
        _, eager_cache = model.run_with_cache(prompt)
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        model.compile_blocks()
        compiled_logits = model(prompt)
        compiled_sweep = SweepEngine(model, prompt).last_logits(knockouts)
        _, cache = model.run_with_cache(prompt)
        graphs = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        model.compile_blocks(False)
        eager_again = model(prompt)
    return {
        "forward_vs_hf": (compiled_logits - hf_logits).abs().max().item(),
        "sweep_vs_eager_forwards": (compiled_sweep - eager_sweep).abs().max().item(),
        "cache_vs_eager_cache": max((cache[name] - eager_cache[name]).abs().max().item() for name in eager_cache),
        "cache_same_names": set(cache.keys()) == set(eager_cache.keys()),
        "eager_after_off_bitwise": torch.equal(eager_again, eager_logits),
        "conditions": len(knockouts),
        "compiled_graphs": graphs,
    }


def check_placed_family(family: str, folder: Path) -> dict[str, float | bool | int | str]:
    torch.manual_seed(0)
    save_tiny_model(family, folder, num_layers=4)
    plain = HookedVideoLLM.from_pretrained(folder, device="cuda")
    lm = plain.adapter.language_model
    devices = [0 if i % 2 == 0 else "cpu" for i in range(plain.cfg.n_layers)]
    split = layer_device_map(plain.hf_model, f"{lm}.{plain.adapter.layers}", devices, default=0)
    placed = HookedVideoLLM.from_pretrained(folder, device_map=split)
    knockouts = _every_target(plain.cfg.n_layers)
    with torch.no_grad():
        prompt, placed_prompt = _prompt(plain), _prompt(placed)
        eager_logits = plain(prompt)
        eager_sweep = torch.stack([plain(prompt, interventions=[ko])[0, -1] for ko in knockouts])
        placed_eager = placed(placed_prompt)
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        placed.compile_blocks()
        compiled_logits = placed(placed_prompt)
        compiled_sweep = SweepEngine(placed, placed_prompt).last_logits(knockouts)
        graphs = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        placed.compile_blocks(False)
        placed_again = placed(placed_prompt)
    return {
        "layer_devices": str(devices),
        "forward_vs_single_device": (compiled_logits.to(eager_logits) - eager_logits).abs().max().item(),
        "sweep_vs_eager_forwards": (compiled_sweep.to(eager_sweep) - eager_sweep).abs().max().item(),
        "eager_after_off_bitwise": torch.equal(placed_again, placed_eager),
        "conditions": len(knockouts),
        "compiled_graphs": graphs,
    }


def _passes(row: dict) -> bool:
    return (
        row.get("forward_vs_hf", row.get("forward_vs_single_device")) <= TOL and row["sweep_vs_eager_forwards"] <= TOL
        and row.get("cache_vs_eager_cache", 0.0) <= 10 * TOL and row.get("cache_same_names", True)
        and row["eager_after_off_bitwise"] and row["compiled_graphs"] > 0
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device-map", action="store_true", help="layers placed on the GPU and the CPU by accelerate")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert device == "cuda" or not args.device_map, "--device-map places layers on a GPU and the CPU"
    results = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__}
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in PLACED_FAMILIES if args.device_map else tiny_families():
            try:
                row = (
                    check_placed_family(family, Path(tmp) / family) if args.device_map else check_family(family, device)
                )
                ok = _passes(row)
            except Exception as error:  # noqa: BLE001 - recorded, the check goes on to the next family
                row, ok = {"error": repr(error), "traceback": traceback.format_exc()[-3000:]}, False
            results[family] = row
            print(family, {k: v for k, v in row.items() if k != "traceback"}, flush=True)
            if not ok:
                failed.append(family)
    results["failed"] = failed
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    assert not failed, failed
    print("compiled decoder layers equal HF / the single-device eager model on every family: ok")


if __name__ == "__main__":
    main()
