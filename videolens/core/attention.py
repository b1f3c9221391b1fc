"""videolens' attention function, registered with Hugging Face's attention registry.

HF attention modules compute q, k, v and apply their own rotary embedding (RoPE,
M-RoPE), then call the function registered under ``config._attn_implementation``.
videolens registers :func:`videolens_attention` under the name ``"videolens"`` and
switches a language model to it only while videolens drives that model. The function:

- exposes ``hook_rot_q``, ``hook_rot_k`` (after rotary), ``hook_v``, ``hook_attn_scores``
  (pre-softmax, after masks), ``hook_pattern`` and ``hook_z``;
- prepends cached keys/values of earlier positions (generation, sweeps) and stores the
  new ones when asked;
- honours the boolean edge masks compiled from interventions;
- takes the fused path (``scaled_dot_product_attention``) when no score/pattern hook is
  active, and the explicit path (scores, softmax, weighted sum) when one is.

The ``attention_mask`` argument HF passes through is a :class:`LayerCall` built by the
hooked model for that layer, so the function needs no global state.

Axis glossary: ``batch``, ``head`` (query heads), ``kv_head``, ``q_pos``, ``k_pos``,
``d_head``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from videolens.core.blocks import is_hooked
from videolens.errors import StateError

if TYPE_CHECKING:
    from videolens.core.blocks import AttentionHooks

ATTN_IMPLEMENTATION = "videolens"


@dataclass
class KVStore:
    """Keys and values (after rotary and hooks) per layer, for reuse by later calls."""

    keys: dict[int, torch.Tensor]
    values: dict[int, torch.Tensor]

    @classmethod
    def empty(cls) -> KVStore:
        return cls({}, {})

    def length(self) -> int:
        return next(iter(self.keys.values())).shape[2] if self.keys else 0


@dataclass
class LayerCall:
    """Everything the attention function needs for one layer of one forward pass.

    Attributes:
        layer: the layer index.
        hooks: the layer's attention hook points.
        allowed: ``(batch, 1 or head, q_pos, k_pos)`` True where a query may attend a key,
            or ``None`` for a plain causal pass over the whole sequence. It may also be an
            additive bias already in the kernel's form (0 allowed, ``-inf`` blocked; the
            sweep engine builds those once per mask on CUDA).
        past: keys/values of earlier positions to prepend (generation, sweeps), or None.
        store: where to put this layer's full keys/values, or None.
    """

    layer: int
    hooks: AttentionHooks
    allowed: Bool[torch.Tensor, "batch head_or_1 q_pos k_pos"] | None = None
    past: KVStore | None = None
    store: KVStore | None = None


def _repeat_kv(x: Float[torch.Tensor, "batch kv_head pos d_head"], n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def _hooked(hook, x: torch.Tensor) -> torch.Tensor:
    """Apply a hook point to a ``(batch, head, pos, d)`` tensor in TL's ``(batch, pos, head, d)`` order."""
    if not is_hooked(hook):
        return x
    return hook(x.transpose(1, 2)).transpose(1, 2)


def causal_allowed(q_len: int, k_len: int, device: torch.device) -> Bool[torch.Tensor, "q_pos k_pos"]:
    """Causal mask for ``q_len`` queries that are the last ``q_len`` of ``k_len`` positions."""
    q_idx = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    return torch.arange(k_len, device=device)[None, :] <= q_idx


