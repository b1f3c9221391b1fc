"""One query per row against a shared cached prefix (knockouts into the last token): grouped heads vs a repeated prefix.

    python benchmarks/one_query_attention.py --out results_one_query_attention_cpu.json

With grouped-query attention (Qwen2-7B: 28 query heads over 4 key heads) the one-query
path of :func:`videolens.core.attention._attend_shared_prefix` stacks the query heads of
each key head against that key head, so the cached prefix is read as it is. The way
before repeated the prefix keys and values per group at every layer step (HF's
``repeat_kv``), a copy of ``group`` times the layer's cache. Both are timed here on the
same inputs (the repeated way: ``_repeat_kv`` then the same kernel with one query head
per key head), with the maximum difference between them; the JSON holds every shape.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from videolens.core.attention import _attend_one_query, _attend_shared_prefix, _repeat_kv

SHAPES = {  # (query heads, key heads, head width)
    "qwen2-7b": (28, 4, 128),
    "llama-7b (no grouping)": (32, 32, 128),
}


def seconds(fn, device: str, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    results = []
    torch.manual_seed(0)
    for name, (h, kvh, d) in SHAPES.items():
        for prefix in (1356, 4812):
            for rows in (24, 96):
                q = torch.randn(rows, h, 1, d, device=args.device, dtype=dtype)
                pk, pv = torch.randn(2, 1, kvh, prefix, d, device=args.device, dtype=dtype)
                k, v = torch.randn(2, rows, kvh, 1, d, device=args.device, dtype=dtype)
                bias = torch.zeros(rows, 1, 1, prefix + 1, device=args.device, dtype=dtype)
                bias[..., 100:300] = float("-inf")
                group, scaling = h // kvh, d**-0.5

                def grouped(q=q, pk=pk, pv=pv, k=k, v=v, bias=bias, group=group, scaling=scaling):
                    return _attend_shared_prefix(q, pk, pv, k, v, bias, scaling, group, merged=False)

                def repeated(q=q, pk=pk, pv=pv, k=k, v=v, bias=bias, group=group, scaling=scaling):
                    kp, vp, ko, vo = (_repeat_kv(t, group) for t in (pk, pv, k, v))
                    return _attend_one_query(q, kp, vp, ko, vo, bias, scaling)

                diff = (grouped().float() - repeated().float()).abs().max().item()
                t_grouped, t_repeated = (
                    seconds(grouped, args.device, args.repeats),
                    seconds(repeated, args.device, args.repeats),
                )
                results.append(
                    {
                        "shape": name,
                        "heads": h,
                        "kv_heads": kvh,
                        "prefix": prefix,
                        "rows": rows,
                        "grouped_ms": t_grouped * 1e3,
                        "repeated_ms": t_repeated * 1e3,
                        "speedup": t_repeated / t_grouped,
                        "max_difference": diff,
                    }
                )
                print(json.dumps(results[-1]))
    out = {"device": args.device, "dtype": str(dtype), "torch": torch.__version__, "results": results}
    if args.device == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
