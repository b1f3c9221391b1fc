"""The paper's full knockout sweep: the reference method vs videolens, side by side in one run.

    python benchmarks/sweep_benchmark.py --size 7b --device cuda --out results.json

For one paper-style prompt (8 frames x 144 video tokens, the MVBench system prompt, four
options; about 1,300 tokens) it runs every condition of the four information-flow targets
(11 blocked pathways) at every layer with a centred window of 9:

(a) the reference method (the paper's code): HF eager attention, a dense per-head float mask
    swapped into the window's layers, one full forward (vision tower included) per
    condition, batch 1 (:func:`videolens.engine.reference.reference_logits`);
(b) videolens: :class:`videolens.engine.sweep.SweepEngine` (one clean pass, then each condition
    recomputes only layers >= its first knocked-out layer and positions >= its first
    blocked query, batched): one untimed-for-the-ratio first sweep, then ``--repeats``
    timed sweeps, each with a fresh engine (clean pass included); medians are reported.

It checks that both give the same answer probabilities, and prints the speed ratio (per
target and overall), the ratio to the FLOP floor of the recomputation actually required
(at the matmul rate measured on the same GPU), and peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from common import SHAPES, build_model, environment, paper_prompt, sync  # noqa: I001  (run from the benchmarks folder or with it on sys.path)

from videolens.analyses.flow import TARGETS
from videolens.analyses.windows import center
from videolens.engine.reference import knockout_edges, reference_logits
from videolens.engine.sweep import SweepEngine


def peak_reset(device: str, empty: bool = True) -> None:
    if device.startswith("cuda"):
        if empty:
            torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def matmul_tflops(device: str, dtype: torch.dtype) -> float | None:
    """Measured dense matmul rate (the FLOP floor's yardstick)."""
    if not device.startswith("cuda"):
        return None
    a = torch.randn(8192, 8192, device=device, dtype=dtype)
    b = torch.randn(8192, 8192, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(device)
    return 10 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12


def floor_flops(engine: SweepEngine, knockouts, shape: dict) -> float:
    """FLOPs that a condition must recompute: layers >= first knocked layer, positions >= first blocked query."""
    t = shape["text"]
    d, dff, n_layers, vocab = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"], t["vocab_size"]
    per_token_layer = 2 * (4 * d * d + 3 * d * dff)
    n = engine.seq_len
    total = 0.0
    for cond in engine.compile(knockouts):
        if cond is None:
            continue
        tokens = n - cond.first_query
        layers = n_layers - cond.first_layer
        total += layers * (tokens * per_token_layer + 4 * tokens * n * d) + 2 * d * vocab
    return total


def run_videolens(model, prompt, conditions, max_batch, device):
    """The sweep through :class:`SweepEngine`: per-target seconds and answer probabilities, clean pass timed apart."""
    kwargs = {} if max_batch is None else {"max_batch": max_batch}
    t0 = time.perf_counter()
    engine = SweepEngine(model, prompt, **kwargs)
    sync(device)
    clean_s = time.perf_counter() - t0
    fast = {}
    for target in TARGETS:
        chosen = [c for c in conditions if c[0] == target]
        t = time.perf_counter()
        logits = engine.last_logits([c[3] for c in chosen])
        sync(device)
        fast[target] = (time.perf_counter() - t, logits.float().softmax(-1).cpu())
    sync(device)
    return engine, clean_s, time.perf_counter() - t0, fast


def run_reference(model, prompt, conditions, every, device):
    """The reference method on every ``every``-th sweep layer; per-target seconds scaled to all conditions."""
    layout = prompt.layout
    slow, measured = {}, 0
    for target in TARGETS:
        chosen = [c for c in conditions if c[0] == target]
        timed = [c for c in chosen if c[2] % every == 0]
        t = time.perf_counter()
        rows = []
        for *_, ko in timed:
            logits = reference_logits(model, prompt, knockout_edges(ko, layout))[0, -1]
            rows.append(logits.float().softmax(-1).cpu())
        sync(device)
        seconds = time.perf_counter() - t
        measured += len(timed)
        slow[target] = (seconds * len(chosen) / len(timed), torch.stack(rows), [chosen.index(c) for c in timed])
        print(f"reference {target}: {seconds:.2f} s for {len(timed)} of {len(chosen)} conditions", flush=True)
    return slow, measured


def profile_targets(model, prompt, conditions, max_batch, device, table: Path | None = None) -> dict:
    """Per target: wall seconds under torch.profiler and the seconds GPU kernels ran (GPU busy).

    Busy well below wall means the target waits on the host (Python, kernel launches);
    busy near wall means it is bound by the kernels. The kernel-time table of the
    cross-frame target goes to ``table``.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    engine = SweepEngine(model, prompt, **({} if max_batch is None else {"max_batch": max_batch}))
    out = {}
    for target in TARGETS:
        knockouts = [c[3] for c in conditions if c[0] == target]
        sync(device)
        with profile(activities=activities) as prof:
            t = time.perf_counter()
            engine.last_logits(knockouts)
            sync(device)
            wall = time.perf_counter() - t
        busy = sum(e.device_time_total for e in prof.events() if e.device_type == DeviceType.CUDA) / 1e6
        out[target] = {"profiled_wall_s": wall, "gpu_busy_s": busy if cuda else None}
        if table is not None and target == "cross-frame":
            key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
            table.write_text(prof.key_averages().table(sort_by=key, row_limit=30))
    return out


def compiled_graphs() -> int | None:
    """How many graphs ``torch.compile`` built in this process (None: it was not used)."""
    if "torch._dynamo" not in sys.modules:
        return None
    return int(sys.modules["torch._dynamo"].utils.counters["stats"]["unique_graphs"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=list(SHAPES), default="7b")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="default bfloat16 on GPU, float32 on CPU")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--window", type=int, default=9)
    ap.add_argument("--max-batch", type=int, default=None, help="default: the engine's own")
    ap.add_argument("--layers", type=int, default=None, help="sweep only the first N layers (quick runs)")
    ap.add_argument(
        "--reference-every",
        type=int,
        default=1,
        help="time the reference method on every k-th sweep layer only and scale its time to all conditions "
        "(its cost per condition does not depend on the condition: one full forward); answers are compared there",
    )
    ap.add_argument("--no-reference", action="store_true", help="videolens only")
    ap.add_argument("--repeats", type=int, default=3, help="timed videolens sweeps (each a fresh engine); medians")
    ap.add_argument("--profile", type=Path, default=None, help="write a kernel-time table of the videolens sweep here")
    ap.add_argument(
        "--compile-blocks",
        action="store_true",
        help="videolens with its decoder layers compiled (HookedVideoLLM.compile_blocks); "
        "the first sweep then includes the compilation",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    dtype = (
        getattr(torch, args.dtype)
        if args.dtype
        else (torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
    )

    model = build_model(args.size, dtype, args.device, attn_implementation="eager")
    prompt = paper_prompt(model, args.size, args.frames)
    n_layers = model.cfg.n_layers
    sweep = range(n_layers if args.layers is None else args.layers)
    conditions = [
        (target, label, layer, make(center(layer, args.window, n_layers)))
        for target, pathways in TARGETS.items()
        for label, make in pathways.items()
        for layer in sweep
    ]
    print(
        f"model {args.size} ({sum(p.numel() for p in model.hf_model.parameters()) / 1e9:.2f} B params, {dtype}), "
        f"prompt {prompt.seq_len} tokens ({len(prompt.layout['video'])} video), {len(conditions)} conditions",
        flush=True,
    )
    tflops = matmul_tflops(args.device, dtype)
    layout = prompt.layout
    reference_fits = not args.no_reference
    with torch.no_grad():  # warm both paths up (kernel selection, allocator) before timing
        model(prompt)
        if reference_fits:
            try:
                reference_logits(model, prompt, knockout_edges(conditions[0][3], layout))
            except torch.cuda.OutOfMemoryError:
                reference_fits = False
    sync(args.device)

    # (b) videolens: a first (cold) sweep, as for the first prompt of a run, then the timed one
    if args.compile_blocks:
        model.compile_blocks()
    peak_reset(args.device)
    sync(args.device)
    first, cold_clean_s, cold_total, cold = run_videolens(model, prompt, conditions, args.max_batch, args.device)
    cold_peak = peak_gb(args.device)
    del first  # its clean-run store must not count in the next sweep's peak
    print(f"videolens, first sweep: {cold_total:.2f} s, peak {cold_peak} GB", flush=True)
    peak_reset(args.device, empty=False)
    runs, engine = [], None
    for _ in range(args.repeats):
        del engine  # the previous sweep's clean-run store must not count in this one's peak
        engine, *timings = run_videolens(model, prompt, conditions, args.max_batch, args.device)
        runs.append(timings)
    fast_peak = peak_gb(args.device)
    clean_s, fast_total = (statistics.median(run[i] for run in runs) for i in (0, 1))
    fast = {
        target: (statistics.median(run[2][target][0] for run in runs), runs[-1][2][target][1]) for target in TARGETS
    }
    clean = engine.clean_last_logits.float().softmax(-1).cpu()
    answer = int(clean.argmax())
    gt = int(model.tokenizer.convert_tokens_to_ids("B"))
    print(f"videolens: {fast_total:.2f} s (clean pass {clean_s:.3f} s and compile included), peak {fast_peak} GB")

    # (a) the reference method
    peak_reset(args.device)
    slow, measured = None, 0
    reference_note = "not run (--no-reference)" if args.no_reference else None
    if reference_fits:
        try:
            slow, measured = run_reference(model, prompt, conditions, args.reference_every, args.device)
        except torch.cuda.OutOfMemoryError:
            reference_note = "out of memory"
    elif not args.no_reference:
        reference_note = "out of memory"
    slow_peak = peak_gb(args.device)
    if slow is None:
        peak_reset(args.device)

    per_target = {}
    max_diff = 0.0
    for target in TARGETS:
        chosen = [c[3] for c in conditions if c[0] == target]
        row = {
            "conditions": len(chosen),
            "videolens_s": fast[target][0],
            "videolens_first_sweep_s": cold[target][0],
            "floor_tflop": floor_flops(engine, chosen, SHAPES[args.size]) / 1e12,
        }
        if tflops:
            row["floor_s"] = row["floor_tflop"] / tflops
            row["videolens_over_floor"] = row["videolens_s"] / row["floor_s"]
        if slow is not None:
            probs, idx = fast[target][1][slow[target][2]], slow[target][1]
            diff = max(
                float((probs[:, answer] - idx[:, answer]).abs().max()), float((probs[:, gt] - idx[:, gt]).abs().max())
            )
            max_diff = max(max_diff, diff)
            row.update(
                reference_s=slow[target][0],
                speedup=slow[target][0] / fast[target][0],
                speedup_first_sweep=slow[target][0] / cold[target][0],
                max_abs_prob_diff=diff,
            )
        per_target[target] = row
    floor = sum(v["floor_tflop"] for v in per_target.values())
    result = {
        **environment(args.device, args.size, dtype),
        "frames": args.frames,
        "seq_len": prompt.seq_len,
        "video_tokens": len(layout["video"]),
        "conditions": len(conditions),
        "window": args.window,
        "videolens_repeats": args.repeats,
        "compile_blocks": args.compile_blocks,
        "compiled_graphs": compiled_graphs(),
        "videolens_s": fast_total,
        "videolens_clean_pass_s": clean_s,
        "videolens_peak_gb": fast_peak,
        "videolens_first_sweep_s": cold_total,
        "videolens_first_sweep_clean_pass_s": cold_clean_s,
        "videolens_first_sweep_peak_gb": cold_peak,
        "matmul_tflops": tflops,
        "floor_tflop": floor,
        "floor_s": floor / tflops if tflops else None,
        "videolens_over_floor": fast_total / (floor / tflops) if tflops else None,
        "per_target": per_target,
    }
    if slow is not None:
        slow_total = sum(v[0] for v in slow.values())
        result.update(
            reference_s=slow_total,
            reference_timed_conditions=measured,
            reference_every=args.reference_every,
            speedup=slow_total / fast_total,
            speedup_first_sweep=slow_total / cold_total,
            max_abs_prob_diff=max_diff,
            reference_peak_gb=slow_peak,
        )
    else:
        result["reference"] = reference_note
        result["reference_peak_gb"] = slow_peak
    if args.profile:
        for target, row in profile_targets(
            model, prompt, conditions, args.max_batch, args.device, args.profile
        ).items():
            per_target[target].update(row)
    print(json.dumps(result, indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    tol = 2e-3 if dtype in (torch.bfloat16, torch.float16) else 1e-5
    assert max_diff <= tol, f"videolens and the reference disagree: {max_diff} > {tol}"


if __name__ == "__main__":
    main()
