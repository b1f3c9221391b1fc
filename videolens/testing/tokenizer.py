"""Small byte-level BPE tokenizers trained in-process, and the token sets families share.

A family's tiny tokenizer is a :class:`TokenizerSpec`: which special tokens it has, its
chat template and its padding side. Families with the same text tower share a named spec
(or derive theirs with :func:`dataclasses.replace`): :data:`VICUNA_TOKENS` (Llama/Vicuna
text towers), :data:`CHATML_TOKENS` (ChatML with LLaVA's ``<image>``/``<video>``),
:data:`QWEN_TOKENS` (Qwen's vision start/end and pad tokens), :data:`INTERNVL_TOKENS`.

Padding sides follow the real checkpoints: the llava-hf conversions of LLaVA-NeXT-Video
and LLaVA-OneVision pad left (batched generation); Qwen2-VL and Qwen2.5-VL keep the
tokenizer default, right. Having both sides among the test models keeps code that
locates tokens honest about padding.

The BPE is trained on a short English prompt corpus (cached per token set and extra
words), so nothing is downloaded. ``tokenizers`` and ``transformers`` are imported when
a tokenizer is built, not when this module is imported.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from videolens.testing.sizes import MAX_POSITIONS
from videolens.testing.templates import QWEN_TEMPLATE, VICUNA_TEMPLATE, chatml_template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["CHATML_TOKENS", "INTERNVL_TOKENS", "QWEN_TOKENS", "VICUNA_TOKENS", "TokenizerSpec", "train_tokenizer"]


@dataclass(frozen=True)
class TokenizerSpec:
    """A tiny tokenizer: its special tokens, chat template and padding side.

    Attributes:
        specials: special tokens; the BPE trainer gives them the lowest ids, in order, so
            their ids do not move when extra words change the learned vocabulary.
        bos, eos, pad, unk: which specials play those roles (None: the role is unset).
        extra_attributes: named tokens the processors read from the tokenizer
            (``image_token``, ``video_token``, ...).
        chat_template: the Jinja chat template (:mod:`videolens.testing.templates`).
        padding_side: "left" or "right", as the real checkpoint's tokenizer.
    """

    specials: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str
    unk: str | None
    extra_attributes: Mapping[str, str]
    chat_template: str
    padding_side: str


#: Llama/Vicuna text towers (LLaVA-NeXT-Video, Video-LLaVA, PLLaVA); ``<s>`` is prepended.
VICUNA_TOKENS = TokenizerSpec(
    specials=("<unk>", "<s>", "</s>", "<pad>", "<image>", "<video>"),
    bos="<s>",
    eos="</s>",
    pad="<pad>",
    unk="<unk>",
    extra_attributes={"image_token": "<image>", "video_token": "<video>"},
    chat_template=VICUNA_TEMPLATE,
    padding_side="left",
)
#: ChatML with LLaVA's media tokens (LLaVA-OneVision).
CHATML_TOKENS = TokenizerSpec(
    specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"),
    bos=None,
    eos="<|im_end|>",
    pad="<|endoftext|>",
    unk=None,
    extra_attributes={"image_token": "<image>", "video_token": "<video>"},
    chat_template=chatml_template("<image>\n", "<video>\n", default_system=None),
    padding_side="left",
)
#: Qwen text towers (Qwen2-VL, Qwen2.5-VL; Qwen3-VL and VideoLLaMA3 change the template).
QWEN_TOKENS = TokenizerSpec(
    specials=(
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ),
    bos=None,
    eos="<|im_end|>",
    pad="<|endoftext|>",
    unk=None,
    extra_attributes={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    chat_template=QWEN_TEMPLATE,
    padding_side="right",
)
#: InternVL (Qwen2 text tower): a ``<video>\n`` placeholder that the processor turns into
#: ``Frame1: <img><IMG_CONTEXT>...</img>`` lines.
INTERNVL_TOKENS = TokenizerSpec(
    specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
    bos=None,
    eos="<|im_end|>",
    pad="<|endoftext|>",
    unk=None,
    extra_attributes={
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    },
    chat_template=chatml_template("<img>\n", "<video>\n", default_system=None),
    padding_side="left",
)

# Upper bound only: the small corpus runs out of merges first (~570 tokens).
_BPE_VOCAB_SIZE = 1000

_CORPUS: tuple[str, ...] = (
    "Question: What happened to the red circle in the video?",
    "Question: Which object was moving first in the video?",
    "Question: What colour is the square after the blue circle moves?",
    "Question: What color was the green square before it moved left?",
    "Question: Which direction did the yellow circle move: up, down, left or right?",
    "Question: What happened before the red square moved right?",
    "Question: What happened after the green circle moved down?",
    "Question: In which frame does the blue square first appear?",
    "Options: (A) up (B) down (C) left (D) right",
    "Options: (A) red (B) green (C) blue (D) yellow",
    "Options: (A) circle (B) square (C) both (D) neither",
    "Options: (A) 1 (B) 2 (C) 3 (D) 4",
    "Best option: (A",
    "Best option: (B",
    "Best option: (C",
    "Best option: (D",
    "Answer with the option's letter from the given choices directly.",
    "Answer with the letter of the best option.",
    "You are a helpful assistant that watches a video and answers questions.",
    "Carefully watch the video and pay attention to the cause and sequence of events.",
    "The red circle is moving up. The blue square is moving down.",
    "The green circle moved left before the yellow square moved right.",
    "The first frame shows a red circle on the left and a blue square on the right.",
    "The last frame shows the yellow circle at the top and the green square at the bottom.",
    "Frame 0, frame 1, frame 2, frame 3, frame 4, frame 5, frame 6, frame 7, frame 8, frame 9.",
    "Count the objects: 0 1 2 3 4 5 6 7 8 9 10 11 12 16 32 64.",
    "Is the circle bigger than the square? Yes. No. Maybe.",
    "Which shape is moving faster, the circle or the square?",
    "What is the colour of the object that moved last?",
    "A B C D E. a b c d e. ( ) : . , ? ! ' \" - _ / \\ [ ] { } < > = + * # @ $ % & | ~",
)


@functools.lru_cache(maxsize=32)
def _trained_json(specials: tuple[str, ...], bos: str | None, words: tuple[str, ...]) -> str:
    """Train the byte-level BPE once per token set and extra words; return it as JSON.

    Cached because training dominates tokenizer construction; callers rebuild a fresh
    ``Tokenizer`` from the string so nobody shares mutable state.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        min_frequency=1,
        special_tokens=[AddedToken(tok, special=True, normalized=False) for tok in specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = list(_CORPUS)
    # Each extra word appears both sentence-initially and after a space, since
    # byte-level BPE treats "word" and " word" as different tokens.
    for word in words:
        corpus.extend([word, f"The {word} is here.", f"Best option: {word}"])
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    byte_level = processors.ByteLevel(trim_offsets=False)
    if bos is not None:
        template = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
        )
        tokenizer.post_processor = processors.Sequence([byte_level, template])
    else:
        tokenizer.post_processor = byte_level
    return tokenizer.to_str()


def train_tokenizer(spec: TokenizerSpec, words: Sequence[str] | None = None) -> PreTrainedTokenizerFast:
    """A small fast BPE tokenizer with ``spec``'s special tokens, chat template and padding side.

    The tokenizer is byte-level (any text encodes, no ``<unk>`` in practice), supports
    ``return_offsets_mapping=True``, and has a vocabulary of a few hundred entries.
    ``words`` are added to the training corpus so that they tend to become single tokens
    (useful for answer-letter / keyword tests).
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(_trained_json(spec.specials, spec.bos, tuple(words or ())))
    roles = {"bos_token": spec.bos, "eos_token": spec.eos, "pad_token": spec.pad, "unk_token": spec.unk}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        padding_side=spec.padding_side,
        chat_template=spec.chat_template,
        extra_special_tokens=dict(spec.extra_attributes),
        model_max_length=MAX_POSITIONS,
        **{role: token for role, token in roles.items() if token is not None},
    )
