"""Build any registered family's tiny random model, by family name, from its ``TinySpec``.

Each builder returns the family's real HF model class with random (seeded) weights and the
family's *real* processor class (tokenizer, image processor and video processor). Only the
weights and the tokenizer are fake: the tokenizer is a small byte-level BPE trained
in-process (:mod:`videolens.testing.tokenizer`). Nothing is downloaded, so the builders work
without network access or a model hub. The families are the registered adapters that
declare a ``tiny`` spec themselves (:mod:`videolens.testing.spec`); a family module added
to ``model_adapters`` is picked up with no change here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from videolens.adapters.protocol import VideoLLMAdapter, registered_adapters
from videolens.errors import InputError
from videolens.testing.sizes import TextDims
from videolens.testing.spec import TinySpec
from videolens.testing.tokenizer import TokenizerSpec, train_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

__all__ = [
    "build_tiny_model",
    "build_tiny_pllava",
    "build_tiny_tokenizer",
    "save_tiny_model",
    "tiny_adapter",
    "tiny_families",
    "tiny_spec",
]


def _tiny_adapters() -> dict[str, type[VideoLLMAdapter]]:
    """family -> adapter class, for every registered adapter with a ``tiny`` spec of its own.

    Only the class's own attribute counts: a variant that subclasses another family's adapter
    but declares no spec would otherwise build, and be tested as, its parent's model.
    """
    found: dict[str, type[VideoLLMAdapter]] = {}
    for cls in registered_adapters():
        if vars(cls).get("tiny") is None:
            continue
        if cls.family in found:
            raise InputError(f"Adapters {found[cls.family].__name__} and {cls.__name__} both claim {cls.family!r}.")
        found[cls.family] = cls
    return dict(sorted(found.items()))


def tiny_families() -> tuple[str, ...]:
    """The families with a tiny model, sorted; read from the adapter registry on every call."""
    return tuple(_tiny_adapters())


def tiny_adapter(family: str) -> type[VideoLLMAdapter]:
    """The adapter class of ``family``; ``ValueError`` naming the families if unknown."""
    adapters = _tiny_adapters()
    if family not in adapters:
        raise InputError(f"Unknown tiny family {family!r}; supported: {', '.join(adapters)}")
    return adapters[family]


def tiny_spec(family: str) -> TinySpec:
    """The tiny-model spec of ``family`` (builders, tokenizer and layout facts)."""
    return vars(tiny_adapter(family))["tiny"]


def build_tiny_tokenizer(family: str | TokenizerSpec, words: Sequence[str] | None = None) -> PreTrainedTokenizerFast:
    """The tiny tokenizer of ``family`` (or of a spec), see :func:`videolens.testing.tokenizer.train_tokenizer`."""
    spec = family if isinstance(family, TokenizerSpec) else tiny_spec(family).tokenizer
    return train_tokenizer(spec, words)


def build_tiny_model(
    family: str,
    *,
    seed: int = 0,
    attn_implementation: str = "eager",
    num_layers: int = 2,
    hidden_size: int = 64,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    vocab_words: Sequence[str] | None = None,
    **options: Any,
) -> tuple[PreTrainedModel, Any]:
    """Return (hf_model in eval mode, fp32, on CPU, processor).

    The model is the family's real ``*ForConditionalGeneration`` class with a tiny random
    vision tower and a ``num_layers``-layer text tower using grouped query attention
    (``num_kv_heads`` key/value heads). Weights depend only on ``seed`` (and the size
    arguments), so equal seeds give identical models. ``attn_implementation`` ("eager" or
    "sdpa") applies to text and vision towers. The processor is the family's real processor
    class around :func:`build_tiny_tokenizer` (extended with ``vocab_words``); the text
    vocabulary size equals ``len(tokenizer)`` and every image/video/vision special-token id
    in the config is taken from that tokenizer. ``options`` are the family's own (e.g.
    PLLaVA's ``pooling_shape``).

    Raises:
        ValueError: for an unknown ``family`` or inconsistent head counts.
    """
    adapter = tiny_adapter(family)
    spec = tiny_spec(family)
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise InputError("hidden_size must be divisible by num_heads, and num_heads by num_kv_heads")
    tokenizer = train_tokenizer(spec.tokenizer, vocab_words)
    dims = TextDims(num_layers, hidden_size, num_heads, num_kv_heads, vocab_size=len(tokenizer))
    config = spec.config(dims, tokenizer, **options)
    config._attn_implementation = attn_implementation  # propagates to sub-configs
    model_class = adapter().model_class(adapter.architectures[0])
    # Seed inside a forked RNG so building a model leaves global RNG state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
        _randomise_norms_and_biases(model)
    return model.to(dtype=torch.float32).eval(), spec.processor(tokenizer, **options)


@torch.no_grad()
def _randomise_norms_and_biases(model: torch.nn.Module) -> None:
    """Give every norm a random weight (around 1) and every bias random values.

    HF initialises norm weights to 1 and biases to 0; with those, an identity that folds a
    norm's weight into the next weights, or forgets a bias, would hold by accident, so a
    conformance check on a tiny model could not catch it.
    """
    for module in model.modules():
        is_norm = "norm" in type(module).__name__.lower()
        for name, param in module.named_parameters(recurse=False):
            if name == "bias":
                param.normal_(0.0, 0.02)
            elif is_norm and name == "weight":
                param.normal_(1.0, 0.1)


def build_tiny_pllava(**kwargs: Any) -> tuple[PreTrainedModel, Any]:
    """``build_tiny_model("pllava", **kwargs)`` (kept for callers of the old name)."""
    return build_tiny_model("pllava", **kwargs)


def save_tiny_model(family: str, folder: str | Path, **kwargs: Any) -> Path:
    """Build a tiny model and ``save_pretrained`` model + processor into ``folder``.

    ``kwargs`` are forwarded to :func:`build_tiny_model`. The folder then loads offline
    through the family's adapter (``HookedVideoLLM.from_pretrained(folder)``; for families
    transformers knows, also ``AutoModelForImageTextToText`` / ``AutoProcessor``). Returns
    the folder as a ``Path``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, processor = build_tiny_model(family, **kwargs)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
