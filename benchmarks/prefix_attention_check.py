"""GPU check: the shared-prefix attention of sweeps (fused kernel + log-sum-exp merge) vs plain attention.

    python benchmarks/prefix_attention_check.py

On CUDA, :func:`videolens.core.attention._attend_shared_prefix` attends the stacked queries
to the prefix in SDPA's memory-efficient kernel and merges that with each row's own keys;
the CPU suite cannot reach that kernel. This compares it with a float64 softmax over the
concatenated keys, for boolean and additive masks, broadcast and per-row, per-head and
head-shared, with rows whose own keys are all blocked, and for one query per row (the
grouped one-query path). Prints the worst differences.
"""

from __future__ import annotations

import json

import torch

from videolens.core.attention import _attend_shared_prefix, _repeat_kv, causal_allowed


def reference(query, past_k, past_v, key, value, allowed, scaling, n_rep):
    k = _repeat_kv(torch.cat([past_k.expand(key.shape[0], -1, -1, -1), key], 2), n_rep).double()
    v = _repeat_kv(torch.cat([past_v.expand(key.shape[0], -1, -1, -1), value], 2), n_rep).double()
    scores = query.double() @ k.transpose(2, 3) * scaling
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.nan_to_num(torch.softmax(scores, -1)) @ v


def main() -> None:
    torch.manual_seed(0)
    worst = {}
    for dtype, tol in ((torch.float32, 2e-5), (torch.bfloat16, 2e-2)):
        for heads_in_mask in (1, 8):
            for per_row in (False, True):
                for as_bias, q in ((False, 37), (True, 37), (False, 1), (True, 1)):  # q=1: the one-query path
                    b, h, kvh, prefix, d = 6, 8, 2, 301, 64
                    dev = "cuda" if torch.cuda.is_available() else "cpu"
                    query = torch.randn(b, h, q, d, device=dev)
                    past_k, past_v = torch.randn(2, 1, kvh, prefix, d, device=dev)
                    key, value = torch.randn(2, b, kvh, q, d, device=dev)
                    causal = causal_allowed(q, prefix + q, dev)
                    blocked = torch.rand(b if per_row else 1, heads_in_mask, q, prefix + q, device=dev) < 0.3
                    # Every query keeps one key (a query with every key blocked has no defined
                    # output: HF's eager path attends uniformly, SDPA returns NaN): its own.
                    own = torch.arange(q, device=dev)
                    blocked[..., own, prefix + own] = False
                    if q > 5:
                        blocked[..., 3, prefix:] = True  # a query whose own keys are all blocked
                        blocked[..., 5, :prefix] = True  # a query whose prefix keys are all blocked
                    else:
                        blocked[-1, ..., :prefix] = True  # a row that attends to its own key only
                    allowed = causal & ~blocked
                    args = [t.to(dtype) for t in (query, past_k, past_v, key, value)]
                    ref = reference(*args, allowed, d**-0.5, h // kvh)  # from the same (rounded) inputs
                    mask = allowed
                    if as_bias:
                        mask = torch.zeros(allowed.shape, dtype=dtype, device=dev).masked_fill_(~allowed, float("-inf"))
                    got = _attend_shared_prefix(*args, mask, d**-0.5, h // kvh)
                    err = (got.double() - ref).abs().max().item()
                    name = f"{str(dtype)[6:]} q={q} mask_heads={heads_in_mask} per_row={per_row} bias={as_bias}"
                    worst[name] = (err, tol)
    print(json.dumps(worst, indent=1))
    failed = {name: err for name, (err, tol) in worst.items() if not err <= tol}  # NaN fails too
    assert not failed, failed
    print("prefix attention on CUDA equals plain attention: ok")


if __name__ == "__main__":
    main()
