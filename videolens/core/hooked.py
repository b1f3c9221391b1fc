"""HookedVideoLLM: a TransformerLens-style view of an unmodified Hugging Face VideoLLM.

The HF model is wrapped, not re-implemented. Its language-model layers are arranged
into a hooked tree (``blocks[l].attn``, ``blocks[l].ln1``, ``blocks[l].mlp``, ...) that
holds only hook points and references to the HF modules, so weights are shared. The
model's own code computes everything: the vision tower, the splicing of video features,
M-RoPE positions (captured from the HF forward just before its language model runs),
each layer's norms, projections, rotary embedding and MLP. videolens drives the loop
over decoder layers itself (so it can start or stop at any layer and reuse keys and
values) and decides how each layer attends (:mod:`videolens.core.attention`).

Hook names (per language-model layer ``l``; docs/hooks.md has every shape)::

    hook_text_embed, hook_video_embeds, hook_embed,
    blocks.{l}.hook_resid_pre, blocks.{l}.ln1.hook_scale, blocks.{l}.ln1.hook_normalized,
    blocks.{l}.attn.hook_q / hook_k (before rotary), hook_v, hook_rot_q / hook_rot_k (after),
    blocks.{l}.attn.hook_attn_scores, hook_pattern, hook_z, hook_result (on demand),
    blocks.{l}.hook_attn_out, blocks.{l}.hook_resid_mid, blocks.{l}.ln2.hook_scale / hook_normalized,
    blocks.{l}.mlp.hook_pre / hook_pre_linear / hook_post, blocks.{l}.hook_mlp_out,
    blocks.{l}.hook_resid_post, ln_final.hook_scale, ln_final.hook_normalized

Norms follow TransformerLens' ``fold_ln`` convention (see :mod:`videolens.core.blocks`).
The vision tower and projector have their own points under ``vision.`` (``vision.blocks.{l}.…``,
``vision.hook_vision_features``, ``vision.hook_projected``; :mod:`videolens.core.vision`).

``blocks.{l}.hook_resid_post`` is the block's output (HF's ``hidden_states[l + 1]``) and
``blocks.{l+1}.hook_resid_pre`` the input of the next block. They are equal except in
families whose language model changes the stream between layers (Qwen3-VL's DeepStack
adds visual features at the video positions after the first few layers; see
``VideoLLMAdapter.after_layer``): there ``hook_resid_pre`` includes the addition.

Axis glossary: ``batch``, ``pos`` (sequence position), ``head``, ``kv_head``,
``d_model``, ``d_head``, ``d_vocab``, ``q_pos``/``k_pos`` (query/key position).

Pitfalls: hooks are global state on the hook points; use :meth:`run_with_hooks`,
:meth:`run_with_cache` or ``with model.hooks(...)``, which always remove them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import transformers
from jaxtyping import Float, Int
from torch import nn
from transformer_lens import ActivationCache, HookedRootModule
from transformer_lens.hook_points import HookPoint

from videolens.adapters.protocol import VideoLLMAdapter, adapter_for, get_path
from videolens.core import attention as _attention
from videolens.core.attention import ATTN_IMPLEMENTATION, KVStore, LayerCall
from videolens.core.blocks import CircuitViews, Embed, HookedBlock, LayerStack, NormHooks, Unembed
from videolens.core.compiled_attention import use_compiled_attention
from videolens.core.config import VideoLLMConfig
from videolens.core.layout import TokenLayout
from videolens.core.placement import devices_of, execution_device, is_dispatched, main_device, to_device
from videolens.core.prompt import PromptBatch, VideoPrompt, build_prompt, collate
from videolens.core.vision import VisionHooks
from videolens.errors import InputError, LayerRangeError, LayoutError, UnsupportedModelError, VideoLensError
from videolens.interventions.knockout import EdgeKnockout, attendable_keys, blocked_masks, check_interventions

PromptLike = VideoPrompt | Sequence[VideoPrompt] | PromptBatch


class _Captured(Exception):
    """Raised inside the HF forward once the language model's inputs are known."""


@dataclass
class Prefill:
    """What :meth:`HookedVideoLLM.prefill` returns.

    Attributes:
        resid: the residual stream entering layer ``stop``.
        position_ids: the prompt's position ids (to continue the sequence in generation).
        position_embeddings: rotary ``(cos, sin)`` of the prompt, for :meth:`~HookedVideoLLM.run_layers`.
        blocked: per-layer blocked masks of the interventions (generation inherits them).
        extra: the language model's extra inputs (``LMInputs.extra``; e.g. DeepStack features).
    """

    resid: Float[torch.Tensor, "batch pos d_model"]
    position_ids: torch.Tensor
    position_embeddings: tuple[torch.Tensor, torch.Tensor]
    blocked: dict[int, torch.Tensor]
    extra: dict[str, Any]


@dataclass
class LMInputs:
    """What the HF model hands its language model: embeddings, positions, extra kwargs."""

    inputs_embeds: Float[torch.Tensor, "batch pos d_model"]
    position_ids: torch.Tensor | None
    extra: dict[str, Any]


# Hooks whose prompt-position axis is third from last (a head axis follows it).
_PER_HEAD_HOOKS = ("hook_q", "hook_k", "hook_v", "hook_z", "hook_result", "hook_rot_q", "hook_rot_k")


def _position_sliced(save: Callable, name: str, positions: Any) -> Callable:
    """``save`` (a caching hook) given only ``positions`` of the prompt, on ``name``'s position axis.

    TransformerLens slices every hook but its per-head ones on the second-from-last axis; here
    the rotated queries and keys are per head too, and hooks without prompt positions (the
    vision tower's, the projected video features) are cached whole.
    """
    if name.startswith("vision.") or name == "hook_video_embeds":
        return save
    axis = -3 if name.endswith(_PER_HEAD_HOOKS) else -2

    def sliced(tensor: torch.Tensor, hook: HookPoint) -> None:
        return save(positions.apply(tensor, dim=axis) if tensor.dim() >= -axis else tensor, hook)

    return sliced


def _cross_entropy(
    logits: Float[torch.Tensor, "batch pos d_vocab"],
    ids: Int[torch.Tensor, "batch pos"],
    scored: torch.Tensor,
    per_token: bool,
) -> torch.Tensor:
    """Next-token cross-entropy at the ``scored`` positions: per position (0 elsewhere) or their mean."""
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none")
    losses = losses * scored
    return losses if per_token else losses.sum() / scored.sum().clamp(min=1)


