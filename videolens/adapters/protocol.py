"""The adapter protocol: what the core needs to know about a VideoLLM family.

An adapter *declares* where a family's modules live and how its video tokens are laid
out; the core (:mod:`videolens.core.hooked`) has no per-family branches. Adapters live in the
top-level ``model_adapters`` package, one module per family, and register themselves
with :func:`register_adapter`. Third-party packages can add adapters through the
``videolens.adapters`` entry-point group (each entry point is imported once).

Module paths are dotted attribute paths relative to the HF model (``HFPath``); hook names
are TransformerLens-style names (``HookName``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from videolens.errors import LayoutError, UnsupportedModelError

if TYPE_CHECKING:
    import numpy as np
    from jaxtyping import Float

    from videolens.testing.spec import SupportRow, TinySpec

HFPath = str
HookName = str


@dataclass
class VideoStructure:
    """How one video's run of placeholder tokens splits into temporal units.

    Attributes:
        frame_grids: ``(h, w)`` token grid of each temporal unit, in sequence order.
        frame_inputs: the input frames each unit covers.
        trailing: name -> count of extra video tokens after the last unit (e.g. a newline).
        frame_prefix: tokens at the start of every unit, before its grid, that belong to
            the unit but to no patch (e.g. Video-LLaVA's per-frame CLS token). Each unit
            is then ``frame_prefix + h * w`` tokens long.
    """

    frame_grids: list[tuple[int, int]]
    frame_inputs: list[tuple[int, ...]]
    trailing: dict[str, int] = field(default_factory=dict)
    frame_prefix: int = 0

    @property
    def n_tokens(self) -> int:
        units = sum(self.frame_prefix + h * w for h, w in self.frame_grids)
        return units + sum(self.trailing.values())


def square_grids(
    n_tokens: int, n_frames: int, trailing: dict[str, int] | None = None, frame_prefix: int = 0
) -> VideoStructure:
    """Split ``n_tokens`` video tokens into ``n_frames`` equal square grids (plus trailing tokens).

    With ``frame_prefix`` each frame starts with that many non-patch tokens before its grid.
    """
    trailing = trailing or {}
    per_frame, rest = divmod(n_tokens - sum(trailing.values()), n_frames)
    side = math.isqrt(max(per_frame - frame_prefix, 0))
    if rest or frame_prefix + side * side != per_frame:
        prefix = f" after {frame_prefix} prefix token(s) each" if frame_prefix else ""
        raise LayoutError(
            f"{n_tokens} video tokens do not split into {n_frames} square frame grids{prefix} "
            f"(plus {trailing}); the processor and the adapter disagree about the frame layout."
        )
    return VideoStructure([(side, side)] * n_frames, [(t,) for t in range(n_frames)], trailing, frame_prefix)


def get_path(root: nn.Module, path: HFPath) -> Any:
    """Resolve a dotted attribute path (``"model.language_model"``) on a module."""
    obj: Any = root
    for part in path.split("."):
        if not hasattr(obj, part):
            raise UnsupportedModelError(
                f"{type(root).__name__} has no attribute path {path!r} (missing {part!r}); "
                "the adapter does not match this transformers version."
            )
        obj = getattr(obj, part)
    return obj


class VideoLLMAdapter:
    """Base adapter for LLaVA/Qwen-style VideoLLMs with a pre-norm Llama-like decoder.

    Subclasses set the class attributes and override the few methods whose behaviour
    differs; most families need only :meth:`video_structure`.
    """

    #: HF ``config.architectures`` names / model class names this adapter handles.
    architectures: ClassVar[tuple[str, ...]] = ()
    #: Short family name shown in ``model.cfg``.
    family: ClassVar[str] = ""
    #: Config attributes that may hold the video token id, tried in order.
    video_token_attrs: ClassVar[tuple[str, ...]] = ("video_token_id", "video_token_index")
    #: Path of the decoder stack (``.layers``, ``.norm``, ``.rotary_emb``, ``.embed_tokens``).
    language_model: ClassVar[HFPath] = "model.language_model"
    lm_head: ClassVar[HFPath] = "lm_head"
    layers: ClassVar[str] = "layers"
    final_norm: ClassVar[str] = "norm"
    rotary: ClassVar[str] = "rotary_emb"
    embed_tokens: ClassVar[str] = "embed_tokens"
    # Per decoder layer:
    ln1: ClassVar[str] = "input_layernorm"
    attn: ClassVar[str] = "self_attn"
    ln2: ClassVar[str] = "post_attention_layernorm"
    mlp: ClassVar[str] = "mlp"
    #: Submodule of the MLP whose *input* is ``mlp.hook_post`` (None: no such hook).
    mlp_out_proj: ClassVar[str | None] = "down_proj"
    #: The gated MLP's gate projection (its output is ``mlp.hook_pre``) and up projection
    #: (``mlp.hook_pre_linear``): ``down(act(gate(x)) * up(x))``.
    mlp_gate_proj: ClassVar[str | None] = "gate_proj"
    mlp_up_proj: ClassVar[str | None] = "up_proj"
    #: Attention projections (for W_Q/W_K/W_V/W_O views).
    q_proj: ClassVar[str] = "q_proj"
    k_proj: ClassVar[str] = "k_proj"
    v_proj: ClassVar[str] = "v_proj"
    o_proj: ClassVar[str] = "o_proj"
    # The vision side (``vision.`` hooks, ``videolens.core.vision``); defaults are the LLaVA layout.
    #: The tower that encodes the video frames (None: the family exposes no vision hooks).
    vision_tower: ClassVar[HFPath | None] = "model.vision_tower"
    #: The tower's encoder layers (a ``ModuleList``), relative to the tower.
    vision_layers: ClassVar[HFPath] = "encoder.layers"
    #: Per vision layer: its attention module (which calls HF's attention interface) and its MLP.
    vision_attn: ClassVar[HFPath] = "self_attn"
    vision_mlp: ClassVar[HFPath] = "mlp"
    #: The module whose first input is the tower's selected features (``vision.hook_vision_features``).
    vision_features_input: ClassVar[HFPath] = "model.multi_modal_projector"
    #: The module whose output is the projected features (``vision.hook_projected``).
    projector: ClassVar[HFPath] = "model.multi_modal_projector"
    #: Tokens inside the video span that close the unit before them (Qwen3-VL's
    #: ``<|vision_end|>``, InternVL's ``</img>``): ``layout.frames[t].text`` of that unit.
    unit_closing_tokens: ClassVar[tuple[str, ...]] = ()
    #: Video placeholder in a prompt string when the processor has no chat template.
    video_placeholder: ClassVar[str] = "<video>"
    #: Whether the processor turns frame times into positions or text (then fps matters).
    uses_time: ClassVar[bool] = False
    #: The frame rate assumed, with a warning, when neither fps nor timestamps are known.
    default_fps: ClassVar[float] = 1.0
    #: Processor outputs holding pixels: cast to the model's dtype before the vision tower.
    #: (Other float outputs, e.g. frame times, keep their precision.)
    pixel_input_keys: ClassVar[tuple[str, ...]] = ("pixel_values_videos", "pixel_values")
    #: Processor outputs with one entry per token (``(batch, pos)``): left-padded when
    #: prompts are batched. Everything else is per video and concatenated.
    token_input_keys: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask", "token_type_ids")
    #: The family's tiny random model for offline tests and the layout it must give
    #: (``videolens.testing.spec.TinySpec``); None: none. Read from the class's own
    #: attributes, never inherited, by ``videolens.testing.tiny_families``.
    tiny: ClassVar[TinySpec | None] = None
    #: The family's row of the support tables (``videolens.testing.spec.SupportRow``); read
    #: like ``tiny``.
    support: ClassVar[SupportRow | None] = None

    # ---- config ---------------------------------------------------------------------------
    def text_config(self, config: Any) -> Any:
        return getattr(config, "text_config", config)

    def video_token_id(self, config: Any) -> int:
        """The id of the tokens the video features replace: the first of :attr:`video_token_attrs` the config sets."""
        for name in self.video_token_attrs:
            value = getattr(config, name, None)
            if value is not None:
                return int(value)
        raise UnsupportedModelError(
            f"{type(config).__name__} names no video token id (none of {', '.join(self.video_token_attrs)})."
        )

    def placeholder_token_id(self, processor: Any, config: Any) -> int:
        """The token the prompt text carries for the video before the processor expands it."""
        return self.video_token_id(config)

    def vision_layers_used(self, config: Any, n_layers: int) -> int:
        """How many of the tower's ``n_layers`` layers feed the features (the rest run for nothing).

        ``config.vision_feature_layer`` indexes HF's ``hidden_states`` (``n_layers + 1`` of them,
        the embeddings first), an int or a list; -2 (LLaVA) leaves the last layer unused.
        Without it every layer is used.
        """
        selected = getattr(config, "vision_feature_layer", None)
        if selected is None:
            return n_layers
        indices = selected if isinstance(selected, (list, tuple)) else [selected]
        return max(int(i) % (n_layers + 1) for i in indices)

    # ---- positions --------------------------------------------------------------------------
    def position_embeddings(
        self, lm: nn.Module, hidden: torch.Tensor, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary (cos, sin) for the given position ids, with the family's own rotary module."""
        return getattr(lm, self.rotary)(hidden, position_ids)

    def default_position_ids(self, batch: int, start: int, length: int, device: torch.device) -> torch.Tensor:
        """Position ids when the HF model passes none to its language model (plain 1D RoPE)."""
        return torch.arange(start, start + length, device=device).unsqueeze(0).expand(batch, -1)

    def next_position_ids(self, position_ids: torch.Tensor, n_new: int) -> torch.Tensor:
        """Position ids of ``n_new`` tokens appended after ``position_ids`` (generation)."""
        last = position_ids[..., -1:]
        steps = torch.arange(1, n_new + 1, device=position_ids.device)
        return last + steps

    # ---- the layer loop -----------------------------------------------------------------------
    def after_layer(
        self, layer: int, resid: torch.Tensor, extra: dict[str, Any] | None, positions: slice | None = None
    ) -> torch.Tensor:
        """What the language model does to the residual stream between layer ``layer`` and the next.

        The core calls this after every decoder block it runs: after the block's
        ``hook_resid_post`` and before the next block's ``hook_resid_pre`` (or, after the
        last block, before the final norm). The default changes nothing. Families that
        inject features mid-stack (Qwen3-VL's DeepStack adds visual features after the
        first few layers) override it.

        Args:
            layer: the layer just run.
            resid: ``(batch, pos, d_model)``, the block's output.
            extra: the extra keyword arguments the HF model passed to its language model
                (``LMInputs.extra``), describing the *prompt's* positions; None or empty
                when there are none.
            positions: which prompt positions ``resid``'s ``pos`` axis covers (a
                ``slice`` into the prompt; None: the whole prompt). Positions at or past the
                prompt's end (generated tokens) are never visual.
        """
        return resid

    # ---- video layout -----------------------------------------------------------------------
    def video_structure(self, config: Any, inputs: dict[str, Any], item: int, n_tokens: int) -> VideoStructure:
        """Split item ``item``'s video token run (``n_tokens`` long) into temporal units."""
        raise NotImplementedError

    def processor_kwargs(
        self, fps: float | None, n_frames: int, timestamps: Float[np.ndarray, " frame"] | None = None
    ) -> dict[str, Any]:
        """Extra keyword arguments for the processor call (e.g. the video's fps or frame times).

        ``timestamps`` are the frames' absolute times in seconds (``Video.timestamps``, the
        decoder's pts), or None when unknown; a family whose processor turns time into text or
        positions uses them in preference to ``fps``, so that a clip starting at 6 s is told 6 s.
        """
        return {}

    def frames_for_processor(self, frames: np.ndarray, timestamps: np.ndarray | None) -> tuple[np.ndarray, Any]:
        """The frames (and their times) to hand the processor; the layout still counts the input frames.

        The default hands them over unchanged. A family whose processor cannot take some
        frame counts adapts them here (Qwen3-VL repeats a single frame, as Qwen2.5-VL's own
        processor does); the layout's units then cover only the input frames that exist.
        """
        return frames, timestamps

    # ---- loading ------------------------------------------------------------------------------
    def model_class(self, architecture: str) -> type:
        """The HF model class for an architecture name (transformers' own by default)."""
        import transformers

        cls = getattr(transformers, architecture, None)
        if cls is None:
            raise UnsupportedModelError(f"transformers {transformers.__version__} has no class {architecture}.")
        return cls

    def load_processor(self, source: str, **kwargs: Any) -> Any:
        """The processor for a checkpoint (HF's AutoProcessor by default)."""
        import transformers

        return transformers.AutoProcessor.from_pretrained(source, **kwargs)