def videolens_attention(
    module: torch.nn.Module,
    query: Float[torch.Tensor, "batch head q_pos d_head"],
    key: Float[torch.Tensor, "batch kv_head q_pos d_head"],
    value: Float[torch.Tensor, "batch kv_head q_pos d_head"],
    attention_mask: LayerCall,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[Float[torch.Tensor, "batch q_pos head d_head"], torch.Tensor | None]:
    """Attention with hooks, cached prefixes and edge masks (see the module docstring)."""
    call = attention_mask
    if not isinstance(call, LayerCall):
        raise StateError(
            "The 'videolens' attention implementation runs only inside HookedVideoLLM calls; "
            "call the Hugging Face model with its own attn_implementation instead."
        )
    hooks = call.hooks
    query = _hooked(hooks.hook_rot_q, query)
    key = _hooked(hooks.hook_rot_k, key)
    value = _hooked(hooks.hook_v, value)
    n_rep = query.shape[1] // key.shape[1]
    explicit = hooks.explicit
    past_k = call.past.keys.get(call.layer) if call.past is not None else None
    if past_k is not None:
        past_v = call.past.values[call.layer]
        shared = past_k.shape[0] == 1 < query.shape[0]
        if shared and not explicit and call.store is None and past_k.shape[2] > 4 * query.shape[2]:
            # Many conditions over one long cached prefix (sweeps): attend to the prefix
            # without copying it once per condition.
            z = _attend_shared_prefix(query, past_k, past_v, key, value, call.allowed, scaling, n_rep)
            return hooks.hook_z(z.transpose(1, 2).contiguous()), None
        if shared:
            past_k = past_k.expand(query.shape[0], -1, -1, -1)
            past_v = past_v.expand(query.shape[0], -1, -1, -1)
        key = torch.cat([past_k, key], dim=2)
        value = torch.cat([past_v, value], dim=2)
    if call.store is not None:
        call.store.keys[call.layer] = key
        call.store.values[call.layer] = value

    q_len, k_len = query.shape[2], key.shape[2]
    allowed = call.allowed
    pattern = None
    if explicit:
        allowed = _as_bool(allowed)
    if not explicit:
        if allowed is None and q_len != k_len:
            allowed = causal_allowed(q_len, k_len, query.device)[None, None]
        mask = _kernel_mask(allowed, query)
        key, value = _repeat_kv(key, n_rep), _repeat_kv(value, n_rep)
        if mask is not None and q_len >= 2 * _CAUSAL_CHUNK and mask.shape[-2] == q_len:
            z = _attend_in_causal_chunks(query, key, value, mask, scaling)
        else:
            z = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, is_causal=allowed is None, scale=scaling
            )
    else:
        if allowed is None:
            allowed = causal_allowed(q_len, k_len, query.device)[None, None]
        scores = torch.matmul(query, _repeat_kv(key, n_rep).transpose(2, 3)) * scaling
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        scores = hooks.hook_attn_scores(scores)
        pattern = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        pattern = hooks.hook_pattern(pattern)
        z = torch.matmul(pattern, _repeat_kv(value, n_rep))
    z = hooks.hook_z(z.transpose(1, 2).contiguous())
    return z, pattern


# Masked attention over at least twice this many queries runs in chunks of queries (see below).
_CAUSAL_CHUNK = 1024
_MAX_CAUSAL_CHUNKS = 8