def _prepends_bos(processor: Any) -> bool:
    """Whether the tokenizer puts a BOS token before text (Llama yes, Qwen no)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    try:
        return tokenizer("a")["input_ids"][:1] == [bos]
    except Exception:  # a processor without a callable tokenizer: assume the common case
        return True


def _as_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "half": "float16"}.get(dtype, dtype)
    value = getattr(torch, str(name), None)
    if not isinstance(value, torch.dtype):
        raise VideoLensError(f"Unknown dtype {dtype!r}; use 'float32', 'bfloat16' or 'float16'.")
    return value


class HookedVideoLLM(HookedRootModule, CircuitViews):
    """A Hugging Face VideoLLM with TransformerLens hooks, token layouts and interventions.

    Create it with :meth:`from_pretrained` (a hub id or a local folder) or :meth:`from_hf`
    (a model and processor you loaded). With no hooks and no interventions its logits
    equal the HF model's own.

    Example:
        >>> model = HookedVideoLLM.from_pretrained("llava-hf/LLaVA-NeXT-Video-7B-hf", dtype="bfloat16")  # doctest: +SKIP
        >>> prompt = model.prepare(load_video("clip.mp4"), "What happened first?", options=["A cat ran.", "A dog sat."])  # doctest: +SKIP
        >>> logits, cache = model.run_with_cache(prompt, names_filter=lambda n: n.endswith("hook_pattern"))  # doctest: +SKIP
    """

    def __init__(self, hf_model: nn.Module, processor: Any, adapter: VideoLLMAdapter | None = None) -> None:
        super().__init__()
        _attention.register()
        object.__setattr__(self, "hf_model", hf_model)
        object.__setattr__(self, "processor", processor)
        object.__setattr__(self, "adapter", adapter or adapter_for(hf_model))
        a = self.adapter
        lm = get_path(hf_model, a.language_model)
        object.__setattr__(self, "language_model", lm)
        object.__setattr__(self, "lm_head", get_path(hf_model, a.lm_head))
        layers = getattr(lm, a.layers)
        tc = a.text_config(hf_model.config)
        n_heads = tc.num_attention_heads
        n_kv = getattr(tc, "num_key_value_heads", None) or n_heads
        d_head = getattr(tc, "head_dim", None) or tc.hidden_size // n_heads
        param = next(hf_model.parameters())
        self.cfg = VideoLLMConfig(
            n_layers=len(layers),
            n_heads=n_heads,
            n_kv_heads=n_kv,
            d_model=tc.hidden_size,
            d_head=d_head,
            d_vocab=self.lm_head.weight.shape[0],
            family=a.family,
            architecture=type(hf_model).__name__,
            dtype=param.dtype,
            device=main_device(hf_model),  # a dispatched model's first computing device (inputs go there)
            video_token_id=a.video_token_id(hf_model.config),
            d_mlp=getattr(tc, "intermediate_size", 0),
            act_fn=str(getattr(tc, "hidden_act", "silu")),
            n_ctx=int(getattr(tc, "max_position_embeddings", 0) or 0),
            model_name=str(getattr(hf_model.config, "_name_or_path", "") or type(hf_model).__name__),
            eps=float(getattr(tc, "rms_norm_eps", 1e-6)),
            original_architecture=type(hf_model).__name__,
            tokenizer_prepends_bos=_prepends_bos(processor),
            default_prepend_bos=_prepends_bos(processor),
        )
        self.hook_text_embed = HookPoint()  # (batch, pos, d_model) token embeddings, before video splicing
        self.hook_video_embeds = HookPoint()  # (batch, video_pos, d_model) projected video features
        self.hook_embed = HookPoint()  # (batch, pos, d_model) the spliced sequence: what enters layer 0
        self.embed = Embed(getattr(lm, a.embed_tokens))
        self.blocks = nn.ModuleList(HookedBlock(layer, a, n_heads, n_kv, d_head) for layer in layers)
        self.ln_final = NormHooks(getattr(lm, a.final_norm))
        self.unembed = Unembed(self.lm_head, self.ln_final)
        self.vision = VisionHooks(hf_model, a)  # vision.* hooks on the tower and the projector
        object.__setattr__(self, "_drive_depth", 0)
        object.__setattr__(self, "_dispatched", is_dispatched(hf_model))  # for run_with_cache, asked per call
        self.setup()
        self.train(hf_model.training)

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_hf(cls, hf_model: nn.Module, processor: Any) -> HookedVideoLLM:
        """Wrap an HF VideoLLM and its processor that you already loaded."""
        return cls(hf_model, processor)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        device_map: str | dict[str, Any] | None = None,
        attn_implementation: str = "sdpa",
        **hf_kwargs: Any,
    ) -> HookedVideoLLM:
        """Load a VideoLLM from the hub or a local folder through Hugging Face's own loaders.

        Args:
            name_or_path: a hub id (``"llava-hf/LLaVA-NeXT-Video-7B-hf"``), a folder written by
                :meth:`save_pretrained`, or the name of a model shipped with videolens.
            dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or a torch dtype.
            device: where to put the model (``"cuda"``, ``"cpu"``).
            device_map: accelerate's placement, passed to HF's loader: ``"auto"`` spreads a model
                too big for one GPU over every visible GPU (then CPU and disk), or a dict
                from module names to devices. Hooks, caches, knockouts, generation and the
                sweep engine run across the devices; give either ``device`` or ``device_map``.
            attn_implementation: HF's implementation for the *vision* tower and for plain HF
                calls; videolens uses its own for the language model during its calls.
        """
        from videolens.models import resolve_model_name

        if device is not None and device_map is not None:
            raise InputError(
                f"device={device!r} and device_map={device_map!r} both say where the model goes; "
                "give one (device_map='auto' spreads it over every visible GPU)."
            )
        if device_map is not None:
            hf_kwargs["device_map"] = device_map
        source = resolve_model_name(str(name_or_path))
        config = transformers.AutoConfig.from_pretrained(source, **hf_kwargs)
        arch = (getattr(config, "architectures", None) or [type(config).__name__])[0]
        adapter = adapter_for(arch)
        model_cls = adapter.model_class(arch)
        hf_model = model_cls.from_pretrained(
            source, dtype=_as_dtype(dtype) or torch.float32, attn_implementation=attn_implementation, **hf_kwargs
        )
        hf_model.eval()
        if device is not None:
            hf_model.to(device)
        processor = adapter.load_processor(source, **hf_kwargs)
        return cls(hf_model, processor, adapter)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Save the HF model and processor so that :meth:`from_pretrained` loads them offline.

        transformers leaves some of the tokenizer's behaviour flags out of the saved
        ``tokenizer_config.json`` (``legacy`` among them: a reloaded Llama tokenizer then loses
        the space SentencePiece puts after ``<video>``, and the input ids change). Every flag
        the reloaded tokenizer would get wrong is written back, so that the folder tokenizes
        exactly as this model does.
        """
        import json

        folder = Path(folder)
        self.hf_model.save_pretrained(folder)
        self.processor.save_pretrained(folder)
        config_file = folder / "tokenizer_config.json"
        if not config_file.is_file():
            return folder
        flags = ("legacy", "add_prefix_space", "add_bos_token", "add_eos_token", "split_special_tokens")
        live, reloaded = self.tokenizer, transformers.AutoTokenizer.from_pretrained(folder)
        kept = [f for f in flags if hasattr(live, f)]
        lost = {f: getattr(live, f) for f in kept if getattr(reloaded, f, None) != getattr(live, f)}
        if lost:
            saved = json.loads(config_file.read_text(encoding="utf-8"))
            config_file.write_text(json.dumps({**saved, **lost}, indent=2, ensure_ascii=False), encoding="utf-8")
        return folder

    def train(self, mode: bool = True) -> HookedVideoLLM:
        """Set training mode on the wrapper and on the HF model together (both start as HF's)."""
        super().train(mode)
        if hasattr(self, "hf_model"):
            self.hf_model.train(mode)
        return self

    def to(self, *args: Any, **kwargs: Any) -> HookedVideoLLM:
        if is_dispatched(self.hf_model):  # asked of the HF model itself: .to() is no hot path
            raise InputError(
                "This model was placed by accelerate (device_map); moving it with .to() would break "
                "that placement. Load it again with the device or device_map you want."
            )
        self.hf_model.to(*args, **kwargs)  # HF's own .to (it refuses what a quantized model cannot do)
        self._sync_placement()
        return self  # the hook tree holds no tensors: nothing of its own to move

    def _sync_placement(self) -> None:
        param = next(self.hf_model.parameters())
        self.cfg.device, self.cfg.dtype = param.device, param.dtype

    # ---- nn.Module's parameter API: the HF model's weights (the hook tree holds none of its own) ----
    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """The HF model's parameters under HF's names, so ``parameters()``, ``zero_grad()`` and
        ``requires_grad_()`` act on the weights, as on a TransformerLens model."""
        return self.hf_model.named_parameters(prefix, recurse, remove_duplicate)

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        return self.hf_model.named_buffers(prefix, recurse, remove_duplicate)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The HF model's state dict (HF's names: it loads back into the HF model or this one)."""
        return self.hf_model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.hf_model.load_state_dict(state_dict, strict=strict, assign=assign)

    def _apply(self, fn: Callable, recurse: bool = True) -> HookedVideoLLM:
        """``.half()``, ``.double()``, ``.bfloat16()``, ``.cuda()``, ``.cpu()`` ... on the HF model's weights."""
        if is_dispatched(self.hf_model):
            raise InputError(
                "This model was placed by accelerate (device_map); converting or moving it would break "
                "that placement. Load it again with the dtype and device you want."
            )
        if getattr(self.hf_model, "hf_quantizer", None) is not None:
            raise InputError(
                "This model is quantized; its weights cannot be cast. Load it again with the dtype you want "
                "(move it with .to(device))."
            )
        self.hf_model._apply(fn, recurse)
        self._sync_placement()
        return super()._apply(fn, recurse)

    @property
    def devices(self) -> list[torch.device]:
        """Every device the model computes on (several with ``device_map``), main device first."""
        found = devices_of(self.hf_model)
        return [self.cfg.device] + sorted((d for d in found if d != self.cfg.device), key=str)

    @property
    def output_device(self) -> torch.device:
        """Where logits come out: the unembedding's device."""
        return execution_device(self.lm_head) or self.cfg.device

    def setup(self) -> None:
        """Index hook points of videolens' own tree only (the HF modules are left untouched)."""
        self.mod_dict, self.hook_dict = {}, {}
        for name, module in self.named_modules():
            if name:
                module.name = name
                self.mod_dict[name] = module
                if isinstance(module, HookPoint):
                    self.hook_dict[name] = module

    # ---- tokens and prompts -------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def to_tokens(self, text: str | Sequence[str], prepend_bos: bool = True) -> Int[torch.Tensor, "batch pos"]:
        """Token ids of plain text (``(1, pos)`` for a string), with the tokenizer's BOS unless ``prepend_bos=False``."""
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InputError("to_tokens takes a string or a list of strings.")
        enc = self.tokenizer(texts, add_special_tokens=prepend_bos, padding=True, return_tensors="pt")
        return enc["input_ids"].to(self.cfg.device)

    def to_string(self, tokens: torch.Tensor | Sequence[int]) -> str | list[str]:
        """Text of token ids: one string for a 1D sequence, a list for a batch."""
        ids = torch.as_tensor(tokens)
        if ids.ndim == 1:
            return self.tokenizer.decode(ids.tolist())
        return self.tokenizer.batch_decode(ids.tolist())

    def to_single_token(self, text: str) -> int:
        """The id of a string that is exactly one token (no BOS); refuse strings of several tokens."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            pieces = self.tokenizer.convert_ids_to_tokens(ids)
            raise InputError(f"{text!r} is {len(ids)} tokens here ({pieces}), not one; pass a single token's text.")
        return int(ids[0])

    def to_str_tokens(self, prompt: VideoPrompt | str, prepend_bos: bool = True) -> list[str]:
        """Each token as a string; a prompt's video tokens are labelled by frame and patch.

        A patch token of temporal unit ``t`` at grid row ``r``, column ``c`` reads
        ``"<f3 r2 c5>"``; a unit's prefix token (Video-LLaVA's CLS) ``"<f3 prefix0>"``; a video
        token of no frame (LLaVA-OneVision's newline) ``"<video_extra>"``. Plain text gives
        its tokens (with BOS unless ``prepend_bos=False``).
        """
        if isinstance(prompt, str):
            return [self.tokenizer.decode([i]) for i in self.to_tokens(prompt, prepend_bos)[0].tolist()]
        if not isinstance(prompt, VideoPrompt):
            raise InputError(f"to_str_tokens takes a VideoPrompt or a string; got {type(prompt).__name__}.")
        out = [self.tokenizer.decode([i]) for i in prompt.input_ids[0].tolist()]
        layout = prompt.layout
        for pos in layout["video_extra"].tolist():
            out[pos] = "<video_extra>"
        for t, unit in enumerate(layout.frames):
            for i, pos in enumerate(unit.prefix.tolist()):
                out[pos] = f"<f{t} prefix{i}>"
            for (r, c), pos in np.ndenumerate(unit.grid):
                out[int(pos)] = f"<f{t} r{r} c{c}>"
        return out

    def prepare(
        self,
        video: object,
        question: str,
        options: Sequence[str] | None = None,
        answer_prefix: str | None = None,
        system: str | None = None,
        *,
        answer: int | str | None = None,
        instruction: str | None = None,
        fps: float | None = None,
        chat_template: str | None = None,
        prompt_format: str = "chat",
        option_style: str = "(A)",
    ) -> VideoPrompt:
        """Build a prompt in the paper's multiple-choice format and its token layout.

        Args:
            video: a :class:`~videolens.Video` (from :func:`~videolens.load_video`), a
                ``(T, H, W, 3)`` uint8 array or tensor, or a list of PIL images.
            question: the question text.
            options: the answer options, shown as ``(A) ...`` lines (``option_style="A."``: ``A. ...``).
            answer_prefix: text the assistant turn starts with, e.g. ``"Best option:("``.
            system: the system prompt (``videolens.core.prompt.PAPER_SYSTEM`` is the paper's).
            answer: the true option (index, letter or text); enables ``true_option`` groups.
            instruction: text after the options (default with options: "Only give the best option.").
            fps: the frames' sampling rate, for families whose positions use time (bare frames;
                a :class:`~videolens.Video`'s own timestamps are what time-aware families are told).
            chat_template: a Jinja chat template to use instead of the processor's own (templates
                without a system role get the system text folded into the user turn; string-only
                ones get the video placeholder inside the string).
            prompt_format: ``"chat"`` (the model's chat template) or ``"paper"``: the paper's exact
                conversation string, ``"{system}\n USER: <video>\n USER: Question: ... ASSISTANT:Best option:("``,
                for the families it evaluated (LLaVA-NeXT-Video, PLLaVA); system text, instruction and
                answer prefix then default to the paper's.
            option_style: ``"(A)"`` (the paper's) or ``"A."`` (the paper's Video-MME prompts).
        """
        return build_prompt(
            self.processor,
            self.adapter,
            self.hf_model.config,
            video,
            question,
            options,
            answer=answer,
            answer_prefix=answer_prefix,
            system=system,
            instruction=instruction,
            fps=fps,
            chat_template=chat_template,
            prompt_format=prompt_format,
            option_style=option_style,
            made_for=self._signature(),
        )

    def batch(self, prompts: PromptLike) -> PromptBatch:
        """Collate one prompt or several into a left-padded batch."""
        if isinstance(prompts, PromptBatch):
            return prompts
        if isinstance(prompts, VideoPrompt):
            prompts = [prompts]
        if not isinstance(prompts, (Sequence, tuple)) or isinstance(prompts, str):
            raise InputError(
                f"Got {type(prompts).__name__} where a prompt belongs; pass a VideoPrompt from "
                "model.prepare(video, question, ...) or a list of them."
            )
        prompts = list(prompts)
        if not prompts or not all(isinstance(p, VideoPrompt) for p in prompts):
            raise InputError("Pass a VideoPrompt from model.prepare(...) or a non-empty list of them.")
        for p in prompts:
            self._check_prompt_is_ours(p)
        pad = self.tokenizer.pad_token_id
        return collate(prompts, 0 if pad is None else int(pad), self.adapter.token_input_keys)

    def _signature(self) -> tuple[str, int, int]:
        """What a prompt must have been prepared for: architecture, video token id, vocabulary size."""
        return (self.cfg.architecture, self.cfg.video_token_id, len(self.tokenizer))

    def _check_prompt_is_ours(self, prompt: VideoPrompt) -> None:
        """Refuse a prompt prepared by another model (its token ids would mean other things here)."""
        made_for = prompt.made_for
        if made_for is not None and tuple(made_for) != self._signature():
            raise InputError(
                f"This prompt was prepared by another model ({made_for[0]}, video token {made_for[1]}, "
                f"vocabulary {made_for[2]}); this model is {self.cfg.architecture} with video token "
                f"{self.cfg.video_token_id} and vocabulary {len(self.tokenizer)}. Prepare it with this model's prepare()."
            )
        top = int(prompt.input_ids.max()) if prompt.input_ids.numel() else -1
        if top >= self.cfg.d_vocab:
            raise InputError(
                f"The prompt holds token id {top}, outside this model's vocabulary of {self.cfg.d_vocab}; "
                "it was made for another tokenizer. Prepare it with this model's prepare()."
            )

    # ---- running ----------------------------------------------------------------------------------
    @contextmanager
    def driving(self) -> Iterator[None]:
        """Switch the language model to videolens attention and MLP hooks for a block of calls.

        Every forward, generation and sweep runs inside it; it nests, and it always
        restores HF's own attention implementation on exit (also after an exception), so
        the HF model called directly gives HF's own results.
        """
        if self._drive_depth:
            object.__setattr__(self, "_drive_depth", self._drive_depth + 1)
            try:
                yield
            finally:
                object.__setattr__(self, "_drive_depth", self._drive_depth - 1)
            return
        configs = {id(b.attn.hf_module.config): b.attn.hf_module.config for b in self.blocks}
        saved = {key: cfg._attn_implementation_internal for key, cfg in configs.items()}
        try:
            object.__setattr__(self, "_drive_depth", 1)
            for cfg in configs.values():
                cfg._attn_implementation_internal = ATTN_IMPLEMENTATION
            yield
        finally:
            for key, cfg in configs.items():
                cfg._attn_implementation_internal = saved[key]
            object.__setattr__(self, "_drive_depth", 0)

    def hf_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Processor outputs ready for the HF model: on its device, pixels in its dtype."""
        out = {k: (v.to(self.cfg.device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
        for key in self.adapter.pixel_input_keys:
            if isinstance(out.get(key), torch.Tensor) and out[key].is_floating_point():
                out[key] = out[key].to(self.cfg.dtype)
        return out

    def lm_inputs(self, batch: PromptBatch) -> LMInputs:
        """Run the HF model up to its language model and capture what it would receive."""
        captured: dict[str, Any] = {}

        def grab(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            captured.update(kwargs)
            raise _Captured

        handle = self.language_model.register_forward_pre_hook(grab, with_kwargs=True)
        inputs = self.hf_inputs(batch.inputs)
        try:
            with self.vision.attached():  # PyTorch hooks for the active vision.* hook points only
                self.hf_model(**inputs, use_cache=False)
        except _Captured:
            pass
        finally:
            handle.remove()
        if "inputs_embeds" not in captured:
            raise UnsupportedModelError("The HF forward never reached its language model; the adapter's path is wrong.")
        embeds = captured.pop("inputs_embeds")
        position_ids = captured.pop("position_ids", None)
        for key in ("attention_mask", "past_key_values", "use_cache", "input_ids", "return_dict", "cache_position"):
            captured.pop(key, None)
        return LMInputs(embeds, position_ids, captured)

    def _embed(self, batch: PromptBatch, lm_in: LMInputs) -> Float[torch.Tensor, "batch pos d_model"]:
        input_ids = batch.inputs["input_ids"].to(self.cfg.device)
        text = self.hook_text_embed(self.embed(input_ids))
        video_mask = (input_ids == self.cfg.video_token_id).to(text.device)
        counts = video_mask.sum(1)
        if not (counts == counts[0]).all():
            raise LayoutError("Prompts in one batch must have the same number of video tokens.")
        video = lm_in.inputs_embeds[video_mask.to(lm_in.inputs_embeds.device)].view(
            input_ids.shape[0], int(counts[0]), -1
        )
        video = self.hook_video_embeds(video)
        return self.hook_embed(text.masked_scatter(video_mask[..., None], video.to(text.device, text.dtype)))

    def _check_layer(self, layer: int | None, name: str, allow_end: bool = True) -> int | None:
        if layer is None:
            return None
        top = self.cfg.n_layers if allow_end else self.cfg.n_layers - 1
        if not -self.cfg.n_layers <= layer <= top:
            raise LayerRangeError(f"{name}={layer} is outside the model, which has layers 0..{self.cfg.n_layers - 1}.")
        return layer % self.cfg.n_layers if layer < 0 else layer

    def _allowed(
        self, batch: PromptBatch, interventions: Sequence[EdgeKnockout] | None
    ) -> tuple[torch.Tensor | None, dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """The base mask (None: plain causal), per-layer allowed masks, and per-layer blocked masks."""
        n, device = batch.seq_len, self.cfg.device
        base = valid = None
        if batch.padded:
            valid = batch.inputs["attention_mask"].to(device).bool()
            base = attendable_keys(torch.ones(n, n, dtype=torch.bool, device=device).tril(), valid)
        blocked: dict[int, torch.Tensor] = {}
        if interventions:
            blocked = blocked_masks(
                interventions, batch.layouts, n, self.cfg.n_layers, self.cfg.n_heads, device, valid=valid
            )
        per_layer: dict[int, torch.Tensor] = {}
        made: dict[int, torch.Tensor] = {}
        if not blocked:
            return base, per_layer, blocked
        causal_base = base if base is not None else torch.ones(n, n, dtype=torch.bool, device=device).tril()[None, None]
        for layer, mask in blocked.items():
            if id(mask) not in made:
                made[id(mask)] = causal_base & ~mask
            per_layer[layer] = made[id(mask)]
        return base, per_layer, blocked

    def run_layers(
        self,
        resid: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        start: int,
        stop: int,
        base: torch.Tensor | None,
        per_layer: dict[int, torch.Tensor],
        past: KVStore | None = None,
        store: KVStore | None = None,
        extra: dict[str, Any] | None = None,
        positions: slice | None = None,
    ) -> torch.Tensor:
        """Run blocks ``start..stop-1``; returns the residual stream entering layer ``stop``.

        After each block the adapter's :meth:`~videolens.adapters.VideoLLMAdapter.after_layer`
        runs (e.g. Qwen3-VL's DeepStack injection), so ``blocks.{l}.hook_resid_post`` is the
        block's own output and ``blocks.{l+1}.hook_resid_pre`` what layer ``l+1`` really
        receives. ``extra`` is ``LMInputs.extra`` of the prompt and ``positions`` the prompt
        positions ``resid`` covers (None: all of them).
        """
        for layer in range(start, stop):
            call = LayerCall(layer, self.blocks[layer].attn, per_layer.get(layer, base), past, store)
            resid = self.blocks[layer](resid, call, position_embeddings)
            resid = self.adapter.after_layer(layer, resid, extra, positions)
        return resid

    def resid_to_logits(
        self, resid: Float[torch.Tensor, "... d_model"], apply_ln: bool = True
    ) -> Float[torch.Tensor, "... d_vocab"]:
        """Logits of residual-stream vectors: the final norm (hooked) and the unembedding.

        With ``apply_ln=False`` the raw stream goes through HF's head alone (no norm, no
        weight), as a logit lens without the final norm reads it.
        """
        if apply_ln:
            return self.unembed(self.ln_final(resid))
        return self.lm_head(resid)

    # ---- TransformerLens' weight conventions -------------------------------------------------------
    @property
    def W_U(self) -> Float[torch.Tensor, "d_model d_vocab"]:
        """The unembedding with the final norm's weight folded in (TransformerLens' ``fold_ln``)."""
        return self.unembed.W_U

    @property
    def b_U(self) -> Float[torch.Tensor, " d_vocab"]:
        return self.unembed.b_U

    @property
    def W_E(self) -> Float[torch.Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    # Model-level weights: each block's weight stacked on a leading ``layer`` axis (TransformerLens).
    W_Q = LayerStack("attn")  # (layer, head, d_model, d_head), ln1's weight folded in
    W_K = LayerStack("attn")  # (layer, head, d_model, d_head), per query head
    W_V = LayerStack("attn")  # (layer, head, d_model, d_head), per query head
    W_O = LayerStack("attn")  # (layer, head, d_head, d_model)
    b_Q = LayerStack("attn")  # (layer, head, d_head)
    b_K = LayerStack("attn")
    b_V = LayerStack("attn")
    b_O = LayerStack("attn")  # (layer, d_model)
    W_in = LayerStack("mlp")  # (layer, d_model, d_mlp), ln2's weight folded in
    W_gate = LayerStack("mlp")
    W_out = LayerStack("mlp")  # (layer, d_mlp, d_model)
    b_in = LayerStack("mlp")  # (layer, d_mlp)
    b_out = LayerStack("mlp")  # (layer, d_model)

    def tokens_to_residual_directions(
        self, tokens: str | int | Sequence[int] | torch.Tensor
    ) -> Float[torch.Tensor, "... d_model"]:
        """The unembedding directions of tokens (``W_U[:, token]``), as TransformerLens."""
        if isinstance(tokens, str):
            tokens = self.to_single_token(tokens)
        weight = self.lm_head.weight  # only the asked rows are folded: W_U itself is (d_model, d_vocab)
        index = torch.as_tensor(tokens, device=weight.device)
        return weight[index] * to_device(self.ln_final.w, weight.device)

    def accumulated_bias(
        self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True
    ) -> Float[torch.Tensor, " d_model"]:
        """Sum of the output biases of attention and MLP before ``layer`` (and its attention if ``mlp_input``)."""
        total = torch.zeros(self.cfg.d_model, dtype=self.cfg.dtype, device=self.cfg.device)
        for i in range(layer):
            total = total + self.blocks[i].attn.b_O
            if include_mlp_biases:
                total = total + self.blocks[i].mlp.b_out
        if mlp_input and layer < self.cfg.n_layers:
            total = total + self.blocks[layer].attn.b_O
        return total

    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Always compute ``attn.hook_result`` (per-head outputs), as TransformerLens' switch."""
        self.cfg.use_attn_result = bool(use_attn_result)
        for block in self.blocks:
            block.attn.use_attn_result = bool(use_attn_result)

    def compile_blocks(self, enabled: bool = True, **options: Any) -> HookedVideoLLM:
        """Run the decoder layers through ``torch.compile`` when no hook is active on them (fused kernels).

        On a GPU, knockout sweeps spend about a third of the eager layer's time outside its
        matrix products: RMSNorm in fp32, rotary embedding, SiLU x up and residual adds, one
        kernel each. Compiled, each layer is one graph with those fused; attention stays
        videolens' own function, one opaque operator in the graph
        (:mod:`videolens.core.compiled_attention`). Compiled layers run only without
        gradients (``torch.no_grad()``, as in the sweep engine and the analyses); a layer
        with any hook point hooked (a cache, a patch), or called with gradients enabled,
        runs eagerly as always. The first call compiles (about 20 s for a 7B model);
        ``options`` go to ``torch.compile`` (default ``dynamic=True``, so other batch sizes
        and lengths reuse the graphs). Results equal the eager layers up to floating-point
        reassociation (fp32: ~1e-6). ``enabled=False`` restores the eager layers. Returns
        the model.

        Example:
            >>> model.compile_blocks()  # doctest: +SKIP
            >>> information_flow(model, samples, "cross-frame")  # doctest: +SKIP
        """
        use_compiled_attention(enabled)
        for block in self.blocks:
            block.compile(enabled, **options)
        return self

    def forward(
        self,
        prompt: PromptLike | str,
        *,
        interventions: Sequence[EdgeKnockout] | EdgeKnockout | None = None,
        start_at_layer: int | None = None,
        stop_at_layer: int | None = None,
        residual: Float[torch.Tensor, "batch pos d_model"] | None = None,
        return_type: Literal["logits", "loss", "both", "resid"] | None = "logits",
        loss_per_token: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None:
        """Run the model on a prompt (or a list of prompts, padded on the left).

        Args:
            prompt: from :meth:`prepare`, a list of them, a :class:`PromptBatch`, or plain text
                (a string: the language model alone, no video).
            interventions: :class:`~videolens.EdgeKnockout` objects to apply.
            start_at_layer: start at this layer, from ``residual`` (its ``hook_resid_pre``).
            stop_at_layer: stop before this layer and return its input residual stream.
            residual: the residual stream to start from, with ``start_at_layer``.
            return_type: ``"logits"`` (default), ``"loss"`` (next-token cross-entropy over the
                text, as TransformerLens), ``"both"`` (logits, loss), ``"resid"`` (the final
                residual stream, before the final norm) or ``None`` (run the hooks only).
            loss_per_token: with ``"loss"``/``"both"``, the loss of every predicted position
                ``(batch, pos - 1)`` (0 where nothing is scored) instead of the mean.

        Returns:
            Logits ``(batch, pos, d_vocab)``; the residual stream when ``stop_at_layer`` is set.
        """
        if return_type not in ("logits", "loss", "both", "resid", None):
            raise InputError(f"return_type={return_type!r}: use 'logits', 'loss', 'both', 'resid' or None.")
        if isinstance(prompt, str):
            if interventions or start_at_layer is not None or stop_at_layer is not None:
                raise InputError(
                    "model(text) runs the language model on plain text; knockouts and start/stop layers need a "
                    "prepared prompt (model.prepare(video, question, ...))."
                )
            return self._text_forward(prompt, return_type, loss_per_token)
        batch = self.batch(prompt)
        interventions = check_interventions(interventions)
        start = self._check_layer(start_at_layer, "start_at_layer", allow_end=False) or 0
        stop = self._check_layer(stop_at_layer, "stop_at_layer")
        stop = self.cfg.n_layers if stop is None else stop
        if stop < start:
            raise LayerRangeError(
                f"stop_at_layer={stop_at_layer} comes before start_at_layer={start_at_layer}; nothing would run. "
                "Pass stop_at_layer >= start_at_layer."
            )
        if (residual is None) != (start_at_layer is None):
            raise VideoLensError(
                "Pass residual= together with start_at_layer= (the residual stream entering that layer)."
            )
        if residual is not None:
            self._check_residual(residual, batch)
        with self.driving():
            resid = self.prefill(batch, interventions, start, stop, residual).resid
        if stop_at_layer is not None:  # TransformerLens: the residual stream entering that layer, even the last
            return resid
        return self._outputs(resid, return_type, lambda logits: self.next_token_loss(logits, batch, loss_per_token))

    def _outputs(self, resid: torch.Tensor, return_type: str | None, loss: Callable[[torch.Tensor], torch.Tensor]):
        """What ``return_type`` asks for, from the final residual stream."""
        if return_type == "resid":
            return resid
        if return_type is None:
            self.ln_final(resid)  # its hooks fire, as in TransformerLens (a cache for logit_attrs needs ln_final's)
            return None
        logits = self.resid_to_logits(resid)
        if return_type == "logits":
            return logits
        value = loss(logits)
        return value if return_type == "loss" else (logits, value)

    def _text_forward(self, text: str, return_type: str | None, loss_per_token: bool) -> Any:
        """The language model alone on plain text (no video), with every language-model hook."""
        ids = self.to_tokens(text)
        with self.driving():
            resid = self.hook_embed(self.hook_text_embed(self.embed(ids)))
            positions = self.adapter.default_position_ids(ids.shape[0], 0, ids.shape[1], self.cfg.device)
            pe = self.adapter.position_embeddings(self.language_model, resid, positions)
            resid = self.run_layers(resid, pe, 0, self.cfg.n_layers, None, {})
        scored = torch.ones_like(ids[:, 1:], dtype=torch.bool)
        return self._outputs(resid, return_type, lambda logits: _cross_entropy(logits, ids, scored, loss_per_token))

    def next_token_loss(
        self, logits: Float[torch.Tensor, "batch pos d_vocab"], prompt: PromptLike, per_token: bool = False
    ) -> torch.Tensor:
        """Cross-entropy of each next text token, as TransformerLens' ``return_type="loss"``.

        Position ``p`` predicts token ``p + 1``. Only text tokens are scored: a video token
        is not something the model predicts, and padding is not there at all. The mean is
        over the scored positions; ``per_token`` gives ``(batch, pos - 1)`` with 0 elsewhere.
        """
        batch = self.batch(prompt)
        ids = batch.inputs["input_ids"].to(logits.device)
        scored = ids[:, 1:] != self.cfg.video_token_id
        if "attention_mask" in batch.inputs:
            valid = batch.inputs["attention_mask"].to(logits.device).bool()
            scored &= valid[:, 1:] & valid[:, :-1]
        return _cross_entropy(logits, ids, scored, per_token)

    def prefill(
        self,
        prompt: PromptLike,
        interventions: Sequence[EdgeKnockout] | None = None,
        start: int = 0,
        stop: int | None = None,
        residual: torch.Tensor | None = None,
        store: KVStore | None = None,
    ) -> Prefill:
        """Run layers ``start..stop-1`` over the whole prompt (call it inside :meth:`driving`).

        The building block of :meth:`forward`, :meth:`generate` and the sweep engine:
        ``stop=0`` returns the embedded prompt (``hook_embed`` and ``hook_video_embeds``
        applied) with its rotary position embeddings and the language model's extra inputs,
        ready for :meth:`run_layers`. ``store`` collects every run layer's keys and values.
        """
        batch = self.batch(prompt)
        stop = self.cfg.n_layers if stop is None else stop
        lm_in = self.lm_inputs(batch)
        base, per_layer, blocked = self._allowed(batch, interventions)
        resid = self._embed(batch, lm_in) if residual is None else residual.to(self.cfg.device)
        pos_ids = self._position_ids(lm_in, batch)
        pe = self.adapter.position_embeddings(self.language_model, resid, pos_ids)
        resid = self.run_layers(resid, pe, start, stop, base, per_layer, None, store, lm_in.extra)
        return Prefill(resid, pos_ids, pe, blocked, lm_in.extra)

    def _check_residual(self, residual: object, batch: PromptBatch) -> None:
        """A residual to start from must be a float tensor (batch, pos, d_model) of this prompt."""
        want = (batch.size, batch.seq_len, self.cfg.d_model)
        if not isinstance(residual, torch.Tensor):
            raise InputError(f"residual must be a tensor of shape {want}; got {type(residual).__name__}.")
        if tuple(residual.shape) != want:
            raise InputError(
                f"residual has shape {tuple(residual.shape)}; this prompt needs {want} (batch, pos, d_model), "
                "e.g. a cached blocks.{l}.hook_resid_pre of the same prompt."
            )
        if not residual.is_floating_point():
            raise InputError(f"residual has dtype {residual.dtype}; pass a floating-point tensor ({self.cfg.dtype}).")

    def _position_ids(self, lm_in: LMInputs, batch: PromptBatch) -> torch.Tensor:
        if lm_in.position_ids is not None:
            return lm_in.position_ids
        return self.adapter.default_position_ids(batch.size, 0, batch.seq_len, self.cfg.device)

    # ---- hooks and caches -------------------------------------------------------------------------
    def _check_hook_names(self, hooks: Sequence[tuple[str | Callable, Callable]]) -> None:
        for name, _ in hooks:
            if not isinstance(name, str) or name in self.hook_dict:
                continue
            self.vision.check_hook_name(name)
            m = re.match(r"blocks\.(-?\d+)\.", name)
            if m and not 0 <= int(m.group(1)) < self.cfg.n_layers:
                raise LayerRangeError(
                    f"Hook {name!r} names layer {m.group(1)}; the model has layers 0..{self.cfg.n_layers - 1}."
                )
            close = difflib.get_close_matches(name, list(self.hook_dict), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else " See docs/hooks.md for the names."
            raise VideoLensError(f"Unknown hook name {name!r}.{hint}")

    def _check_names_filter(self, names_filter: Any) -> None:
        """A names filter given as names must name hooks that exist (a typo would cache nothing)."""
        if names_filter is None or callable(names_filter):
            return
        names = [names_filter] if isinstance(names_filter, str) else list(names_filter)
        if not all(isinstance(n, str) for n in names):
            raise InputError("names_filter must be a hook name, a list of hook names, or a function of the name.")
        self._check_hook_names([(n, None) for n in names])

    def add_hook(self, name, hook, dir="fwd", is_permanent=False, level=None, prepend=False) -> None:  # noqa: A002
        """TransformerLens' ``add_hook``, with a "did you mean" error for a name that does not exist."""
        self._check_hook_names([(name, hook)])
        super().add_hook(name, hook, dir=dir, is_permanent=is_permanent, level=level, prepend=prepend)

    @contextmanager
    def hooks(self, fwd_hooks=(), bwd_hooks=(), reset_hooks_end: bool = True, clear_contexts: bool = False):
        """Temporarily add hooks (removed on exit, also after an exception)."""
        fwd_hooks, bwd_hooks = list(fwd_hooks), list(bwd_hooks)  # once: a generator would be used up by the check
        self._check_hook_names(fwd_hooks + bwd_hooks)
        with super().hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts) as model:
            yield model

    def run_with_hooks(
        self,
        *model_args: Any,
        fwd_hooks=(),
        bwd_hooks=(),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        **model_kwargs: Any,
    ) -> Any:
        """Run :meth:`forward` with temporary hooks ``[(name or filter, fn(tensor, hook))]``."""
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts):
            return self.forward(*model_args, **model_kwargs)

    def run_with_cache(
        self,
        *model_args: Any,
        names_filter: Any = None,
        device: Any = None,
        remove_batch_dim: bool = False,
        incl_bwd: bool = False,
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        pos_slice: Any = None,
        return_cache_object: bool = True,
        **model_kwargs: Any,
    ) -> tuple[Any, ActivationCache | dict[str, torch.Tensor]]:
        """Run :meth:`forward` and cache activations, with TransformerLens' options.

        Args:
            names_filter: a hook name, a list of names, or ``fn(name) -> bool``; default all.
            device: where to keep the cache (``"cpu"`` keeps GPU memory free). A model spread over
                several devices (``device_map``) gathers its cache on its main device by
                default, so the cache's stacking tools (``accumulated_resid`` ...) work.
            remove_batch_dim: drop the batch axis (batch of one only).
            incl_bwd: also cache gradients (``name + "_grad"``): the output must be a scalar
                to call ``backward()`` on, e.g. ``return_type="loss"``.
            pos_slice: keep only these prompt positions (TransformerLens' ``Slice`` input), on the
                position axis of each hook (``hook_q``/``hook_k``/``hook_v``/``hook_z``/``hook_result``
                and ``hook_rot_q``/``hook_rot_k``: third from last; patterns and scores: the query
                axis). The vision hooks and ``hook_video_embeds`` have no prompt-position axis and
                are kept whole.
            return_cache_object: an :class:`ActivationCache` (default) or a plain dict.
        """
        self._check_names_filter(names_filter)
        if incl_bwd and model_kwargs.get("return_type", "logits") != "loss":
            raise InputError(
                "incl_bwd=True calls backward() on the output, which needs a scalar: pass return_type='loss' "
                "(or run your own backward inside run_with_hooks)."
            )
        from transformer_lens.utilities import Slice

        if device is None and self._dispatched and len(self.devices) > 1:
            device = self.cfg.device
        cache_dict, fwd, bwd = self.get_caching_hooks(names_filter, incl_bwd, device, remove_batch_dim=remove_batch_dim)
        if pos_slice is not None:
            positions = Slice.unwrap(pos_slice)  # an int keeps its axis, as in TransformerLens
            fwd, bwd = (
                [(name, _position_sliced(save, name, positions)) for name, save in hooks] for hooks in (fwd, bwd)
            )
        with self.hooks(fwd_hooks=fwd, bwd_hooks=bwd, reset_hooks_end=reset_hooks_end, clear_contexts=clear_contexts):
            out = self.forward(*model_args, **model_kwargs)
            if incl_bwd:
                out.backward()
        if not return_cache_object:
            return out, cache_dict
        return out, ActivationCache(cache_dict, self, has_batch_dim=not remove_batch_dim)

    # ---- generation -----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompt: PromptLike,
        max_new_tokens: int = 20,
        *,
        interventions: Sequence[EdgeKnockout] | EdgeKnockout | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        stop_at_eos: bool = True,
        seed: int | None = None,
        return_type: Literal["str", "tokens"] = "str",
    ) -> list[str] | str | Int[torch.Tensor, "batch new_pos"]:
        """Generate a continuation with hooks and interventions active at every step.

        Knockouts apply to the prompt as in :meth:`forward`. Each generated token inherits
        the blocked edges of the prompt's last position (it may not attend what ``last``
        may not attend) and attends freely to earlier generated tokens: the reference
        implementation's rule.
        """
        batch = self.batch(prompt)
        interventions = check_interventions(interventions)
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
            raise InputError(f"max_new_tokens={max_new_tokens!r}: pass a whole number of tokens, at least 1.")
        if top_k is not None and not 1 <= int(top_k) <= self.cfg.d_vocab:
            raise InputError(f"top_k={top_k} is outside 1..{self.cfg.d_vocab} (the vocabulary size).")
        if return_type not in ("str", "tokens"):
            raise InputError(f"return_type={return_type!r}: use 'str' or 'tokens'.")
        generator = torch.Generator(device=self.output_device).manual_seed(seed) if seed is not None else None
        eos_ids = self.eos_token_ids()
        eos = torch.tensor(eos_ids, dtype=torch.long, device=self.cfg.device)
        pad_id = self.tokenizer.pad_token_id
        fill = int(pad_id) if pad_id is not None else (eos_ids[0] if eos_ids else 0)
        n, device, bsz = batch.seq_len, self.cfg.device, batch.size
        with self.driving():
            store = KVStore.empty()
            run = self.prefill(batch, interventions, store=store)
            resid, pos_ids, blocked, extra = run.resid, run.position_ids, run.blocked, run.extra
            logits = self.resid_to_logits(resid[:, -1:])
            valid = batch.inputs.get("attention_mask", torch.ones(bsz, n, dtype=torch.long)).to(device).bool()
            last_rows = torch.tensor([int(layout["last"][0]) for layout in batch.layouts], device=device)
            inherited = {layer: ~m[torch.arange(bsz, device=device), :, last_rows] for layer, m in blocked.items()}
            done = torch.zeros(bsz, dtype=torch.bool, device=device)
            out: list[torch.Tensor] = []
            for step in range(max_new_tokens):
                token = self._pick(logits[:, -1], do_sample, temperature, top_k, generator).to(device)
                if eos_ids:
                    token = torch.where(done, torch.full_like(token, fill), token)
                    done |= torch.isin(token, eos)
                out.append(token)
                if (stop_at_eos and eos_ids and bool(done.all())) or step == max_new_tokens - 1:
                    break
                valid = torch.cat([valid, torch.ones(bsz, 1, dtype=torch.bool, device=device)], dim=1)
                k_len = valid.shape[1]
                row = valid[:, None, None, :]
                step_layers = {}
                for layer, allowed_prompt in inherited.items():
                    extra = torch.ones(bsz, allowed_prompt.shape[1], k_len - n, dtype=torch.bool, device=device)
                    step_layers[layer] = row & torch.cat([allowed_prompt, extra], dim=-1)[:, :, None, :]
                step_base = row if batch.padded else None
                pos_ids = self.adapter.next_position_ids(pos_ids, 1)
                resid = self.hook_embed(self.hook_text_embed(self.embed(token[:, None])))
                pe = self.adapter.position_embeddings(self.language_model, resid, pos_ids)
                at = slice(k_len - 1, k_len)  # a generated token: past the prompt, never visual
                resid = self.run_layers(
                    resid, pe, 0, self.cfg.n_layers, step_base, step_layers, store, store, extra, at
                )
                logits = self.resid_to_logits(resid)
        tokens = torch.stack(out, dim=1)
        if return_type == "tokens":
            return tokens
        texts = self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        return texts[0] if isinstance(prompt, VideoPrompt) else texts

    def eos_token_ids(self) -> list[int]:
        """Every token that ends a turn: the generation config's eos list and the tokenizer's eos.

        Chat models often end a turn on a token other than the tokenizer's eos (Qwen models on
        ``<|im_end|>``); Hugging Face's ``generate`` stops on any id of
        ``generation_config.eos_token_id``, an int or a list, and so does :meth:`generate`.
        """
        ids: list[int] = []
        config = getattr(self.hf_model, "generation_config", None)
        for value in (getattr(config, "eos_token_id", None), self.tokenizer.eos_token_id):
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if item is not None and int(item) not in ids:
                    ids.append(int(item))
        return ids

    @staticmethod
    def _pick(
        logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int | None, generator: Any
    ) -> torch.Tensor:
        if not do_sample:
            return logits.argmax(-1)
        logits = logits.float() / max(temperature, 1e-6)
        if top_k is not None:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]

    def layouts(self, prompt: PromptLike) -> list[TokenLayout]:
        """The (padded) layouts of a prompt or batch."""
        return self.batch(prompt).layouts

    def __repr__(self) -> str:
        c = self.cfg
        return (
            f"HookedVideoLLM({c.architecture}: {c.n_layers} layers, {c.n_heads} heads "
            f"({c.n_kv_heads} kv), d_model={c.d_model}, d_vocab={c.d_vocab}, {c.dtype}, {c.device})"
        )
