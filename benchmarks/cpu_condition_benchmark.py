"""What one knockout condition of a sweep costs on the CPU, against its FLOP share of one HF forward.

    python benchmarks/cpu_condition_benchmark.py --repeats 7 --out benchmarks/results_cpu_condition.json

On the shipped toy model and one synthetic sample, per target of the paper's sweep
("Map the Flow": every pathway at every layer, centred window) it measures:

- ``hf_forward_ms``: one forward of the HF model itself (vision tower included);
- per target, the sweep through :class:`~videolens.engine.sweep.SweepEngine` (divided by
  its number of conditions: ``condition_ms``), and the FLOPs of that sweep and of the HF
  forward, counted by ``torch.utils.flop_counter``;
- ``flop_share_ms``: the HF forward's time scaled by the condition's FLOPs over the
  forward's, i.e. what the condition would cost at the HF forward's FLOP rate;
- ``over_share``: ``condition_ms / flop_share_ms`` (the target: at most 2).

The HF forward and the four sweeps run in turn, ``--repeats`` rounds, so a change in the
machine's speed (other processes on a shared machine) moves both sides of each ratio
alike. Times are the median over rounds; ``*_min`` fields hold the fastest round, the
figure least disturbed by other load. The clean pass the engine runs once per prompt is
timed apart (``engine_build_ms``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from common import median_seconds  # noqa: I001  (run from the benchmarks folder or with it on sys.path)
from torch.utils.flop_counter import FlopCounterMode

from videolens import HookedVideoLLM
from videolens.analyses.flow import TARGETS, prompt_for
from videolens.analyses.windows import center
from videolens.data.synthetic import make_dataset
from videolens.engine.sweep import SweepEngine
from videolens.models import resolve_model_name


def interleaved_seconds(runs: dict, rounds: int) -> dict[str, list[float]]:
    """Wall times of each callable over ``rounds`` rounds, every round calling each once, in turn (after a warm-up)."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="videolens/toy-moving-shapes")
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    model = HookedVideoLLM.from_pretrained(resolve_model_name(args.model), device="cpu")
    prompt = prompt_for(model, make_dataset(n_per_task=1)[0])
    hf, inputs = model.hf_model, model.hf_inputs(prompt.inputs)
    n_layers = model.cfg.n_layers
    with torch.no_grad():
        hf_flops = flops(lambda: hf(**inputs))
        build_s = median_seconds(lambda: SweepEngine(model, prompt), args.repeats)
        engine = SweepEngine(model, prompt)
        sweeps = {
            target: [
                make(center(layer, args.window, n_layers)) for make in pathways.values() for layer in range(n_layers)
            ]
            for target, pathways in TARGETS.items()
        }
        runs = {"hf": lambda: hf(**inputs)} | {
            target: (lambda knockouts=knockouts: engine.last_logits(knockouts)) for target, knockouts in sweeps.items()
        }
        times = interleaved_seconds(runs, args.repeats)
        hf_s, hf_min = statistics.median(times["hf"]), min(times["hf"])
        per_target = {}
        for target, knockouts in sweeps.items():
            sweep_flops = flops(runs[target])
            share = sweep_flops / len(knockouts) / hf_flops * 1e3  # the condition's share of one forward, in ms per s
            cond_ms = statistics.median(times[target]) / len(knockouts) * 1e3
            cond_min = min(times[target]) / len(knockouts) * 1e3
            per_target[target] = {
                "conditions": len(knockouts),
                "sweep_ms": statistics.median(times[target]) * 1e3,
                "condition_ms": cond_ms,
                "condition_mflop": sweep_flops / len(knockouts) / 1e6,
                "flop_share_ms": hf_s * share,
                "over_share": cond_ms / (hf_s * share),
                "over_share_min": cond_min / (hf_min * share),
            }
    all_s = sum(v["sweep_ms"] for v in per_target.values())
    all_share = sum(v["flop_share_ms"] * v["conditions"] for v in per_target.values())
    result = {
        "model": args.model,
        "seq_len": prompt.seq_len,
        "n_layers": n_layers,
        "window": args.window,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "repeats": args.repeats,
        "hf_forward_ms": hf_s * 1e3,
        "hf_forward_min_ms": hf_min * 1e3,
        "hf_forward_mflop": hf_flops / 1e6,
        "engine_build_ms": build_s * 1e3,
        "all_targets_over_share": all_s / all_share,
        "per_target": per_target,
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
