"""What a family declares about its tiny test model and about its row of the support tables.

A family module in ``model_adapters`` sets two class attributes on its adapter,
``tiny = TinySpec(...)`` and ``support = SupportRow(...)``, and registers the adapter
with ``@register_adapter``. The generic builder (:func:`videolens.testing.build_tiny_model`),
the conformance checks (:mod:`videolens.testing.conformance`) and the support tables
(:func:`videolens.testing.support_table`) read nothing else about the family. Everything
here is plain data: the builders a spec names import transformers only when called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from videolens.testing.tokenizer import TokenizerSpec

__all__ = ["VIDEO_FRAMES", "LayoutFacts", "SupportRow", "TinySpec"]

#: Frames of the video the layout facts are counted for (``random_video(VIDEO_FRAMES)``).
VIDEO_FRAMES = 8


@dataclass(frozen=True)
class LayoutFacts:
    """The layout a family's tiny model gives a prompt with ``random_video(8)``, counted by hand.

    The counts follow from the tiny sizes and the family's processor (the derivations are in
    docs/transformers-quirks.md); :func:`videolens.testing.conformance.check_layout` compares
    them with ``prompt.layout`` and with the processor's own placeholder tokens.

    Attributes:
        tokens_per_unit: video tokens of each temporal unit (``frame(t)``), prefix included.
        frames_per_unit: input frames each unit covers (2 where the tower patches in time).
        extra_tokens: video tokens in no unit (``video_extra``, e.g. LLaVA-OneVision's newline).
        frame_prefix: tokens that lead every unit before its patch grid (Video-LLaVA's CLS).
        video_text: whether the processor writes text between the units (``video_text``).
    """

    tokens_per_unit: int
    frames_per_unit: int = 1
    extra_tokens: int = 0
    frame_prefix: int = 0
    video_text: bool = False

    @property
    def units(self) -> int:
        """Temporal units of the 8-frame video."""
        return VIDEO_FRAMES // self.frames_per_unit

    @property
    def video_tokens(self) -> int:
        """All video feature tokens of the 8-frame video."""
        return self.units * self.tokens_per_unit + self.extra_tokens


@dataclass(frozen=True)
class TinySpec:
    """How to build a family's tiny random model, and the layout it must give.

    The HF model class is the adapter's own, ``adapter.model_class(adapter.architectures[0])``
    (transformers' class of that name unless the adapter says otherwise, as PLLaVA's does).

    Attributes:
        config: ``config(dims, tokenizer, **options)``: the family's real config class at the
            tiny sizes, wired to the tokenizer's ids (``dims``: :class:`videolens.testing.sizes.TextDims`).
        processor: ``processor(tokenizer, **options)``: the family's real processor class
            around the tiny tokenizer, resizing frames to the tiny resolution.
        tokenizer: the tokenizer's special tokens, chat template and padding side.
        layout: the layout facts of the tiny model on ``random_video(8)``.

    ``options`` are family-specific keyword arguments of ``build_tiny_model`` (e.g. PLLaVA's
    ``pooling_shape``), passed to both builders.
    """

    config: Callable[..., Any]
    processor: Callable[..., Any]
    tokenizer: TokenizerSpec
    layout: LayoutFacts


@dataclass(frozen=True)
class SupportRow:
    """A family's row of the support tables (README's "Supported models", docs/adapters.md).

    The HF class shown is the adapter's ``architectures[0]`` and the module the adapter's own.

    Attributes:
        name: the family as readers know it ("LLaVA-NeXT-Video").
        frames: how its video becomes ``frame(t)`` units (README: "frames in the layout").
        tokens_per_unit: docs/adapters.md: "tokens per temporal unit".
        notes: docs/adapters.md: "notes".
        hf_class_note: text after the HF class name (e.g. where a class transformers lacks lives).
    """

    name: str
    frames: str
    tokens_per_unit: str
    notes: str = ""
    hf_class_note: str = ""