def _attend_in_causal_chunks(
    query: Float[torch.Tensor, "batch head q_pos d_head"],
    key: Float[torch.Tensor, "batch head k_pos d_head"],
    value: Float[torch.Tensor, "batch head k_pos d_head"],
    mask: torch.Tensor,
    scaling: float,
) -> Float[torch.Tensor, "batch head q_pos d_head"]:
    """Masked attention in chunks of queries, each over the keys up to its last query only.

    The queries are the last ``q_len`` of ``k_len`` positions and the mask holds the causal
    mask, so the keys after a chunk's last query are blocked for the whole chunk. A kernel
    given an arbitrary mask cannot skip those blocks: it scores them and reads their part
    of the mask. Dropping them leaves every softmax as it was and removes close to half
    of the work on long sequences (knockouts over many frames: the cross-frame sweep).
    """
    q_len, k_len = query.shape[2], key.shape[2]
    step = max(_CAUSAL_CHUNK, -(-q_len // _MAX_CAUSAL_CHUNKS))
    chunks = []
    for start in range(0, q_len, step):
        stop = min(q_len, start + step)
        keys = k_len - q_len + stop
        z = F.scaled_dot_product_attention(
            query[:, :, start:stop],
            key[:, :, :keys],
            value[:, :, :keys],
            attn_mask=mask[..., start:stop, :keys],
            scale=scaling,
        )
        chunks.append(z.transpose(1, 2))
    return torch.cat(chunks, dim=1).transpose(1, 2)  # contiguous in (batch, q_pos, head, d_head)


def _kernel_mask(allowed: torch.Tensor | None, query: torch.Tensor) -> torch.Tensor | None:
    """The mask in the form the fast GPU kernels take.

    On CUDA a boolean mask sends ``scaled_dot_product_attention`` to its slow math
    fallback; an additive mask in the query dtype whose rows are 8-aligned in memory keeps
    it on the memory-efficient kernel. On the CPU the boolean mask is used as it is.
    """
    if allowed is None or allowed.is_floating_point() or not query.is_cuda:
        return allowed
    n = allowed.shape[-1]
    bias = torch.zeros(*allowed.shape[:-1], n + (-n) % 8, dtype=query.dtype, device=query.device)[..., :n]
    return bias.masked_fill_(~allowed, float("-inf"))


def _as_bool(allowed: torch.Tensor | None) -> Bool[torch.Tensor, "batch head_or_1 q_pos k_pos"] | None:
    """An allowed mask as booleans (an additive bias is allowed where it is 0)."""
    if allowed is None or not allowed.is_floating_point():
        return allowed
    return allowed == 0


# The most attention scores (conditions x heads x queries x keys) one slice of the shared-prefix path holds.
_SCORE_BUDGET = 2**26
# On CUDA, below this many scores in all the explicit way is taken: the fused kernel and the
# merge cost more kernel launches than the scores cost (one-token conditions).
_SMALL_SCORES = 2**24


def _attend_shared_prefix(
    query: Float[torch.Tensor, "batch head q_pos d_head"],
    past_k: Float[torch.Tensor, "1 kv_head prefix d_head"],
    past_v: Float[torch.Tensor, "1 kv_head prefix d_head"],
    key: Float[torch.Tensor, "batch kv_head q_pos d_head"],
    value: Float[torch.Tensor, "batch kv_head q_pos d_head"],
    allowed: torch.Tensor | None,
    scaling: float,
    n_rep: int,
    merged: bool | None = None,
) -> Float[torch.Tensor, "batch head q_pos d_head"]:
    """Attention over [shared prefix, own keys], the prefix shared by the batch (never copied per row).

    The queries of all rows are stacked into one ``(head, batch x q_pos, d_head)`` matrix
    per head, so they attend to the prefix in one call (a broadcast ``matmul`` against a
    batch-1 prefix would first copy the prefix once per row: a gigabyte per layer for a
    hundred conditions over a long video). Two ways, chosen by ``merged`` (default: on
    CUDA when there are more than ``_SMALL_SCORES`` scores):

    - merged: the prefix part runs in SDPA's fused memory-efficient kernel (no score
      matrix in memory), each row's own keys are attended apart, and the two partial
      softmaxes are merged exactly through their log-sum-exps;
    - explicit: one score matrix over [prefix, own keys] and one softmax; fewer kernel
      launches, which is what counts on the CPU. With one query per row it stacks the
      query heads of each key head instead (:func:`_attend_one_query`), so a grouped-query
      model's prefix is not repeated per group.

    Rows are taken in slices of at most ``_SCORE_BUDGET`` scores held at once. ``allowed``
    is boolean or an additive bias (0 allowed, ``-inf`` blocked).
    """
    b, h, q_len, d = query.shape
    prefix = past_k.shape[2]
    if allowed is None:
        allowed = causal_allowed(q_len, prefix + q_len, query.device)[None, None]
    if merged is None:
        merged = query.is_cuda and b * h * q_len * (prefix + q_len) > _SMALL_SCORES
    fused = merged and query.is_cuda
    held = (allowed.shape[1] * prefix if fused else h * prefix) + h * q_len  # scores held per query row
    step = max(1, _SCORE_BUDGET // (q_len * held))
    if q_len == 1 and not merged:  # query heads grouped by key head: the prefix is never repeated
        kp, vp, k_own, v_own, attend = past_k, past_v, key, value, _attend_one_query
    else:
        kp, vp = _repeat_kv(past_k, n_rep), _repeat_kv(past_v, n_rep)  # (1, head, prefix, d_head)
        k_own, v_own = _repeat_kv(key, n_rep), _repeat_kv(value, n_rep)
        attend = _attend_slice_merged if merged else _attend_slice_explicit
    if step >= b:
        return attend(query, kp, vp, k_own, v_own, allowed, scaling)
    out = []
    for s in range(0, b, step):
        mask = allowed if allowed.shape[0] == 1 else allowed[s : s + step]
        out.append(attend(query[s : s + step], kp, vp, k_own[s : s + step], v_own[s : s + step], mask, scaling))
    return torch.cat(out)


def _attend_slice_explicit(
    query: Float[torch.Tensor, "rows head q_pos d_head"],
    kp: Float[torch.Tensor, "1 head prefix d_head"],
    vp: Float[torch.Tensor, "1 head prefix d_head"],
    k_own: Float[torch.Tensor, "rows head q_pos d_head"],
    v_own: Float[torch.Tensor, "rows head q_pos d_head"],
    mask: torch.Tensor,
    scaling: float,
) -> Float[torch.Tensor, "rows head q_pos d_head"]:
    """One slice of :func:`_attend_shared_prefix`: one score matrix and one softmax."""
    rows, h, q_len, d = query.shape
    prefix = kp.shape[2]
    stacked = query.transpose(0, 1).reshape(h, rows * q_len, d)
    to_prefix = torch.matmul(stacked, kp[0].transpose(1, 2)).view(h, rows, q_len, prefix).transpose(0, 1)
    scores = torch.cat([to_prefix, torch.matmul(query, k_own.transpose(2, 3))], dim=-1) * scaling
    if mask.is_floating_point():
        scores = scores + mask
    else:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    pattern = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = pattern[..., :prefix].transpose(0, 1).reshape(h, rows * q_len, prefix)
    from_prefix = torch.matmul(weights, vp[0]).view(h, rows, q_len, d).transpose(0, 1)
    return from_prefix + torch.matmul(pattern[..., prefix:], v_own)


def _attend_one_query(
    query: Float[torch.Tensor, "rows head 1 d_head"],
    kp: Float[torch.Tensor, "1 kv_head prefix d_head"],
    vp: Float[torch.Tensor, "1 kv_head prefix d_head"],
    k_own: Float[torch.Tensor, "rows kv_head 1 d_head"],
    v_own: Float[torch.Tensor, "rows kv_head 1 d_head"],
    mask: torch.Tensor,
    scaling: float,
) -> Float[torch.Tensor, "rows head 1 d_head"]:
    """One slice of :func:`_attend_shared_prefix` when each row has one query (knockouts into the last token).

    The same scores and softmax as :func:`_attend_slice_explicit` in about half as many
    tensor operations, which is what such a step costs (not its FLOPs): a row's score for
    its own key is a dot product and the mask is applied in place. The query heads that
    share a key head (grouped-query attention, as in HF's ``repeat_kv``: head ``i`` reads
    key head ``i // group``) are stacked against that key head, so the cached prefix is
    read as it is instead of being repeated per group at every layer.
    """
    rows, h, _, d = query.shape
    kv_heads, prefix = kp.shape[1], kp.shape[2]
    group = h // kv_heads
    grouped = query.view(rows, kv_heads, group, d).transpose(0, 1)  # (kv_head, rows, group, d_head)
    to_prefix = torch.bmm(grouped.reshape(kv_heads, rows * group, d), kp[0].transpose(1, 2))
    own = (grouped * k_own.view(rows, kv_heads, 1, d).transpose(0, 1)).sum(-1, True)
    scores = torch.cat([to_prefix.view(kv_heads, rows, group, prefix), own], dim=-1).mul_(scaling)
    mask = mask[:, :, 0]  # (rows or 1, head or 1, prefix + 1)
    mask = mask.view(mask.shape[0], -1, group if mask.shape[1] == h else 1, prefix + 1).transpose(0, 1)
    if mask.is_floating_point():
        scores += mask
    else:
        scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
    pattern = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)  # (kv_head, rows, group, prefix + 1)
    from_own = pattern[..., prefix:] * v_own.view(rows, kv_heads, 1, d).transpose(0, 1)
    z = torch.baddbmm(
        from_own.view(kv_heads, rows * group, d), pattern[..., :prefix].reshape(kv_heads, rows * group, prefix), vp[0]
    )
    return z.view(kv_heads, rows, group, d).transpose(0, 1).reshape(rows, h, 1, d)


def _attend_slice_merged(
    query: Float[torch.Tensor, "rows head q_pos d_head"],
    kp: Float[torch.Tensor, "1 head prefix d_head"],
    vp: Float[torch.Tensor, "1 head prefix d_head"],
    k_own: Float[torch.Tensor, "rows head q_pos d_head"],
    v_own: Float[torch.Tensor, "rows head q_pos d_head"],
    mask: torch.Tensor,
    scaling: float,
) -> Float[torch.Tensor, "rows head q_pos d_head"]:
    """One slice of :func:`_attend_shared_prefix`: prefix and own keys apart, merged by log-sum-exp."""
    rows, h, q_len, d = query.shape
    prefix = kp.shape[2]
    mask = _as_bias(mask, query.dtype).expand(rows, -1, -1, -1)
    stacked = query.transpose(0, 1).reshape(1, h, rows * q_len, d)
    prefix_bias = mask[..., :prefix].transpose(0, 1).reshape(1, -1, rows * q_len, prefix)
    prefix_out, prefix_lse = _attend_stacked(stacked, kp, vp, prefix_bias, scaling)
    prefix_out = prefix_out.view(h, rows, q_len, d).transpose(0, 1)
    prefix_lse = prefix_lse.view(h, rows, q_len).transpose(0, 1)
    own_scores = torch.matmul(query, k_own.transpose(2, 3)).float() * scaling + mask[..., prefix:]
    own_pattern, own_lse = _softmax_and_lse(own_scores)
    own_out = torch.matmul(own_pattern.to(query.dtype), v_own)
    return _merge_softmaxes(prefix_out, prefix_lse, own_out, own_lse).to(query.dtype)


def _as_bias(allowed: torch.Tensor, dtype: torch.dtype) -> Float[torch.Tensor, "batch head_or_1 q_pos k_pos"]:
    """An allowed mask as an additive bias (0 allowed, ``-inf`` blocked) in ``dtype``."""
    if allowed.is_floating_point():
        return allowed.to(dtype)
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


def _attend_stacked(
    query: Float[torch.Tensor, "1 head rows d_head"],
    key: Float[torch.Tensor, "1 head prefix d_head"],
    value: Float[torch.Tensor, "1 head prefix d_head"],
    bias: Float[torch.Tensor, "1 head_or_1 rows prefix"],
    scaling: float,
) -> tuple[Float[torch.Tensor, "1 head rows d_head"], Float[torch.Tensor, "1 head rows"]]:
    """Softmax attention and its log-sum-exp (fp32) of stacked queries against one prefix."""
    if query.is_cuda:
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, _aligned_bias(bias, query.shape[1]), True, scale=scaling
        )[:2]
        # A row whose keys are all blocked holds no keys: its log-sum-exp is -inf (the kernel
        # reports a finite placeholder for it, which would give its zero output weight).
        empty = torch.isneginf(bias).all(-1)
        return out, lse[..., : query.shape[2]].masked_fill(empty, float("-inf"))
    scores = torch.matmul(query, key.transpose(2, 3)).float() * scaling + bias
    pattern, lse = _softmax_and_lse(scores)
    return torch.matmul(pattern.to(query.dtype), value), lse


def _softmax_and_lse(
    scores: Float[torch.Tensor, "... k_pos"],
) -> tuple[Float[torch.Tensor, "... k_pos"], Float[torch.Tensor, "..."]]:
    """Softmax over the last axis and its log-sum-exp; a row with every score ``-inf`` gets zeros.

    Zeros rather than the NaNs of ``softmax``: such a row is given weight 0 when the parts
    are merged, and a NaN must not reach the matrix product (some CPU kernels spread it).
    """
    lse = torch.logsumexp(scores, dim=-1)
    finite = torch.where(torch.isfinite(lse), lse, 0.0)
    return torch.exp(scores - finite[..., None]), lse


def _aligned_bias(bias: torch.Tensor, heads: int) -> torch.Tensor:
    """``bias`` broadcast to ``heads`` with 8-aligned rows, as the memory-efficient kernel takes it."""
    n = bias.shape[-1]
    if bias.stride(-1) != 1 or bias.stride(-2) % 8:
        padded = torch.empty(*bias.shape[:-1], n + (-n) % 8, dtype=bias.dtype, device=bias.device)
        padded[..., :n] = bias
        bias = padded[..., :n]
    return bias.expand(bias.shape[0], heads, -1, -1)


def _merge_softmaxes(
    out_a: Float[torch.Tensor, "batch head q_pos d_head"],
    lse_a: Float[torch.Tensor, "batch head q_pos"],
    out_b: Float[torch.Tensor, "batch head q_pos d_head"],
    lse_b: Float[torch.Tensor, "batch head q_pos"],
) -> Float[torch.Tensor, "batch head q_pos d_head"]:
    """Attention over the union of two key sets from the attention over each and its log-sum-exp.

    A part whose keys are all blocked (log-sum-exp ``-inf``, its output undefined) gets
    weight 0.
    """
    lse = torch.logaddexp(lse_a, lse_b)
    merged = None
    for out, part_lse in ((out_a, lse_a), (out_b, lse_b)):
        weight = torch.exp(part_lse - lse)[..., None]
        term = torch.where(weight > 0, weight * out.float(), 0.0)
        merged = term if merged is None else merged + term
    return merged


def register() -> None:
    """Register the attention function (and its mask function) with transformers, once."""
    if ATTN_IMPLEMENTATION not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTN_IMPLEMENTATION, videolens_attention)
    if ATTN_IMPLEMENTATION not in AttentionMaskInterface._global_mapping:
        # An attention name with no mask function silently loses its causal mask in HF's
        # own mask code; videolens builds its masks itself, but keep HF's path correct too.
        AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)


register()
