"""The hooked tree over a Hugging Face decoder: blocks, norms, attention and MLP hook points.

The modules here hold hook points and references to the HF modules (weights are shared,
never copied). Each reads its HF module through a public property (``hf_module``) so the
engine and readouts never reach into private members.

Norm convention (TransformerLens' ``fold_ln=True``): a norm node splits HF's RMSNorm
``w * x / rms(x)`` into ``hook_scale`` (the divisor ``rms(x) = sqrt(mean(x^2) + eps)``,
shape ``(..., 1)``) and ``hook_normalized`` (``x / rms(x)``, no weight). The weight is
folded into the next weights' views: ``W_Q``, ``W_K``, ``W_V`` carry ``ln1``'s weight,
``W_in`` and ``W_gate`` carry ``ln2``'s, and the model's ``W_U`` carries ``ln_final``'s, so
``hook_normalized @ W_Q`` is the query and TransformerLens' cache identities hold
(``cfg.normalization_type == "RMSPre"``). The forward itself multiplies by the HF weight
exactly as HF does, so logits equal HF's. ``W_O`` and ``W_out`` are views of HF's weights.

Axis glossary: ``batch``, ``pos``, ``head``, ``kv_head``, ``d_model``, ``d_head``, ``d_mlp``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import einops
import torch
from jaxtyping import Float
from torch import nn
from transformer_lens import FactoredMatrix
from transformer_lens.hook_points import HookPoint

from videolens.core.placement import execution_device, onloaded, to_device
from videolens.errors import UnsupportedModelError

if TYPE_CHECKING:
    from videolens.adapters.protocol import VideoLLMAdapter
    from videolens.core.attention import LayerCall


def is_hooked(hook: HookPoint) -> bool:
    """Whether a hook point has any forward or backward hook (then it must be computed)."""
    return bool(hook._forward_hooks or hook._backward_hooks)


# transformers puts forward hooks on decoder layers and attention modules the first time a model
# runs (to collect hidden states and attentions when asked); they do nothing outside HF's own forward.
_HF_OUTPUT_CAPTURE = "transformers.utils.output_capturing"


def has_foreign_hooks(module: nn.Module) -> bool:
    """Whether a PyTorch forward (pre-)hook other than transformers' inert output capture sits on ``module``."""
    if not (module._forward_hooks or module._forward_pre_hooks):
        return False
    hooks = (*module._forward_hooks.values(), *module._forward_pre_hooks.values())
    return any(getattr(hook, "__module__", None) != _HF_OUTPUT_CAPTURE for hook in hooks)


def rms_normalize(resid: Float[torch.Tensor, "... d_model"], eps: float) -> Float[torch.Tensor, "... d_model"]:
    """``x / rms(x)`` as HF's RMSNorm computes it (in fp32, back in the input's dtype), without the weight."""
    x = resid if resid.dtype == torch.float32 else resid.float()
    normalized = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True).add_(eps))
    return normalized if normalized.dtype == resid.dtype else normalized.to(resid.dtype)


