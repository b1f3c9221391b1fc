"""Attention readouts for a long video: chunked group pooling vs caching full patterns.

    python benchmarks/long_video_benchmark.py --size 7b --frames 64 --device cuda --out long.json

Builds the LLaVA-NeXT-Video-7B-shaped model (random weights, bf16), a 64-frame prompt
(64 x 144 = 9,216 video tokens), and runs :func:`videolens.engine.readouts.pooled_attention`
(frame x frame, question and last groups, every layer and head, plus the full rows of the
last token) with its peak GPU memory. Then it tries what a plain cache would need:
``run_with_cache`` on every ``hook_pattern`` (layers x heads x N^2 values), and reports
where it runs out of memory.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import SHAPES, build_model, paper_prompt  # noqa: I001

from videolens.engine.readouts import pooled_attention


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=list(SHAPES), default="7b")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    model = build_model(args.size, dtype, args.device, attn_implementation="sdpa")
    prompt = paper_prompt(model, args.size, args.frames, answer=None)
    n, cfg = prompt.seq_len, model.cfg
    result = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "size": args.size,
        "frames": args.frames,
        "seq_len": n,
        "video_tokens": len(prompt.layout["video"]),
        "full_pattern_cache_gb": cfg.n_layers * cfg.n_heads * n * n * torch.finfo(dtype).bits / 8 / 2**30,
    }
    print(json.dumps(result), flush=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        weights = torch.cuda.memory_allocated() / 2**30
        result["weights_gb"] = weights
    t = time.perf_counter()
    readout = pooled_attention(model, prompt, rows="last", chunk=args.chunk)
    result["pooled_s"] = time.perf_counter() - t
    result["pooled_shape"] = list(readout.pooled.shape)
    if cuda:
        result["pooled_peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
        result["gpu_total_gb"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    frames = readout.pooled[:, :, : args.frames, : args.frames].mean(1)  # (layer, frame, frame)
    result["mean_attention_to_own_frame_by_layer"] = [float(f.diagonal().mean()) for f in frames]
    print(json.dumps(result), flush=True)

    # The plain way: cache every layer's full pattern.
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    cached_layers = []
    try:

        def keep(pattern, hook):
            cached_layers.append(pattern)  # what run_with_cache does for every hook_pattern

        with torch.no_grad():
            model.run_with_hooks(
                prompt, fwd_hooks=[(lambda name: name.endswith("hook_pattern"), keep)], return_type=None
            )
        result["full_cache"] = f"completed ({len(cached_layers)} layers)"
    except torch.cuda.OutOfMemoryError:
        result["full_cache"] = f"out of memory after caching {len(cached_layers)} of {cfg.n_layers} layers' patterns"
    finally:
        if cuda:
            result["full_cache_peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
        cached_layers.clear()
    print(json.dumps(result, indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
