"""Hook points on the vision tower and the projector, under the ``vision.`` prefix.

The vision tower runs inside the HF forward that :meth:`HookedVideoLLM.lm_inputs
<videolens.core.hooked.HookedVideoLLM.lm_inputs>` triggers, with HF's own code. The hook
points here are reached through PyTorch forward hooks (and pre-hooks) on HF's modules,
registered by :meth:`VisionHooks.attached` around that forward for the hook points that
have hooks only, and always removed after it. With no ``vision.`` hook active nothing is
registered and nothing is switched: the tower runs exactly as HF runs it.

Hook names (``l`` a vision layer; shapes are HF's own layout, see docs/hooks.md)::

    vision.blocks.{l}.hook_resid_pre     input of encoder layer l (HF's vision hidden_states[l])
    vision.blocks.{l}.attn.hook_attn_scores, hook_pattern, hook_z
    vision.blocks.{l}.hook_attn_out      output of the layer's HF attention module
    vision.blocks.{l}.hook_mlp_out       output of the layer's HF MLP module
    vision.blocks.{l}.hook_resid_post    output of encoder layer l (HF's hidden_states[l + 1])
    vision.hook_vision_features          the selected tower features the next module takes
    vision.hook_projected                the projector's output (before any pooling after it)

Only the layers whose output reaches the features are hooked: a family that takes its
features at ``vision_feature_layer=-2`` (LLaVA-NeXT-Video, Video-LLaVA, PLLaVA) runs its
last tower layer for nothing, and that layer has no hook points
(:meth:`~videolens.adapters.VideoLLMAdapter.vision_layers_used`).

Attention hooks: while one of a layer's ``attn`` hook points is hooked, the tower's
config is switched to videolens' vision attention function (:func:`vision_attention`,
registered with HF's attention registry), which computes HF's eager attention with the
hook points in the middle, so an edited pattern is the one HF's output projection sees.
Its registered name contains "flash" on purpose: towers that pack every frame into one
sequence (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, VideoLLaMA3) then take their single-call branch
and hand it the whole sequence with ``cu_seq_lens_q`` (their eager branch calls the
function once per chunk, which would fire the hook points several times per layer). The
function splits the packed sequence into its attention chunks itself, so the pattern is
``(chunk, head, q_pos, k_pos)``: a chunk is a frame for CLIP/SigLIP/InternViT (each frame
is a batch item), a temporal unit for the Qwen towers' full-attention layers, a window for
Qwen2.5-VL's windowed layers and a frame for VideoLLaMA3; chunks of unequal length are
padded to the longest (scores ``finfo.min``, pattern 0 at padded keys).

Axis glossary: ``frame`` (an image the tower encodes), ``vision_pos`` (a tower token),
``chunk``, ``head``, ``q_pos``/``k_pos``, ``d_head``, ``d_vision`` (tower width),
``d_model`` (language-model width).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.hooks import RemovableHandle
from transformer_lens.hook_points import HookPoint
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from videolens.adapters.protocol import get_path
from videolens.core.blocks import _HFRef, is_hooked
from videolens.errors import LayerRangeError, UnsupportedModelError

if TYPE_CHECKING:
    from videolens.adapters.protocol import VideoLLMAdapter

#: The name of :func:`vision_attention` in HF's attention registry ("flash": see the module docstring).
VISION_ATTN_IMPLEMENTATION = "videolens_vision_packed_flash"

#: HF attention module -> its hook points, for the layers whose attention hooks are active
#: (filled and emptied by :meth:`VisionHooks.attached`).
_ATTACHED: dict[nn.Module, VisionAttentionHooks] = {}


class VisionAttentionHooks(_HFRef):
    """Hook points of one vision attention layer, computed by :func:`vision_attention`."""

    def __init__(self, hf_attn: nn.Module) -> None:
        super().__init__(hf_attn)
        self.hook_attn_scores = HookPoint()  # (chunk, head, q_pos, k_pos), scaled, padded keys at finfo.min
        self.hook_pattern = HookPoint()  # (chunk, head, q_pos, k_pos)
        self.hook_z = HookPoint()  # (chunk, q_pos, head, d_head)

    @property
    def active(self) -> bool:
        """Whether a hook reads or edits this layer's attention (then videolens computes it)."""
        return any(is_hooked(h) for h in (self.hook_attn_scores, self.hook_pattern, self.hook_z))


