"""Attention kernels for the cross-frame knockout's mask, timed on one GPU.

    python benchmarks/attention_kernels.py --out attention.json

The cross-frame condition of the paper's sweep ("Map the Flow") recomputes every position
from frame 1 on, with queries in frame ``t`` blocked from keys in frames ``< t``. This
times one layer's attention of a batch of such conditions (LLaVA-NeXT-Video-7B shapes:
32 heads of 128) through each kernel PyTorch offers for an arbitrary mask, against the
same kernel family with no mask (flash, causal: the speed an unmasked pass gets), and
checks each against the memory-efficient kernel's output.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

PREFIX, FRAME, TAIL = 98, 144, 107  # the benchmark prompt's layout: system prompt, tokens per frame, question


def cross_frame_allowed(frames: int, device: str) -> tuple[torch.Tensor, int]:
    """``(q_pos, k_pos)`` allowed mask of the recomputed suffix, and its first query."""
    n = PREFIX + frames * FRAME + TAIL
    pos = torch.arange(n, device=device)
    frame = torch.where((pos >= PREFIX) & (pos < PREFIX + frames * FRAME), (pos - PREFIX) // FRAME, -1)
    causal = pos[None, :] <= pos[:, None]
    blocked = (frame[:, None] >= 0) & (frame[None, :] >= 0) & (frame[None, :] < frame[:, None])
    q0 = PREFIX + FRAME
    return (causal & ~blocked)[q0:], q0


def bench(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def measure(frames: int, batch: int) -> dict:
    """One layer's attention for a batch of cross-frame conditions of a ``frames``-frame prompt."""
    dev, dtype, heads, d = "cuda", torch.bfloat16, 32, 128
    allowed, q0 = cross_frame_allowed(frames, dev)
    q_len, n = allowed.shape
    b = max(1, batch * 1115 // q_len)
    q = torch.randn(b, heads, q_len, d, device=dev, dtype=dtype)
    k = torch.randn(b, heads, n, d, device=dev, dtype=dtype)
    v = torch.randn(b, heads, n, d, device=dev, dtype=dtype)
    npad = n + (-n) % 8
    bias = torch.zeros(1, 1, q_len, npad, device=dev, dtype=dtype)
    bias[..., :n].masked_fill_(~allowed, float("-inf"))
    bias = bias[..., :n]
    bias_b = bias.expand(b, -1, -1, -1).contiguous()  # what a gather gives (rows differ)
    flops = 4 * b * heads * q_len * n * d
    allowed_flops = 4 * b * heads * int(allowed.sum()) * d
    row = {"frames": frames, "batch": b, "q_len": q_len, "k_len": n, "allowed_fraction": allowed_flops / flops}
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    variants = {}

    def sdpa(backend, mask):
        def run():
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        return run

    variants["efficient_bias_broadcast"] = sdpa(SDPBackend.EFFICIENT_ATTENTION, bias)
    variants["efficient_bias_per_row"] = sdpa(SDPBackend.EFFICIENT_ATTENTION, bias_b)
    variants["cudnn_bias_broadcast"] = sdpa(SDPBackend.CUDNN_ATTENTION, bias)
    variants["cudnn_bias_per_row"] = sdpa(SDPBackend.CUDNN_ATTENTION, bias_b)

    def flash_unmasked():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            return F.scaled_dot_product_attention(q, k[:, :, :q_len], v[:, :, :q_len], is_causal=True)

    def cudnn_unmasked():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            return F.scaled_dot_product_attention(q, k[:, :, :q_len], v[:, :, :q_len], is_causal=True)

    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        compiled = torch.compile(flex_attention)
        t = time.perf_counter()

        def mask_mod(bb, hh, qi, ki):
            return allowed[qi, ki]

        block = create_block_mask(mask_mod, None, None, q_len, n, device=dev)
        compiled(q, k, v, block_mask=block)
        torch.cuda.synchronize()
        row["flex_compile_s"] = time.perf_counter() - t
        t = time.perf_counter()
        block2 = create_block_mask(mask_mod, None, None, q_len, n, device=dev)
        torch.cuda.synchronize()
        row["flex_block_mask_s"] = time.perf_counter() - t
        variants["flex_block_mask"] = lambda: compiled(q, k, v, block_mask=block2)
    except Exception as exc:  # noqa: BLE001
        row["flex_error"] = f"{type(exc).__name__}: {exc}"[:300]
    for name, fn in variants.items():
        try:
            out = fn()
            row[name] = {
                "ms": bench(fn) * 1e3,
                "dense_tflops": flops / bench(fn) / 1e12,
                "max_abs_diff": float((out.float() - ref.float()).abs().max()),
            }
        except Exception as exc:  # noqa: BLE001
            row[name] = f"{type(exc).__name__}: {exc}"[:300]
    # Unmasked causal kernels on a square q_len x q_len problem (half its FLOPs), for their rate.
    for name, fn in (("flash_causal_square", flash_unmasked), ("cudnn_causal_square", cudnn_unmasked)):
        try:
            row[name] = {"ms": bench(fn) * 1e3, "tflops": 2 * b * heads * q_len * q_len * d / bench(fn) / 1e12}
        except Exception as exc:  # noqa: BLE001
            row[name] = f"{type(exc).__name__}: {exc}"[:300]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--batch", type=int, default=14)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    results = []
    for frames in args.frames:
        row = measure(frames, args.batch)
        print(json.dumps(row), flush=True)
        results.append(row)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
