"""The paper's four-target knockout sweep over a dataset: samples per second and where the time goes.

    python benchmarks/throughput_benchmark.py --size 7b --samples 16 --out throughput.json

For ``--samples`` prompts of different random videos (and different questions and true
options), each of the paper's full sweep (4 targets, 11 pathways, every layer, centred
window of 9: 352 conditions; "Map the Flow"), it times per sample:

- ``prepare``: the processor (frames to pixels, tokenizer, layout), on the CPU;
- ``vision``: the vision tower and the embedding of the prompt (``model.prefill(stop=0)``);
- ``clean``: the rest of :class:`~videolens.engine.sweep.SweepEngine`'s construction (the
  clean pass through every layer, keeping residuals and keys/values); measured as the
  engine's construction minus ``vision`` (which it repeats);
- ``conditions``: all 352 conditions in one ``last_logits`` call.

The vision time is measured on a separate call with the same input, so the split is an
estimate; the total is what a dataset run costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import OPTIONS, QUESTION, SHAPES, build_model, environment, sync  # noqa: I001

from videolens.analyses.flow import TARGETS
from videolens.analyses.windows import center
from videolens.core.prompt import PAPER_ANSWER_PREFIX, PAPER_SYSTEM
from videolens.engine.sweep import SweepEngine
from videolens.testing import random_video

QUESTIONS = [
    QUESTION,
    "What did the person do first?",
    "Which object moved last?",
    "What is the person holding at the end?",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=list(SHAPES), default="7b")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--window", type=int, default=9)
    ap.add_argument(
        "--compile-blocks",
        action="store_true",
        help="decoder layers compiled (HookedVideoLLM.compile_blocks); the warm-up prompt compiles them",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    model = build_model(args.size, dtype, args.device, attn_implementation="sdpa")
    if args.compile_blocks:
        model.compile_blocks()
    side = SHAPES[args.size]["vision"]["image_size"]
    n_layers = model.cfg.n_layers
    knockouts = [
        make(center(layer, args.window, n_layers))
        for pathways in TARGETS.values()
        for make in pathways.values()
        for layer in range(n_layers)
    ]
    phases: dict[str, list[float]] = {"prepare": [], "vision": [], "clean": [], "conditions": [], "total": []}
    seq_lens = []
    with torch.no_grad():
        for i in range(-1, args.samples):  # sample -1 warms up (kernel selection, allocator), not counted
            sync(args.device)
            t0 = time.perf_counter()
            prompt = model.prepare(
                random_video(args.frames, side, side, seed=100 + i),
                QUESTIONS[i % len(QUESTIONS)],
                OPTIONS,
                PAPER_ANSWER_PREFIX,
                PAPER_SYSTEM,
                answer=i % len(OPTIONS),
            )
            t1 = time.perf_counter()
            with model.driving():
                model.prefill(model.batch(prompt), stop=0)
            sync(args.device)
            t2 = time.perf_counter()
            engine = SweepEngine(model, prompt)
            sync(args.device)
            t3 = time.perf_counter()
            engine.last_logits(knockouts).float().softmax(-1).cpu()
            sync(args.device)
            t4 = time.perf_counter()
            if i < 0:
                warmup_s = t4 - t0
                continue
            vision = t2 - t1
            phases["prepare"].append(t1 - t0)
            phases["vision"].append(vision)
            phases["clean"].append(max(0.0, t3 - t2 - vision))
            phases["conditions"].append(t4 - t3)
            phases["total"].append(t4 - t0 - vision)  # the extra vision call is not part of a real run
            seq_lens.append(prompt.seq_len)
    total = sum(phases["total"])
    result = {
        **environment(args.device, args.size),
        "frames": args.frames,
        "samples": args.samples,
        "conditions_per_sample": len(knockouts),
        "compile_blocks": args.compile_blocks,
        "warmup_sample_s": warmup_s,
        "seq_len_range": [min(seq_lens), max(seq_lens)],
        "total_s": total,
        "samples_per_s": args.samples / total,
        "conditions_per_s": args.samples * len(knockouts) / total,
        "median_s": {k: statistics.median(v) for k, v in phases.items()},
        "share": {k: sum(v) / total for k, v in phases.items() if k != "total"},
    }
    if args.device.startswith("cuda"):
        result["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(result, indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