class _HFRef(nn.Module):
    """A hooked module that refers to (but does not own) one HF module."""

    def __init__(self, hf_module: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_hf_module", hf_module)

    @property
    def hf_module(self) -> nn.Module:
        """The Hugging Face module this node wraps (its weights are the model's own)."""
        return self._hf_module


class NormHooks(_HFRef):
    """An RMSNorm of the model: ``forward`` gives ``x / rms(x)`` through ``hook_scale`` and ``hook_normalized``.

    :meth:`weighted` then applies the norm's weight, as HF's norm does last.
    """

    def __init__(self, hf_norm: nn.Module) -> None:
        super().__init__(hf_norm)
        eps = getattr(hf_norm, "variance_epsilon", getattr(hf_norm, "eps", None))
        if eps is None or not isinstance(getattr(hf_norm, "weight", None), torch.Tensor):
            raise UnsupportedModelError(
                f"{type(hf_norm).__name__} is not an RMSNorm with a weight and an epsilon; videolens "
                "splits only RMSNorms into hook_scale and hook_normalized."
            )
        self.eps = float(eps)
        self.hook_scale = HookPoint()  # (batch, pos, 1) the RMS divisor
        self.hook_normalized = HookPoint()  # (batch, pos, d_model) x / rms(x), no weight

    @property
    def w(self) -> Float[torch.Tensor, " d_model"]:
        return self.hf_module.weight

    def forward(self, resid: Float[torch.Tensor, "... d_model"]) -> Float[torch.Tensor, "... d_model"]:
        if not is_hooked(self.hook_scale):
            return self.hook_normalized(rms_normalize(resid, self.eps))  # HF's own arithmetic
        x = resid.float()
        variance = x.pow(2).mean(-1, keepdim=True).add_(self.eps)
        scale = variance.sqrt()
        version = scale._version
        hooked = self.hook_scale(scale)
        # A hook that only reads the scale leaves HF's arithmetic (x * rsqrt) and so the output
        # bitwise unchanged; an edited scale (returned, or changed in place) divides, as
        # TransformerLens does, and so does a scale gradients flow through (a backward hook sees them).
        unedited = hooked is scale and scale._version == version and not scale.requires_grad
        normed = x * torch.rsqrt(variance) if unedited else x / hooked
        return self.hook_normalized(normed.to(resid.dtype))

    def weighted(self, normalized: Float[torch.Tensor, "... d_model"]) -> Float[torch.Tensor, "... d_model"]:
        """HF's norm output: the weight times the normalized stream (an offloaded weight is loaded for it)."""
        with onloaded(self.hf_module):
            return to_device(self.w, normalized.device) * normalized

    def fold(self, weight: Float[torch.Tensor, "d_model out"]) -> Float[torch.Tensor, "d_model out"]:
        """A ``(d_model, out)`` weight with this norm's weight folded into its rows."""
        return self.w[:, None] * weight


class MLPHooks(_HFRef):
    """Hooks of a gated MLP ``down(act(gate(x)) * up(x))``: ``hook_pre`` (gate), ``hook_pre_linear`` (up), ``hook_post``.

    The HF MLP runs its own code; the hooks sit on its projections' outputs and input
    (registered only while a hook is active, see :meth:`attach`).
    """

    def __init__(self, hf_mlp: nn.Module, adapter: VideoLLMAdapter, ln2: NormHooks) -> None:
        super().__init__(hf_mlp)
        object.__setattr__(self, "_adapter", adapter)
        object.__setattr__(self, "_ln2", ln2)
        self.hook_pre = HookPoint()  # (batch, pos, d_mlp) gate projection, before the activation
        self.hook_pre_linear = HookPoint()  # (batch, pos, d_mlp) up projection
        self.hook_post = HookPoint()  # (batch, pos, d_mlp) input of the down projection

    def _proj(self, name: str | None) -> nn.Module | None:
        return getattr(self.hf_module, name) if name and hasattr(self.hf_module, name) else None

    @property
    def W_in(self) -> Float[torch.Tensor, "d_model d_mlp"]:
        return self._ln2.fold(self._proj(self._adapter.mlp_up_proj).weight.T)

    @property
    def W_gate(self) -> Float[torch.Tensor, "d_model d_mlp"]:
        return self._ln2.fold(self._proj(self._adapter.mlp_gate_proj).weight.T)

    @property
    def W_out(self) -> Float[torch.Tensor, "d_mlp d_model"]:
        return self._proj(self._adapter.mlp_out_proj).weight.T

    @property
    def b_in(self) -> Float[torch.Tensor, " d_mlp"]:
        return _bias(self._proj(self._adapter.mlp_up_proj))

    @property
    def b_out(self) -> Float[torch.Tensor, " d_model"]:
        return _bias(self._proj(self._adapter.mlp_out_proj))

    def attach(self) -> list:
        """Register PyTorch hooks on the HF projections for the active hook points; returns the handles."""
        handles = []
        a = self._adapter
        for hook, proj in ((self.hook_pre, a.mlp_gate_proj), (self.hook_pre_linear, a.mlp_up_proj)):
            module = self._proj(proj)
            if module is not None and is_hooked(hook):
                handles.append(module.register_forward_hook(lambda _m, _a, out, hook=hook: hook(out)))
        down = self._proj(a.mlp_out_proj)
        if down is not None and is_hooked(self.hook_post):
            hook = self.hook_post
            handles.append(down.register_forward_pre_hook(lambda _m, args, hook=hook: (hook(args[0]), *args[1:])))
        return handles

    def forward(self, normed: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        return self.hf_module(normed)


def _bias(module: nn.Module | None) -> torch.Tensor:
    bias = getattr(module, "bias", None) if module is not None else None
    if bias is not None:
        return bias
    weight = module.weight
    return torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)


class CircuitViews:
    """TransformerLens' OV and QK circuits from ``W_Q``, ``W_K``, ``W_V``, ``W_O`` (a layer's heads, or every layer's)."""

    @property
    def OV(self) -> FactoredMatrix:
        """``W_V @ W_O`` per head (``(..., head, d_model, d_model)``, factored)."""
        return FactoredMatrix(self.W_V, self.W_O)

    @property
    def QK(self) -> FactoredMatrix:
        """``W_Q @ W_K^T`` per head, before rotary (factored)."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))


class AttentionHooks(_HFRef, CircuitViews):
    """Hook points of one attention layer plus TransformerLens-style weight views.

    ``hook_q``/``hook_k`` are the projections before rotary (and before any q/k norm),
    ``hook_rot_q``/``hook_rot_k`` after it (RoPE or M-RoPE, HF's own); ``hook_result`` holds
    each head's output ``z_h @ W_O[h]`` and is computed only when hooked (or when
    ``cfg.use_attn_result`` is set).
    """

    def __init__(
        self,
        hf_attn: nn.Module,
        adapter: VideoLLMAdapter,
        n_heads: int,
        n_kv_heads: int,
        d_head: int,
        ln1: NormHooks,
    ) -> None:
        super().__init__(hf_attn)
        object.__setattr__(self, "_adapter", adapter)
        object.__setattr__(self, "_ln1", ln1)
        self.n_heads, self.n_kv_heads, self.d_head = n_heads, n_kv_heads, d_head
        self.use_attn_result = False
        self.hook_q = HookPoint()  # (batch, pos, head, d_head), before rotary
        self.hook_k = HookPoint()  # (batch, pos, kv_head, d_head), before rotary
        self.hook_v = HookPoint()  # (batch, pos, kv_head, d_head)
        self.hook_rot_q = HookPoint()  # (batch, pos, head, d_head), after rotary
        self.hook_rot_k = HookPoint()  # (batch, pos, kv_head, d_head), after rotary
        self.hook_attn_scores = HookPoint()  # (batch, head, q_pos, k_pos), pre-softmax, masked
        self.hook_pattern = HookPoint()  # (batch, head, q_pos, k_pos)
        self.hook_z = HookPoint()  # (batch, pos, head, d_head)
        self.hook_result = HookPoint()  # (batch, pos, head, d_model), only when asked

    @property
    def scaling(self) -> float:
        """The factor HF multiplies q·k by (``1/sqrt(d_head)`` unless the family says otherwise)."""
        return float(getattr(self.hf_module, "scaling", self.d_head**-0.5))

    @property
    def explicit(self) -> bool:
        """Whether the layer must compute its scores and pattern (a hook reads or edits them)."""
        return is_hooked(self.hook_attn_scores) or is_hooked(self.hook_pattern)

    def _proj(self, name: str) -> nn.Module:
        return getattr(self.hf_module, getattr(self._adapter, name))

    def _in_proj(self, name: str, heads: int) -> Float[torch.Tensor, "head d_model d_head"]:
        weight = self._ln1.fold(self._proj(name).weight.T)  # (d_model, heads * d_head)
        return einops.rearrange(weight, "m (h d) -> h m d", h=heads)

    def _in_bias(self, name: str, heads: int) -> Float[torch.Tensor, "head d_head"]:
        return _bias(self._proj(name)).view(heads, self.d_head)

    def _per_query_head(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.n_heads // self.n_kv_heads, dim=0)

    @property
    def W_Q(self) -> Float[torch.Tensor, "head d_model d_head"]:
        return self._in_proj("q_proj", self.n_heads)

    @property
    def _W_K(self) -> Float[torch.Tensor, "kv_head d_model d_head"]:
        return self._in_proj("k_proj", self.n_kv_heads)

    @property
    def _W_V(self) -> Float[torch.Tensor, "kv_head d_model d_head"]:
        return self._in_proj("v_proj", self.n_kv_heads)

    @property
    def W_K(self) -> Float[torch.Tensor, "head d_model d_head"]:
        """Per query head (grouped key heads repeated, as TransformerLens' grouped-query attention)."""
        return self._per_query_head(self._W_K)

    @property
    def W_V(self) -> Float[torch.Tensor, "head d_model d_head"]:
        return self._per_query_head(self._W_V)

    @property
    def W_O(self) -> Float[torch.Tensor, "head d_head d_model"]:
        weight = self._proj("o_proj").weight
        return weight.view(-1, self.n_heads, self.d_head).permute(1, 2, 0)

    @property
    def b_Q(self) -> Float[torch.Tensor, "head d_head"]:
        return self._in_bias("q_proj", self.n_heads)

    @property
    def _b_K(self) -> Float[torch.Tensor, "kv_head d_head"]:
        return self._in_bias("k_proj", self.n_kv_heads)

    @property
    def _b_V(self) -> Float[torch.Tensor, "kv_head d_head"]:
        return self._in_bias("v_proj", self.n_kv_heads)

    @property
    def b_K(self) -> Float[torch.Tensor, "head d_head"]:
        """Per query head, as ``W_K`` (``_b_K`` is per key head, with ``_W_K``)."""
        return self._per_query_head(self._b_K)

    @property
    def b_V(self) -> Float[torch.Tensor, "head d_head"]:
        return self._per_query_head(self._b_V)

    @property
    def b_O(self) -> Float[torch.Tensor, " d_model"]:
        return _bias(self._proj("o_proj"))

    def attach(self) -> list:
        """Register PyTorch hooks on the HF projections for the active hook points; returns the handles."""
        handles = []
        for hook, proj, heads in ((self.hook_q, "q_proj", self.n_heads), (self.hook_k, "k_proj", self.n_kv_heads)):
            if is_hooked(hook):
                handles.append(self._proj(proj).register_forward_hook(_per_head_hook(hook, heads)))
        if is_hooked(self.hook_result) or self.use_attn_result:
            handles.append(self._proj("o_proj").register_forward_hook(self._result_hook))
        return handles

    def _result_hook(self, _module: nn.Module, args: tuple, _out: torch.Tensor) -> torch.Tensor:
        """Recompute the output projection head by head, through ``hook_result``."""
        z = einops.rearrange(args[0], "b p (h d) -> b p h d", h=self.n_heads)
        result = self.hook_result(torch.einsum("bphd,hdm->bphm", z, self.W_O))
        return result.sum(dim=-2) + self.b_O


class LayerStack:
    """A model-level weight: every block's ``part.<name>`` stacked on a leading ``layer`` axis."""

    def __init__(self, part: str) -> None:
        self.part = part

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, model, owner=None):
        if model is None:
            return self
        device = model.cfg.device  # layers of a model spread over devices are gathered on its main one
        return torch.stack([to_device(getattr(getattr(block, self.part), self.name), device) for block in model.blocks])


def _per_head_hook(hook: HookPoint, heads: int):
    """A forward hook that shows a ``(batch, pos, heads * d_head)`` projection per head to ``hook``."""

    def run(_module: nn.Module, _args: tuple, out: torch.Tensor) -> torch.Tensor:
        per_head = einops.rearrange(out, "b p (h d) -> b p h d", h=heads)
        return einops.rearrange(hook(per_head), "b p h d -> b p (h d)")

    return run


class HookedBlock(_HFRef):
    """One decoder layer: HF's own norms, attention and MLP, composed pre-norm, with hooks."""

    #: TransformerLens' tools check this: the block's output is the one residual stream the
    #: model unembeds (no parallel streams).
    hook_out_is_single_residual_stream = True

    def __init__(
        self, hf_layer: nn.Module, adapter: VideoLLMAdapter, n_heads: int, n_kv_heads: int, d_head: int
    ) -> None:
        super().__init__(hf_layer)
        self.hook_resid_pre = HookPoint()
        self.ln1 = NormHooks(getattr(hf_layer, adapter.ln1))
        self.attn = AttentionHooks(getattr(hf_layer, adapter.attn), adapter, n_heads, n_kv_heads, d_head, self.ln1)
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.ln2 = NormHooks(getattr(hf_layer, adapter.ln2))
        self.mlp = MLPHooks(getattr(hf_layer, adapter.mlp), adapter, self.ln2)
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()
        # Every hook point of the layer: a hook on any of them sends the layer down its own code.
        self._hook_points = [m for m in self.modules() if isinstance(m, HookPoint)]
        self._hf_modules = list(hf_layer.modules())
        self._compiled = None
        from videolens.core.one_token import OneTokenLayer  # (that module imports this one)

        self._one_token = OneTokenLayer.for_block(self, adapter)

    @property
    def hf_layer(self) -> nn.Module:
        return self.hf_module

    @property
    def device(self) -> torch.device:
        """Where this layer computes (its accelerate execution device when the model is dispatched)."""
        return execution_device(self.hf_layer) or torch.device("cpu")

    def attach(self) -> list:
        """PyTorch hooks on this layer's HF projections for the hook points in use."""
        return self.attn.attach() + self.mlp.attach()

    def forward(
        self,
        resid: Float[torch.Tensor, "batch pos d_model"],
        call: LayerCall,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        device = self.device
        if resid.device != device:  # a model spread over devices (device_map): move in, as accelerate would
            resid = resid.to(device)
            position_embeddings = tuple(to_device(t, device) for t in position_embeddings)
        if call.allowed is not None and call.allowed.device != device:
            call = replace(call, allowed=call.allowed.to(device))
        # One-token rows (knockouts into the last token) take the flat layer even when compiled: on
        # the CPU a compiled call costs more than the eager layer, and on one H200 that target's
        # sweep took 0.031 s with flat layers vs 0.042 s with compiled ones (benchmarks/RESULTS.md).
        # The cheap checks of the call come first: most calls (whole prompts) take neither path.
        flat = self._one_token is not None and self._one_token.applies(resid, call)
        compiled = self._compiled is not None and not torch.is_grad_enabled()  # gradients take the eager layer
        if (flat or compiled) and self._unhooked():
            if flat:
                return self._one_token(resid, call, position_embeddings)
            return self._compiled(resid, call, position_embeddings)
        handles = self.attach()  # only for hook points in use; removed right after this layer
        try:
            return self._compute(resid, call, position_embeddings)
        finally:
            for handle in handles:
                handle.remove()

    def _unhooked(self) -> bool:
        """Whether nothing needs this layer's own code: no hook point hooked, no PyTorch hook on its HF modules."""
        return (
            not self.attn.use_attn_result
            and not any(map(is_hooked, self._hook_points))
            and not any(map(has_foreign_hooks, self._hf_modules))
        )

    def compile(self, enabled: bool = True, **options: Any) -> None:
        """Run this layer through ``torch.compile`` when no hook is on it and no gradient is wanted.

        A layer with an active hook (a cache, a patch, a probe, or a PyTorch hook on its HF
        modules), or called with gradients enabled, runs eagerly as always, so hooks and
        gradients see exactly what they see without compilation. ``options`` go to
        ``torch.compile`` (default ``dynamic=True``: one compilation serves every batch and
        sequence length). ``enabled=False`` goes back to the eager layer.
        """
        if not enabled:
            self._compiled = None
            return
        from videolens.core.compiled_attention import layer_call  # (that module imports this one)

        compiled = torch.compile(self._compute, **{"dynamic": True, **options})

        def run_compiled(resid, call, position_embeddings):
            with layer_call(call):  # what the attention operator inside the graph serves
                return compiled(resid, call, position_embeddings)

        self._compiled = run_compiled

    def _compute(
        self,
        resid: Float[torch.Tensor, "batch pos d_model"],
        call: LayerCall,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        """The layer itself: pre-norm attention and MLP with their residual adds and hook points."""
        resid = self.hook_resid_pre(resid)
        attn_out = self.attn.hf_module(
            hidden_states=self.ln1.weighted(self.ln1(resid)),
            attention_mask=call,
            position_embeddings=position_embeddings,
            position_ids=None,
        )[0]
        resid = self.hook_resid_mid(resid + self.hook_attn_out(attn_out))
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2.weighted(self.ln2(resid))))
        return self.hook_resid_post(resid + mlp_out)


class Embed(_HFRef):
    """The token embedding (HF's ``embed_tokens``): ``W_E`` is its weight."""

    @property
    def W_E(self) -> Float[torch.Tensor, "d_vocab d_model"]:
        return self.hf_module.weight

    def forward(self, tokens: torch.Tensor) -> Float[torch.Tensor, "batch pos d_model"]:
        return self.hf_module(tokens)


class Unembed(_HFRef):
    """The unembedding of the *normalized* stream (``ln_final``'s output, no weight), as TransformerLens.

    ``W_U`` is HF's head with the final norm's weight folded into its rows, so
    ``unembed(x) == x @ W_U + b_U`` and ``unembed(ln_final(resid))`` are the model's logits.
    """

    def __init__(self, lm_head: nn.Module, ln_final: NormHooks) -> None:
        super().__init__(lm_head)
        object.__setattr__(self, "_ln_final", ln_final)

    @property
    def W_U(self) -> Float[torch.Tensor, "d_model d_vocab"]:
        return self._ln_final.fold(self.hf_module.weight.T)

    @property
    def b_U(self) -> Float[torch.Tensor, " d_vocab"]:
        return _bias(self.hf_module)

    def forward(self, normalized: Float[torch.Tensor, "... d_model"]) -> Float[torch.Tensor, "... d_vocab"]:
        return self.hf_module(self._ln_final.weighted(normalized))
