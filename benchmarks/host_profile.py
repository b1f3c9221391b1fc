"""Where the host time of the host-bound sweep targets goes (Python functions, cProfile).

    python benchmarks/host_profile.py --compile-blocks --out host_profile.txt

On the 7B-shaped benchmark model and prompt of ``sweep_benchmark.py``, after a warm-up
sweep, profiles the question-and-options-to-last and vql-to-ql targets (and the clean pass)
with cProfile and writes the functions by own time and by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from pathlib import Path

import torch
from common import SHAPES, build_model, paper_prompt, sync  # noqa: I001  (run from the benchmarks folder)

from videolens.analyses.flow import TARGETS
from videolens.analyses.windows import center
from videolens.engine.sweep import SweepEngine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=list(SHAPES), default="7b")
    ap.add_argument("--compile-blocks", action="store_true")
    ap.add_argument("--targets", nargs="+", default=["question-and-options-to-last", "vql-to-ql"])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_model(args.size, torch.bfloat16 if device == "cuda" else torch.float32, device)
    prompt = paper_prompt(model, args.size, 8)
    n = model.cfg.n_layers
    if args.compile_blocks:
        model.compile_blocks()
    report = io.StringIO()
    with torch.no_grad():
        for target in args.targets:
            knockouts = [make(center(layer, 9, n)) for make in TARGETS[target].values() for layer in range(n)]
            for _ in range(2):
                SweepEngine(model, prompt).last_logits(knockouts)
            engine = SweepEngine(model, prompt)
            sync(device)
            t = time.perf_counter()
            engine.last_logits(knockouts)
            sync(device)
            plain = time.perf_counter() - t
            profiler = cProfile.Profile()
            profiler.enable()
            engine.last_logits(knockouts)
            sync(device)
            profiler.disable()
            report.write(f"=== {target}: {len(knockouts)} conditions, {plain * 1e3:.1f} ms unprofiled\n")
            for key in ("tottime", "cumulative"):
                stats = pstats.Stats(profiler, stream=report)
                stats.sort_stats(key).print_stats(35)
        profiler = cProfile.Profile()
        profiler.enable()
        SweepEngine(model, prompt)
        sync(device)
        profiler.disable()
        report.write("=== clean pass (engine construction)\n")
        pstats.Stats(profiler, stream=report).sort_stats("tottime").print_stats(25)
    args.out.write_text(report.getvalue())
    print(report.getvalue()[:3000])


if __name__ == "__main__":
    main()
