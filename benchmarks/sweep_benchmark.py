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
    blocked query, batched).

It checks that both give the same answer probabilities, and prints the speed ratio (per
target and overall), the ratio to the FLOP floor of the recomputation actually required
(at the matmul rate measured on the same GPU), and peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import SHAPES, build_model  # noqa: I001  (run from the benchmarks folder or with it on sys.path)

from videolens.analyses.flow import TARGETS
from videolens.analyses.windows import center
from videolens.core.prompt import PAPER_ANSWER_PREFIX, PAPER_SYSTEM
from videolens.engine.reference import knockout_edges, reference_logits
from videolens.engine.sweep import SweepEngine
from videolens.testing import random_video


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_reset(device: str) -> None:
    if device.startswith("cuda"):
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=list(SHAPES), default="7b")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="default bfloat16 on GPU, float32 on CPU")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--window", type=int, default=9)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--layers", type=int, default=None, help="sweep only the first N layers (quick runs)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    dtype = (
        getattr(torch, args.dtype)
        if args.dtype
        else (torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
    )

    model = build_model(args.size, dtype, args.device, attn_implementation="eager")
    side = SHAPES[args.size]["vision"]["image_size"]
    prompt = model.prepare(
        random_video(args.frames, side, side, seed=0),
        "What happened after the person took the food?",
        ["Ate the medicine.", "Took the box.", "Put down the cup.", "Opened the door."],
        PAPER_ANSWER_PREFIX,
        PAPER_SYSTEM,
        answer=1,
    )
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
    with torch.no_grad():  # warm both paths up (kernel selection, allocator) before timing
        model(prompt)
        reference_logits(model, prompt, knockout_edges(conditions[0][3], layout))
    sync(args.device)

    # (b) videolens
    peak_reset(args.device)
    sync(args.device)
    t0 = time.perf_counter()
    engine = SweepEngine(model, prompt, max_batch=args.max_batch)
    fast = {}
    for target in TARGETS:
        chosen = [c for c in conditions if c[0] == target]
        t = time.perf_counter()
        logits = engine.last_logits([c[3] for c in chosen])
        sync(args.device)
        fast[target] = (time.perf_counter() - t, logits.float().softmax(-1).cpu())
    sync(args.device)
    fast_total = time.perf_counter() - t0
    fast_peak = peak_gb(args.device)
    clean = engine.clean_last_logits.float().softmax(-1).cpu()
    answer = int(clean.argmax())
    gt = int(model.tokenizer.convert_tokens_to_ids("B"))
    print(f"videolens: {fast_total:.2f} s (clean pass and compile included), peak {fast_peak} GB", flush=True)

    # (a) the reference method
    peak_reset(args.device)
    slow = {}
    t0 = time.perf_counter()
    for target in TARGETS:
        chosen = [c for c in conditions if c[0] == target]
        t = time.perf_counter()
        rows = []
        for *_, ko in chosen:
            logits = reference_logits(model, prompt, knockout_edges(ko, layout))[0, -1]
            rows.append(logits.float().softmax(-1).cpu())
        sync(args.device)
        slow[target] = (time.perf_counter() - t, torch.stack(rows))
        print(f"reference {target}: {slow[target][0]:.2f} s", flush=True)
    slow_total = time.perf_counter() - t0
    slow_peak = peak_gb(args.device)

    per_target = {}
    max_diff = 0.0
    for target in TARGETS:
        diff = max(
            float((fast[target][1][:, answer] - slow[target][1][:, answer]).abs().max()),
            float((fast[target][1][:, gt] - slow[target][1][:, gt]).abs().max()),
        )
        max_diff = max(max_diff, diff)
        chosen = [c[3] for c in conditions if c[0] == target]
        per_target[target] = {
            "conditions": len(chosen),
            "reference_s": slow[target][0],
            "videolens_s": fast[target][0],
            "speedup": slow[target][0] / fast[target][0],
            "max_abs_prob_diff": diff,
            "floor_tflop": floor_flops(engine, chosen, SHAPES[args.size]) / 1e12,
        }
    floor = sum(v["floor_tflop"] for v in per_target.values())
    result = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "size": args.size,
        "dtype": str(dtype),
        "seq_len": prompt.seq_len,
        "video_tokens": len(layout["video"]),
        "conditions": len(conditions),
        "window": args.window,
        "reference_s": slow_total,
        "videolens_s": fast_total,
        "speedup": slow_total / fast_total,
        "max_abs_prob_diff": max_diff,
        "reference_peak_gb": slow_peak,
        "videolens_peak_gb": fast_peak,
        "matmul_tflops": tflops,
        "floor_tflop": floor,
        "floor_s": floor / tflops if tflops else None,
        "videolens_over_floor": fast_total / (floor / tflops) if tflops else None,
        "per_target": per_target,
    }
    print(json.dumps(result, indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    tol = 2e-3 if dtype in (torch.bfloat16, torch.float16) else 1e-5
    assert max_diff <= tol, f"videolens and the reference disagree: {max_diff} > {tol}"


if __name__ == "__main__":
    main()