#: The hook points of a layer with no active hook: never hooked, so calling them changes nothing.
_UNHOOKED = VisionAttentionHooks(nn.Identity())


class VisionBlockHooks(_HFRef):
    """Hook points of one encoder layer of the vision tower (the layer's HF modules run their own code)."""

    def __init__(self, hf_layer: nn.Module, adapter: VideoLLMAdapter) -> None:
        super().__init__(hf_layer)
        self.hook_resid_pre = HookPoint()  # the layer's input
        self.attn = VisionAttentionHooks(get_path(hf_layer, adapter.vision_attn))
        self.hook_attn_out = HookPoint()  # the HF attention module's output
        object.__setattr__(self, "_hf_mlp", get_path(hf_layer, adapter.vision_mlp))
        self.hook_mlp_out = HookPoint()  # the HF MLP module's output
        self.hook_resid_post = HookPoint()  # the layer's output

    def attach(self) -> list[RemovableHandle]:
        """PyTorch hooks on this layer's HF modules for the hook points in use; returns the handles."""
        return [
            *_through_input(self.hook_resid_pre, self.hf_module),
            *_through_output(self.hook_attn_out, self.attn.hf_module),
            *_through_output(self.hook_mlp_out, self._hf_mlp),
            *_through_output(self.hook_resid_post, self.hf_module),
        ]


class VisionHooks(nn.Module):
    """The ``vision.`` hook tree: per-layer hook points of the tower, its features and the projector's output.

    Built from the adapter's declared paths (``vision_tower``, ``vision_layers``,
    ``vision_attn``, ``vision_mlp``, ``vision_features_input``, ``projector``); an adapter
    whose ``vision_tower`` is None gets an empty tree.
    """

    def __init__(self, hf_model: nn.Module, adapter: VideoLLMAdapter) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.n_layers = 0
        if adapter.vision_tower is None:
            return
        tower = get_path(hf_model, adapter.vision_tower)
        layers = get_path(tower, adapter.vision_layers)
        used = adapter.vision_layers_used(hf_model.config, len(layers))
        self.blocks.extend(VisionBlockHooks(layer, adapter) for layer in list(layers)[:used])
        self.n_layers = len(self.blocks)
        self.hook_vision_features = HookPoint()  # the tower features the next module takes
        self.hook_projected = HookPoint()  # the projector's output
        object.__setattr__(self, "_features_input", get_path(hf_model, adapter.vision_features_input))
        object.__setattr__(self, "_projector", get_path(hf_model, adapter.projector))

    def check_hook_name(self, name: str) -> None:
        """Raise :class:`~videolens.errors.LayerRangeError` for ``vision.blocks.{l}...`` with ``l`` out of range."""
        m = re.match(r"vision\.blocks\.(-?\d+)\.", name)
        if m and not 0 <= int(m.group(1)) < self.n_layers:
            raise LayerRangeError(
                f"Hook {name!r} names vision layer {m.group(1)}; the vision tower has hooked layers "
                f"0..{self.n_layers - 1} (those whose output reaches the features)."
            )

    @contextmanager
    def attached(self) -> Iterator[None]:
        """Register the PyTorch hooks of the active hook points for one HF forward; always remove them."""
        handles: list[RemovableHandle] = []
        saved: dict[int, tuple[Any, str | None]] = {}
        attns = [block.attn for block in self.blocks if block.attn.active]
        try:
            for block in self.blocks:
                handles.extend(block.attach())
            if self.blocks:
                handles.extend(_through_input(self.hook_vision_features, self._features_input))
                handles.extend(_through_output(self.hook_projected, self._projector))
            for attn in attns:
                _ATTACHED[attn.hf_module] = attn
                config = attn.hf_module.config
                saved.setdefault(id(config), (config, config._attn_implementation_internal))
                config._attn_implementation_internal = VISION_ATTN_IMPLEMENTATION
            yield
        finally:
            for handle in handles:
                handle.remove()
            for config, impl in saved.values():
                config._attn_implementation_internal = impl
            for attn in attns:
                _ATTACHED.pop(attn.hf_module, None)


