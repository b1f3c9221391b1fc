"""GPU check: compiled decoder layers (``compile_blocks``) on a model placed with ``device_map``.

    python benchmarks/compiled_device_map_check.py --out compiled_device_map_check.json

A model split by accelerate runs each layer on its own device, with accelerate's hooks moving
its inputs there. This loads a tiny model of three families (plain Llama, M-RoPE, DeepStack
injection) twice from the same saved folder: once on the GPU, once with its decoder layers
alternating between the GPU and the CPU (``layer_device_map``), then compiles the placed
model's layers with Inductor and compares, in fp32:

- the compiled placed forward against the eager single-device forward;
- a knockout sweep of every information-flow target of "Map the Flow" (centred window)
  through the sweep engine on the compiled placed model, against the same knockouts run one
  full eager forward each on the single-device model;
- the placed model's eager forward after ``compile_blocks(False)`` against its eager
  forward before compiling (bitwise).

Writes each family's worst differences, or the error that stopped it; fails when a
difference is above 1e-5.
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
from videolens.testing import random_video, save_tiny_model

TOL = 1e-5
FAMILIES = ["llava_next_video", "qwen2_5_vl", "qwen3_vl"]


def _prompt(model: HookedVideoLLM):
    return model.prepare(
        random_video(8, seed=0), "What moved first?", options=["the red square", "the blue circle", "nothing"],
        answer_prefix="Best option:(", answer=1, fps=2.0,
    )  # fmt: skip


def check_family(family: str, folder: Path) -> dict[str, float | bool | int | str]:
    torch.manual_seed(0)
    save_tiny_model(family, folder, num_layers=4)
    plain = HookedVideoLLM.from_pretrained(folder, device="cuda")
    lm = plain.adapter.language_model
    devices = [0 if i % 2 == 0 else "cpu" for i in range(plain.cfg.n_layers)]
    split = layer_device_map(plain.hf_model, f"{lm}.{plain.adapter.layers}", devices, default=0)
    placed = HookedVideoLLM.from_pretrained(folder, device_map=split)
    n_layers = plain.cfg.n_layers
    knockouts = [
        make(center(layer, 1, n_layers)) for pathways in TARGETS.values() for make in pathways.values()
        for layer in range(n_layers)
    ]  # fmt: skip
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    assert torch.cuda.is_available(), "this check places layers on a GPU and the CPU"
    results: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMILIES:
            try:
                row = check_family(family, Path(tmp) / family)
                ok = (
                    row["forward_vs_single_device"] <= TOL and row["sweep_vs_eager_forwards"] <= TOL
                    and row["eager_after_off_bitwise"] and row["compiled_graphs"] > 0
                )  # fmt: skip
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
    print("compiled layers on a GPU/CPU split equal the single-device eager model: ok")


if __name__ == "__main__":
    main()