_REGISTRY: dict[str, type[VideoLLMAdapter]] = {}
_LOADED = False


def register_adapter(cls: type[VideoLLMAdapter]) -> type[VideoLLMAdapter]:
    """Class decorator: make an adapter available for its ``architectures``."""
    for arch in cls.architectures:
        _REGISTRY[arch] = cls
    return cls


def unregister_adapter(cls: type[VideoLLMAdapter]) -> None:
    """Undo :func:`register_adapter` (e.g. a test's own family, in its fixture's teardown)."""
    for arch in cls.architectures:
        if _REGISTRY.get(arch) is cls:
            del _REGISTRY[arch]


def registered_adapters() -> list[type[VideoLLMAdapter]]:
    """Every registered adapter class once, in registration order."""
    _load_adapters()
    return list(dict.fromkeys(_REGISTRY.values()))


def _load_adapters() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import_module("model_adapters")
    for ep in entry_points(group="videolens.adapters"):
        ep.load()


def supported_architectures() -> list[str]:
    """Architectures with a registered adapter."""
    _load_adapters()
    return sorted(_REGISTRY)


def adapter_for(model_or_arch: nn.Module | str) -> VideoLLMAdapter:
    """The adapter for an HF model (by class name or ``config.architectures``)."""
    _load_adapters()
    if isinstance(model_or_arch, str):
        names = [model_or_arch]
    else:
        names = [type(model_or_arch).__name__, *(getattr(model_or_arch.config, "architectures", None) or [])]
    for name in names:
        if name in _REGISTRY:
            return _REGISTRY[name]()
    raise UnsupportedModelError(
        f"No videolens adapter for {names[0]}. Supported architectures: {', '.join(supported_architectures())}. "
        "To add one, see docs/adapters.md."
    )