def _through_input(hook: HookPoint, module: nn.Module) -> list[RemovableHandle]:
    """A pre-hook passing the module's first input (positional or ``hidden_states=``) through ``hook``, if hooked."""
    if not is_hooked(hook):
        return []

    def run(called: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (hook(args[0]), *args[1:]), kwargs
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": hook(kwargs["hidden_states"])}
        raise UnsupportedModelError(
            f"{type(called).__name__} was called without a positional input or hidden_states=; "
            f"{hook.name} cannot see its input (the adapter's vision path is wrong)."
        )

    return [module.register_forward_pre_hook(run, with_kwargs=True, prepend=True)]


def _through_output(hook: HookPoint, module: nn.Module) -> list[RemovableHandle]:
    """A forward hook passing the module's output (a tuple's first element) through ``hook``, if hooked.

    Prepended, so that HF's own output recorders (``output_hidden_states``) see the edit.
    """
    if not is_hooked(hook):
        return []

    def run(_module: nn.Module, _args: tuple, output: Any) -> Any:
        if isinstance(output, tuple):
            return (hook(output[0]), *output[1:])
        return hook(output)

    return [module.register_forward_hook(run, prepend=True)]


# ---- the attention function ---------------------------------------------------------------------
def _packed_lengths(cu_seqlens: torch.Tensor | None) -> list[int] | None:
    """Chunk lengths of a packed sequence from its cumulative boundaries (None: not packed)."""
    if cu_seqlens is None:
        return None
    return (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()


def _to_chunks(x: Float[torch.Tensor, "1 head seq d"], lengths: list[int]) -> Float[torch.Tensor, "chunk head len d"]:
    """Split a packed ``(1, head, seq, d)`` tensor into its chunks, padded with zeros to the longest."""
    if len(set(lengths)) == 1:
        return x[0].unflatten(1, (len(lengths), lengths[0])).transpose(0, 1)
    parts = [part.transpose(0, 1) for part in torch.split(x[0], lengths, dim=1)]  # (len_i, head, d)
    return pad_sequence(parts, batch_first=True).transpose(1, 2)


def _from_chunks(z: Float[torch.Tensor, "chunk len head d"], lengths: list[int]) -> Float[torch.Tensor, "1 seq head d"]:
    """The packed ``(1, seq, head, d)`` layout HF's single-call branch expects, padding dropped."""
    if len(set(lengths)) == 1:
        return z.flatten(0, 1)[None]
    return torch.cat([z[i, :n] for i, n in enumerate(lengths)])[None]


def _valid_keys(lengths: list[int], device: torch.device) -> Bool[torch.Tensor, "chunk 1 1 k_pos"] | None:
    """True at each chunk's real keys (None when no chunk is padded)."""
    if len(set(lengths)) == 1:
        return None
    n = torch.tensor(lengths, device=device)
    return (torch.arange(max(lengths), device=device)[None] < n[:, None])[:, None, None, :]


def vision_attention(
    module: nn.Module,
    query: Float[torch.Tensor, "batch head q_pos d_head"],
    key: Float[torch.Tensor, "batch kv_head k_pos d_head"],
    value: Float[torch.Tensor, "batch kv_head k_pos d_head"],
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Float[torch.Tensor, "batch q_pos head d_head"], Float[torch.Tensor, "chunk head q_pos k_pos"]]:
    """HF's eager vision attention with ``attn.hook_attn_scores``, ``hook_pattern`` and ``hook_z`` in the middle.

    A packed sequence (``cu_seq_lens_q``, ``batch`` 1) is split into its chunks first and
    joined again after; a layer with no active hook (or another tower sharing the config)
    gets plain eager attention.
    """
    hooks = _ATTACHED.get(module, _UNHOOKED)
    lengths = _packed_lengths(kwargs.get("cu_seq_lens_q"))
    valid = None
    if lengths is not None:
        query, key, value = (_to_chunks(x, lengths) for x in (query, key, value))
        valid = _valid_keys(lengths, query.device)
    n_rep = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(n_rep, dim=1), value.repeat_interleave(n_rep, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    if valid is not None:
        scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
    scores = hooks.hook_attn_scores(scores)
    pattern = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    pattern = F.dropout(pattern, p=dropout, training=module.training)
    pattern = hooks.hook_pattern(pattern)
    z = hooks.hook_z(torch.matmul(pattern, value).transpose(1, 2).contiguous())
    return (_from_chunks(z, lengths) if lengths is not None else z), pattern


def register() -> None:
    """Register :func:`vision_attention` (and eager's mask function) with transformers, once."""
    for interface, function in ((AttentionInterface, vision_attention), (AttentionMaskInterface, eager_mask)):
        if VISION_ATTN_IMPLEMENTATION not in interface._global_mapping:
            interface.register(VISION_ATTN_IMPLEMENTATION, function)


register()
