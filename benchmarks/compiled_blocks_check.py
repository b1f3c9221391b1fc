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

Prints and writes the worst differences; fails when one is above 1e-5 (1e-4 for a cache entry).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from videolens import HookedVideoLLM
from videolens.analyses.flow import TARGETS
from videolens.analyses.windows import center
from videolens.engine.sweep import SweepEngine
from videolens.testing import build_tiny_model, random_video, tiny_families

TOL = 1e-5


def check_family(family: str, device: str) -> dict[str, float | bool | int]:
    torch.manual_seed(0)
    hf, processor = build_tiny_model(family, attn_implementation="eager")
    model = HookedVideoLLM.from_hf(hf.to(device), processor)
    prompt = model.prepare(
        random_video(8, seed=0), "What moved first?", options=["the red square", "the blue circle", "nothing"],
        answer_prefix="Best option:(", answer=1, fps=2.0,
    )  # fmt: skip
    n_layers = model.cfg.n_layers
    knockouts = [
        make(center(layer, 1, n_layers)) for pathways in TARGETS.values() for make in pathways.values()
        for layer in range(n_layers)
    ]  # fmt: skip
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__}
    failed = []
    for family in tiny_families():
        row = check_family(family, device)
        results[family] = row
        print(family, row, flush=True)
        ok = (
            row["forward_vs_hf"] <= TOL and row["sweep_vs_eager_forwards"] <= TOL
            and row["cache_vs_eager_cache"] <= 10 * TOL and row["cache_same_names"]
            and row["eager_after_off_bitwise"] and row["compiled_graphs"] > 0
        )  # fmt: skip
        if not ok:
            failed.append(family)
    results["failed"] = failed
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    assert not failed, failed
    print("compiled decoder layers equal HF and the eager layers on every family: ok")


if __name__ == "__main__":
    main()
