r"""Tiny, random-initialised video LLMs for fast, offline tests.

Each builder returns a real Hugging Face model class of one of the supported
families together with that family's *real* processor class (tokenizer, image
processor and video processor). Only the weights and the tokenizer are fake:
the weights are random (seeded) and the tokenizer is a small byte-level BPE
trained in-process on an English prompt corpus. Nothing is downloaded, so the
builders work without network access or a model hub.

Video token counts for ``random_video(8)`` (any frame size is resized to the
tiny resolution by the processor):

* ``llava_next_video``: frames resized and centre-cropped to 32x32, CLIP patch 8
  -> 4x4 patches per frame (the CLS token is dropped), average-pooled with
  ``spatial_pool_stride=2`` -> **4 tokens per frame**, 32 ``<video>`` tokens
  for 8 frames.
* ``llava_onevision``: frames resized to 32x32, SigLIP patch 8 -> 4x4 patches,
  bilinear 2x pooling -> **4 tokens per frame**, plus ONE ``image_newline``
  token after the last frame: 8 * 4 + 1 = 33 ``<video>`` tokens.
* ``qwen2_5_vl``: frames resized to 56x56 (``size={"shortest_edge": 3136,
  "longest_edge": 3136}``, i.e. min = max = 56*56 pixels), patch 14 -> a 4x4
  patch grid, ``temporal_patch_size=2`` merges pairs of frames and the 2x2
  spatial merger gives **4 tokens per temporal unit = 2 tokens per frame**:
  ``video_grid_thw = (4, 4, 4)`` and 16 ``<|video_pad|>`` tokens for 8 frames.
* ``qwen2_vl``: the same sizes as ``qwen2_5_vl`` (56x56 frames, patch 14,
  temporal patch 2, 2x2 merge) -> **4 tokens per temporal unit**, 16
  ``<|video_pad|>`` tokens for 8 frames.
* ``qwen3_vl``: frames at most 56x56 (48x48 -> 56x56), patch 14, temporal patch
  2, 2x2 merge -> **4 tokens per temporal unit**, 16 ``<|video_pad|>`` tokens for 8
  frames through ``prepare`` (which passes the metadata and ``do_sample_frames=False``).
  Each unit's run is written ``<{t:.1f} seconds><|vision_start|>...<|vision_end|>``
  inside the template's own start/end tokens. A bare processor call without
  ``video_metadata`` samples frames at 2 fps from an assumed 24 fps source, i.e. 4 of
  the 8 frames (``min_frames``): 8 tokens.
* ``videollama3``: frames of 48x48 resized to 56x56 (the clip budget
  ``longest_edge=32*56*56`` is shared by the frames), patch 14, no temporal patching,
  2x2 merge -> **4 tokens per frame**, 32 ``<|video_pad|>`` tokens for 8 frames,
  written ``Time {t:.1f}s:<|video_pad|>x4`` per frame, joined by ``,``. Token
  compression is off (``use_token_compression=False``) so every frame keeps its grid.
* ``video_llava``: frames resized and centre-cropped to 32x32, CLIP patch 8
  -> 4x4 patches, and the CLS token is KEPT, first, with no pooling ->
  **1 + 16 = 17 tokens per frame**, 8 * 17 = 136 ``<video>`` tokens for 8
  frames (the real 224px/patch-14 model: 1 + 256 = 257 per frame).

Chat templates (``processor.chat_template`` == ``tokenizer.chat_template``),
rendered for a system message plus a user turn ``[video, "Q?"]`` with
``add_generation_prompt=True``:

* ``llava_next_video`` (Vicuna style, media first):
  ``"{system} USER: <video>\nQ? ASSISTANT:"``; finished assistant turns end in
  ``</s>``. The tokenizer itself prepends ``<s>`` (like the Llama tokenizer).
* ``video_llava``: the same Vicuna template as ``llava_next_video``
  (``"USER: <video>\nQ? ASSISTANT:"``, the format of HF's Video-LLaVA docs).
* ``llava_onevision`` (ChatML): ``"<|im_start|>system\n{system}<|im_end|>\n
  <|im_start|>user\n<video>\nQ?<|im_end|>\n<|im_start|>assistant\n"``.
* ``qwen2_5_vl`` (ChatML, media inline in content order):
  ``"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n
  <|vision_start|><|video_pad|><|vision_end|>Q?<|im_end|>\n
  <|im_start|>assistant\n"``; without a system message the Qwen default
  ``"You are a helpful assistant."`` is inserted. ``qwen2_vl`` uses the same
  tokenizer and template.

Content may also be a plain string. Several text items are joined with a space
(LLaVA-NeXT-Video) or concatenated (ChatML families), as the real templates do.

Padding side follows the real checkpoints: the llava-hf conversions of
LLaVA-NeXT-Video and LLaVA-OneVision are set up for ``padding_side="left"``
(batched generation); Qwen2.5-VL keeps the tokenizer default ``"right"`` (its
docs recommend switching to left for batched generation). The tiny Video-LLaVA
pads left (like the other LLaVA tokenizers here) and Qwen2-VL right (like
Qwen2.5-VL). Having both sides in the test models keeps code that
locates tokens honest about padding.

Quirks found in transformers 5.23:

* Qwen3-VL's video processor bounds the pixels of the whole clip (``size`` is
  frames x height x width); ``cap_pixels_per_frame=True`` with
  ``max_video_tokens=4`` caps every frame at 56x56. Its vision tower has a learned
  position grid (``num_position_embeddings=16``: 4x4 patches) and DeepStack mergers
  (``deepstack_visual_indexes``); ``get_video_features`` returns per-video tuples in
  ``pooler_output`` and ``deepstack_features``. HF's ``output_hidden_states`` records each
  decoder layer's output *before* the DeepStack addition.

* Qwen2.5-VL needs a frame rate to space the temporal rotary positions. With
  plain numpy frames and no ``video_metadata``, ``VideoMetadata.sampled_fps``
  falls back to **24 fps**, so ``second_per_grid_ts = 2 / 24`` and with
  ``tokens_per_second=2`` the temporal position of unit ``t`` is
  ``int(t * 0.17)``: for up to 12 frames every temporal unit gets the SAME
  temporal position (the real models behave the same way).
  Pass ``video_metadata=[{"fps": 2.0, "total_num_frames": T}]`` to the
  processor call (one dict per video) to get the Qwen-usual 2 fps, i.e.
  ``second_per_grid_ts = 1.0`` and a temporal step of 2 positions. The ``fps``
  processor kwarg only controls frame *sampling* (``do_sample_frames``) and
  does not change ``second_per_grid_ts``.
* The Qwen2-VL video processor warns unless ``cap_pixels_per_frame`` is set;
  the tiny processor sets it to ``False`` (irrelevant at 56x56).
* The Qwen processor also returns ``mm_token_type_ids`` (0 text, 1 image,
  2 video) and ``second_per_grid_ts``; the model needs them for 3D RoPE.
* Non-square Qwen frames keep their aspect ratio within the 56*56 pixel budget
  (e.g. 100x60 -> 56x28, grid (T/2, 4, 2)); square frames always give 4x4.
* ``Qwen2_5_VLConfig`` takes ``text_config``/``vision_config`` as dicts or
  config objects (``Qwen2_5_VLTextConfig`` with ``rope_parameters`` holding
  ``mrope_section``; ``Qwen2_5_VLVisionConfig`` uses ``depth``/``num_heads``).
  Flat text kwargs are only read when ``text_config`` is None.
* In transformers 5, ``PreTrainedTokenizerFast`` is an alias of
  ``TokenizersBackend``; ``save_pretrained`` records that class and the extra
  named tokens (``image_token``/``video_token``) that the processors read.
* ``from_pretrained`` picks its default attention (``"sdpa"``), not the one the
  tiny model was built with; pass ``attn_implementation="eager"`` for
  bit-identical logits after a round trip.
* ``vision_feature_select_strategy="default"`` (LLaVA-NeXT-Video) drops the CLS
  token of the CLIP tower, so the processor must be told
  ``num_additional_image_tokens=1`` for images; videos ignore it.
* Video-LLaVA applies ``vision_feature_select_strategy`` to images only: video
  frames keep the CLS token (``get_video_features`` takes the whole hidden
  state), and the processor counts ``num_additional_image_tokens`` (1) extra
  tokens per frame. Its config's ``video_seq_length`` (8 * 17 here, 2056 =
  8 * 257 in the real config) is informational. The model has two CLIP towers
  (``image_tower`` and ``video_tower``) of the same config.
* Qwen2-VL has no ``second_per_grid_ts``: the temporal rotary position of unit
  ``t`` is ``t`` whatever the frame rate, and its processor returns only
  ``video_grid_thw`` and ``mm_token_type_ids`` besides the pixels. Its vision
  config names the tower width ``embed_dim`` (``hidden_size`` is the merger's
  output, i.e. the text width) and has no window attention.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    InternVLVideoProcessor,
    InternVLVisionConfig,
    LlamaConfig,
    LlavaNextImageProcessor,
    LlavaNextVideoConfig,
    LlavaNextVideoForConditionalGeneration,
    LlavaNextVideoProcessor,
    LlavaNextVideoVideoProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Config,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
    SiglipVisionConfig,
    VideoLlama3Config,
    VideoLlama3ForConditionalGeneration,
    VideoLlama3ImageProcessor,
    VideoLlama3Processor,
    VideoLlama3VideoProcessor,
    VideoLlama3VisionConfig,
    VideoLlavaConfig,
    VideoLlavaForConditionalGeneration,
    VideoLlavaImageProcessor,
    VideoLlavaProcessor,
    VideoLlavaVideoProcessor,
)

__all__ = [
    "SUPPORTED_TINY_FAMILIES",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "random_video",
    "save_tiny_model",
]

SUPPORTED_TINY_FAMILIES: tuple[str, ...] = (
    "llava_next_video",
    "llava_onevision",
    "qwen2_5_vl",
    "qwen2_vl",
    "video_llava",
    "internvl",
    "qwen3_vl",
    "videollama3",
)

# --------------------------------------------------------------------------- sizes
# LLaVA families: a 32x32 frame with patch 8 is a 4x4 patch grid, pooled to 2x2.
_LLAVA_IMAGE_SIZE = 32
_LLAVA_PATCH_SIZE = 8
# Qwen2.5-VL: a 56x56 frame with patch 14 is a 4x4 grid, merged 2x2 -> 2x2 tokens.
_QWEN_PATCH_SIZE = 14
_QWEN_MERGE_SIZE = 2
_QWEN_TEMPORAL_PATCH = 2
_QWEN_FRAME_PIXELS = 56 * 56
# Width of every tiny vision tower (independent of the text ``hidden_size``).
_VISION_HIDDEN = 32
_VISION_HEADS = 4
_VISION_LAYERS = 2
_MAX_POSITIONS = 2048

# --------------------------------------------------------------------------- tokenizer
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

# Special tokens per family; the BPE trainer gives them the lowest ids, in order,
# so their ids do not move when ``vocab_words`` changes the learned vocabulary.
_LLAVA_NEXT_VIDEO_SPECIALS = ("<unk>", "<s>", "</s>", "<pad>", "<image>", "<video>")
_LLAVA_ONEVISION_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<image>",
    "<video>",
)
_INTERNVL_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<video>",
)
_QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# --------------------------------------------------------------------------- chat templates
# Vicuna style, media first, like llava-hf's LLaVA-NeXT-Video template:
#   "{system} USER: <video>\n{user text} ASSISTANT:"
_VICUNA_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}"
    "{%- set items = [{'type': 'text', 'text': message['content']}] -%}"
    "{%- else -%}{%- set items = message['content'] -%}{%- endif -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- for item in items if item['type'] == 'text' -%}{{ item['text'] }}{%- endfor -%}"
    "{%- else -%}"
    "{{ ' ' if not loop.first else '' }}{{ message['role'] | upper }}{{ ': ' }}"
    "{%- for item in items if item['type'] == 'image' -%}{{ '<image>\n' }}{%- endfor -%}"
    "{%- for item in items if item['type'] == 'video' -%}{{ '<video>\n' }}{%- endfor -%}"
    "{%- for item in items if item['type'] == 'text' -%}"
    "{{ ' ' if not loop.first else '' }}{{ item['text'] }}"
    "{%- endfor -%}"
    "{%- if message['role'] == 'assistant' -%}{{ '</s>' }}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ ' ASSISTANT:' }}{%- endif -%}"
)


def _chatml_template(image_marker: str, video_marker: str, default_system: str | None) -> str:
    """Return a ChatML Jinja template rendering media items inline, in order.

    ``image_marker``/``video_marker`` are what a ``{"type": "image"}`` /
    ``{"type": "video"}`` content item becomes; ``default_system`` (if given)
    is inserted when the conversation has no system message, as Qwen does.
    """
    default_block = ""
    if default_system is not None:
        default_block = (
            "{%- if messages[0]['role'] != 'system' -%}"
            "{{ '<|im_start|>system\n" + default_system + "<|im_end|>\n' }}"
            "{%- endif -%}"
        )
    return (
        default_block + "{%- for message in messages -%}"
        "{{ '<|im_start|>' + message['role'] + '\n' }}"
        "{%- if message['content'] is string -%}{{ message['content'] }}"
        "{%- else -%}"
        "{%- for item in message['content'] -%}"
        "{%- if item['type'] == 'image' -%}{{ '" + image_marker + "' }}"
        "{%- elif item['type'] == 'video' -%}{{ '" + video_marker + "' }}"
        "{%- elif item['type'] == 'text' -%}{{ item['text'] }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- endif -%}"
        "{{ '<|im_end|>\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
    )


_ONEVISION_TEMPLATE = _chatml_template("<image>\n", "<video>\n", default_system=None)
_QWEN_TEMPLATE = _chatml_template(
    "<|vision_start|><|image_pad|><|vision_end|>",
    "<|vision_start|><|video_pad|><|vision_end|>",
    default_system="You are a helpful assistant.",
)


@dataclass(frozen=True)
class _TokenizerSpec:
    """Which special tokens a family's tokenizer has and how it behaves."""

    specials: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str
    unk: str | None
    chat_template: str
    padding_side: str
    extra_attributes: dict[str, str]


_TOKENIZER_SPECS: dict[str, _TokenizerSpec] = {
    "llava_next_video": _TokenizerSpec(
        specials=_LLAVA_NEXT_VIDEO_SPECIALS,
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        unk="<unk>",
        chat_template=_VICUNA_TEMPLATE,
        padding_side="left",
        extra_attributes={"image_token": "<image>", "video_token": "<video>"},
    ),
    "llava_onevision": _TokenizerSpec(
        specials=_LLAVA_ONEVISION_SPECIALS,
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        unk=None,
        chat_template=_ONEVISION_TEMPLATE,
        padding_side="left",
        extra_attributes={"image_token": "<image>", "video_token": "<video>"},
    ),
    "qwen2_5_vl": _TokenizerSpec(
        specials=_QWEN_SPECIALS,
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        unk=None,
        chat_template=_QWEN_TEMPLATE,
        padding_side="right",
        extra_attributes={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
        },
    ),
}
# Qwen2-VL shares Qwen2.5-VL's tokenizer and template; Video-LLaVA (Vicuna text tower)
# shares LLaVA-NeXT-Video's tokens and its "USER: <video>\n... ASSISTANT:" format.
_TOKENIZER_SPECS["qwen2_vl"] = _TOKENIZER_SPECS["qwen2_5_vl"]
# Qwen3-VL: the same tokens; its template inserts no default system message.
_TOKENIZER_SPECS["qwen3_vl"] = _TokenizerSpec(
    **{
        **_TOKENIZER_SPECS["qwen2_5_vl"].__dict__,
        "chat_template": _chatml_template(
            "<|vision_start|><|image_pad|><|vision_end|>",
            "<|vision_start|><|video_pad|><|vision_end|>",
            default_system=None,
        ),
    }
)
_TOKENIZER_SPECS["video_llava"] = _TOKENIZER_SPECS["llava_next_video"]
# VideoLLaMA3 (Qwen2 text tower): the Qwen tokens; a bare "<|video_pad|>" placeholder that
# the processor turns into "Time 0.0s:<|video_pad|>...,Time 0.5s:..." (one run per frame).
_TOKENIZER_SPECS["videollama3"] = _TokenizerSpec(
    **{
        **_TOKENIZER_SPECS["qwen2_5_vl"].__dict__,
        "chat_template": _chatml_template("<|image_pad|>\n", "<|video_pad|>\n", default_system=None),
        "padding_side": "left",
    }
)
# InternVL (Qwen2 text tower): ChatML, a "<video>\n" placeholder that the processor turns
# into "Frame1: <img><IMG_CONTEXT>...</img>" lines.
_TOKENIZER_SPECS["internvl"] = _TokenizerSpec(
    specials=_INTERNVL_SPECIALS,
    bos=None,
    eos="<|im_end|>",
    pad="<|endoftext|>",
    unk=None,
    chat_template=_chatml_template("<img>\n", "<video>\n", None),
    padding_side="left",
    extra_attributes={
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    },
)


def _check_family(family: str) -> None:
    """Raise ``ValueError`` naming the supported families if ``family`` is unknown."""
    if family not in SUPPORTED_TINY_FAMILIES:
        raise ValueError(f"Unknown tiny family {family!r}; supported: {', '.join(SUPPORTED_TINY_FAMILIES)}")


@functools.lru_cache(maxsize=32)
def _train_tokenizer_json(family: str, words: tuple[str, ...]) -> str:
    """Train the family's byte-level BPE once and return it serialised as JSON.

    Cached because training dominates tokenizer construction; callers rebuild a
    fresh ``Tokenizer`` from the string so nobody shares mutable state.
    """
    spec = _TOKENIZER_SPECS[family]
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        min_frequency=1,
        special_tokens=[AddedToken(tok, special=True, normalized=False) for tok in spec.specials],
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
    if spec.bos is not None:
        bos_id = tokenizer.token_to_id(spec.bos)
        template = processors.TemplateProcessing(
            single=f"{spec.bos} $A",
            pair=f"{spec.bos} $A {spec.bos} $B",
            special_tokens=[(spec.bos, bos_id)],
        )
        tokenizer.post_processor = processors.Sequence([byte_level, template])
    else:
        tokenizer.post_processor = byte_level
    return tokenizer.to_str()


def build_tiny_tokenizer(family: str, words: Sequence[str] | None = None) -> PreTrainedTokenizerFast:
    """Return a small fast BPE tokenizer with ``family``'s special tokens and chat template.

    The tokenizer is byte-level (any text encodes, no ``<unk>`` in practice),
    supports ``return_offsets_mapping=True``, and has a vocabulary of a few
    hundred entries. ``words`` are added to the training corpus so that they
    tend to become single tokens (useful for answer-letter / keyword tests).
    """
    _check_family(family)
    spec = _TOKENIZER_SPECS[family]
    backend = Tokenizer.from_str(_train_tokenizer_json(family, tuple(words or ())))
    special_kwargs = {
        name: value
        for name, value in (
            ("bos_token", spec.bos),
            ("eos_token", spec.eos),
            ("pad_token", spec.pad),
            ("unk_token", spec.unk),
        )
        if value is not None
    }
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        padding_side=spec.padding_side,
        chat_template=spec.chat_template,
        extra_special_tokens=dict(spec.extra_attributes),
        model_max_length=_MAX_POSITIONS,
        **special_kwargs,
    )
    return tokenizer


# --------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class _TextDims:
    """Text-tower hyper-parameters shared by all families."""

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int

    @property
    def intermediate_size(self) -> int:
        """MLP width: a conventional 2x hidden size keeps the model tiny."""
        return 2 * self.hidden_size

    def common_kwargs(self) -> dict[str, int | float]:
        """Keyword arguments understood by every decoder config used here."""
        return {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "max_position_embeddings": _MAX_POSITIONS,
        }


def _token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int | None]:
    """Return the bos/eos/pad ids of ``tokenizer`` for the text config."""
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


#: The vision-tower size every tiny family shares.
_TINY_TOWER = {
    "hidden_size": _VISION_HIDDEN,
    "intermediate_size": 2 * _VISION_HIDDEN,
    "num_hidden_layers": _VISION_LAYERS,
    "num_attention_heads": _VISION_HEADS,
}


def _tiny_grid_pinpoints() -> list[list[int]]:
    """Any-resolution grid for still images, scaled down to the tiny tile size."""
    s = _LLAVA_IMAGE_SIZE
    return [[s, s], [s, 2 * s], [2 * s, s], [2 * s, 2 * s]]


def _llava_next_video_config(dims: _TextDims, tokenizer: PreTrainedTokenizerFast) -> LlavaNextVideoConfig:
    """CLIP vision tower + Llama text tower, wired to the tiny tokenizer's ids."""
    vision = CLIPVisionConfig(
        **_TINY_TOWER,
        image_size=_LLAVA_IMAGE_SIZE,
        patch_size=_LLAVA_PATCH_SIZE,
        projection_dim=_VISION_HIDDEN,
    )
    text = LlamaConfig(**dims.common_kwargs(), **_token_ids(tokenizer), tie_word_embeddings=False)
    patches = (_LLAVA_IMAGE_SIZE // _LLAVA_PATCH_SIZE) ** 2
    return LlavaNextVideoConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_grid_pinpoints=_tiny_grid_pinpoints(),
        spatial_pool_mode="average",
        spatial_pool_stride=2,
        image_seq_length=patches,
        video_seq_length=patches // 4,
    )


def _llava_onevision_config(dims: _TextDims, tokenizer: PreTrainedTokenizerFast) -> LlavaOnevisionConfig:
    """SigLIP vision tower + Qwen2 text tower, wired to the tiny tokenizer's ids."""
    vision = SiglipVisionConfig(
        **_TINY_TOWER,
        image_size=_LLAVA_IMAGE_SIZE,
        patch_size=_LLAVA_PATCH_SIZE,
        vision_use_head=False,
    )
    text = Qwen2Config(**dims.common_kwargs(), **_token_ids(tokenizer), tie_word_embeddings=False)
    return LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=_tiny_grid_pinpoints(),
        vision_aspect_ratio="anyres_max_9",
    )


_INTERNVL_IMAGE_SIZE = 56  # patch 14 -> 4x4 patches -> pixel shuffle 0.5 -> 2x2 = 4 tokens per frame


def _internvl_config(dims: _TextDims, tokenizer: PreTrainedTokenizerFast) -> InternVLConfig:
    """InternViT-style tower + Qwen2 text tower; each frame becomes 4 ``<IMG_CONTEXT>`` tokens."""
    vision = InternVLVisionConfig(
        **_TINY_TOWER,
        image_size=_INTERNVL_IMAGE_SIZE,
        patch_size=14,
    )
    text = Qwen2Config(**dims.common_kwargs(), **_token_ids(tokenizer), tie_word_embeddings=False)
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=4,
        downsample_ratio=0.5,
    )


def _internvl_processor(tokenizer: PreTrainedTokenizerFast) -> InternVLProcessor:
    """Real InternVL processor at the tiny frame size."""
    size = {"height": _INTERNVL_IMAGE_SIZE, "width": _INTERNVL_IMAGE_SIZE}
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=False),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=size),
        image_seq_length=4,
        chat_template=tokenizer.chat_template,
    )


def _mrope_section(head_dim: int) -> list[int]:
    """Split the rotary half-dimension into (temporal, height, width) parts.

    Mirrors the real 1/4, 3/8, 3/8 split ([16, 24, 24] for head_dim 128).
    """
    half = head_dim // 2
    temporal = max(1, half // 4)
    height = (half - temporal) // 2
    return [temporal, height, half - temporal - height]


def _qwen2_5_vl_config(dims: _TextDims, tokenizer: PreTrainedTokenizerFast) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL vision tower (window attention, 2x2 merger) + Qwen2.5-VL text tower."""
    head_dim = dims.hidden_size // dims.num_heads
    vision = {
        "depth": _VISION_LAYERS,
        "hidden_size": _VISION_HIDDEN,
        "intermediate_size": 2 * _VISION_HIDDEN,
        "num_heads": _VISION_HEADS,
        "patch_size": _QWEN_PATCH_SIZE,
        "spatial_merge_size": _QWEN_MERGE_SIZE,
        "temporal_patch_size": _QWEN_TEMPORAL_PATCH,
        "tokens_per_second": 2,
        "window_size": 112,
        "out_hidden_size": dims.hidden_size,
        "fullatt_block_indexes": [_VISION_LAYERS - 1],
    }
    text = {
        "model_type": "qwen2_5_vl_text",
        **dims.common_kwargs(),
        **_token_ids(tokenizer),
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": _mrope_section(head_dim),
        },
    }
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def _qwen2_vl_config(dims: _TextDims, tokenizer: PreTrainedTokenizerFast) -> Qwen2VLConfig:
    """Qwen2-VL vision tower (full attention, 2x2 merger) + Qwen2-VL text tower.

    The vision config names differ from Qwen2.5-VL's: ``embed_dim`` is the tower's width
    and ``hidden_size`` the merger's output (the text width); there is no window attention
    and no ``tokens_per_second``.
    """
    head_dim = dims.hidden_size // dims.num_heads
    vision = {
        "depth": _VISION_LAYERS,
        "embed_dim": _VISION_HIDDEN,
        "hidden_size": dims.hidden_size,
        "mlp_ratio": 2,
        "num_heads": _VISION_HEADS,
        "patch_size": _QWEN_PATCH_SIZE,
        "spatial_merge_size": _QWEN_MERGE_SIZE,
        "temporal_patch_size": _QWEN_TEMPORAL_PATCH,
    }
    text = {
        "model_type": "qwen2_vl_text",
        **dims.common_kwargs(),
        **_token_ids(tokenizer),
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": _mrope_section(head_dim),
        },
    }
    return Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def _qwen3_vl_config(dims: _TextDims, tokenizer: PreTrainedTokenizerFast) -> Qwen3VLConfig:
    """Qwen3-VL vision tower (learned 4x4 position grid, 2x2 merger, DeepStack) + Qwen3 text tower.

    DeepStack is on: the features of vision layer 0 go through their own merger and are
    added to the language model's hidden states at the video positions after text layer
    0 (the real models: 3 vision layers feeding text layers 0, 1, 2). Only the first text
    layer gets one, as in the real models, where DeepStack never reaches the last layer
    (it would land between the last ``hook_resid_post`` and the final norm). M-RoPE is interleaved; ``mrope_section`` splits the
    rotary half-dimension 1/2, 1/4, 1/4 ([4, 2, 2] for head_dim 16) so that the
    interleaved H and W slots fit.
    """
    head_dim = dims.hidden_size // dims.num_heads
    half = head_dim // 2
    spatial = max(1, (half - 1) // 3)
    vision = {
        "depth": _VISION_LAYERS,
        "hidden_size": _VISION_HIDDEN,
        "intermediate_size": 2 * _VISION_HIDDEN,
        "num_heads": _VISION_HEADS,
        "patch_size": _QWEN_PATCH_SIZE,
        "spatial_merge_size": _QWEN_MERGE_SIZE,
        "temporal_patch_size": _QWEN_TEMPORAL_PATCH,
        "out_hidden_size": dims.hidden_size,
        "num_position_embeddings": 16,
        "deepstack_visual_indexes": [0],
    }
    text = {
        "model_type": "qwen3_vl_text",
        **dims.common_kwargs(),
        **_token_ids(tokenizer),
        "head_dim": head_dim,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [half - 2 * spatial, spatial, spatial],
            "mrope_interleaved": True,
        },
    }
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def _videollama3_config(dims: _TextDims, tokenizer: PreTrainedTokenizerFast) -> VideoLlama3Config:
    """VideoLLaMA3 vision tower (2D axial RoPE, patch 14, 2x2 merge per frame) + Qwen2 text tower."""
    vision = VideoLlama3VisionConfig(
        **_TINY_TOWER,
        patch_size=_QWEN_PATCH_SIZE,
    )
    text = Qwen2Config(**dims.common_kwargs(), **_token_ids(tokenizer), tie_word_embeddings=False)
    return VideoLlama3Config(
        text_config=text,
        vision_config=vision,
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        tie_word_embeddings=False,
    )


def _video_llava_config(dims: _TextDims, tokenizer: PreTrainedTokenizerFast) -> VideoLlavaConfig:
    """CLIP video/image towers + Llama text tower; video frames keep their CLS token."""
    vision = CLIPVisionConfig(
        **_TINY_TOWER,
        image_size=_LLAVA_IMAGE_SIZE,
        patch_size=_LLAVA_PATCH_SIZE,
        projection_dim=_VISION_HIDDEN,
    )
    text = LlamaConfig(**dims.common_kwargs(), **_token_ids(tokenizer), tie_word_embeddings=False)
    patches = (_LLAVA_IMAGE_SIZE // _LLAVA_PATCH_SIZE) ** 2
    return VideoLlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=patches,
        video_seq_length=8 * (patches + 1),
    )


# --------------------------------------------------------------------------- processors
def llava_next_video_processor(
    tokenizer: PreTrainedTokenizerFast,
    image_size: int = _LLAVA_IMAGE_SIZE,
    patch_size: int = _LLAVA_PATCH_SIZE,
    grid_pinpoints: list[list[int]] | None = None,
) -> LlavaNextVideoProcessor:
    """The real LLaVA-NeXT-Video processor, resizing/cropping every frame to ``image_size``.

    Shared by the tiny test models, the toy model and the 7B-shaped benchmark model.
    """
    common = {
        "size": {"shortest_edge": image_size},
        "crop_size": {"height": image_size, "width": image_size},
    }
    pinpoints = grid_pinpoints or [[image_size, image_size]]
    return LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(**common),
        image_processor=LlavaNextImageProcessor(**common, image_grid_pinpoints=pinpoints),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


def _llava_onevision_processor(
    tokenizer: PreTrainedTokenizerFast,
) -> LlavaOnevisionProcessor:
    """Real LLaVA-OneVision processor resizing every frame to the tiny square size."""
    size = {"height": _LLAVA_IMAGE_SIZE, "width": _LLAVA_IMAGE_SIZE}
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=_tiny_grid_pinpoints()),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        num_image_tokens=(_LLAVA_IMAGE_SIZE // _LLAVA_PATCH_SIZE) ** 2,
        vision_feature_select_strategy="full",
        chat_template=tokenizer.chat_template,
        vision_aspect_ratio="anyres_max_9",
    )


def _qwen2_5_vl_processor(tokenizer: PreTrainedTokenizerFast) -> Qwen2_5_VLProcessor:
    """Real Qwen2.5-VL processor pinning every frame to 56x56 pixels (min = max)."""
    size = {"shortest_edge": _QWEN_FRAME_PIXELS, "longest_edge": _QWEN_FRAME_PIXELS}
    shared = {
        "size": size,
        "patch_size": _QWEN_PATCH_SIZE,
        "merge_size": _QWEN_MERGE_SIZE,
        "temporal_patch_size": _QWEN_TEMPORAL_PATCH,
    }
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**shared),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**shared, cap_pixels_per_frame=False),
        chat_template=tokenizer.chat_template,
    )


def _qwen2_vl_processor(tokenizer: PreTrainedTokenizerFast) -> Qwen2VLProcessor:
    """Real Qwen2-VL processor pinning every frame to 56x56 pixels (min = max)."""
    size = {"shortest_edge": _QWEN_FRAME_PIXELS, "longest_edge": _QWEN_FRAME_PIXELS}
    shared = {
        "size": size,
        "patch_size": _QWEN_PATCH_SIZE,
        "merge_size": _QWEN_MERGE_SIZE,
        "temporal_patch_size": _QWEN_TEMPORAL_PATCH,
    }
    return Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**shared),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**shared, cap_pixels_per_frame=False),
        chat_template=tokenizer.chat_template,
    )


def _qwen3_vl_processor(tokenizer: PreTrainedTokenizerFast) -> Qwen3VLProcessor:
    """Real Qwen3-VL processor; every frame at most 56x56 pixels (4 tokens per frame pair).

    The Qwen3-VL video processor's ``size`` bounds the pixels of the whole clip
    (frames x height x width); ``cap_pixels_per_frame`` with ``max_video_tokens=4``
    caps each frame at 4 merged tokens' worth (56x56), whatever the clip length.
    """
    shared = {
        "patch_size": _QWEN_PATCH_SIZE,
        "merge_size": _QWEN_MERGE_SIZE,
        "temporal_patch_size": _QWEN_TEMPORAL_PATCH,
    }
    frame = {"shortest_edge": _QWEN_FRAME_PIXELS, "longest_edge": _QWEN_FRAME_PIXELS}
    clip = {"shortest_edge": _QWEN_FRAME_PIXELS // 2, "longest_edge": 1024 * _QWEN_FRAME_PIXELS}
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**shared, size=frame),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(**shared, size=clip, cap_pixels_per_frame=True, max_video_tokens=4),
        chat_template=tokenizer.chat_template,
    )


def _videollama3_processor(tokenizer: PreTrainedTokenizerFast) -> VideoLlama3Processor:
    """Real VideoLLaMA3 processor; frames of 48x48 become 56x56 (4 tokens each), compression off.

    The video processor bounds ``longest_edge / n_frames`` pixels per frame (the clip's
    budget is shared by its frames); the budget here keeps every frame of up to 32
    frames at 56x56 or more. ``use_token_compression=False`` keeps every frame's full grid
    (the real processor prunes tokens that barely change from the previous frame).
    """
    shared = {"patch_size": _QWEN_PATCH_SIZE, "merge_size": _QWEN_MERGE_SIZE}
    frame = {"shortest_edge": _QWEN_FRAME_PIXELS, "longest_edge": _QWEN_FRAME_PIXELS}
    clip = {"shortest_edge": _QWEN_FRAME_PIXELS, "longest_edge": 32 * _QWEN_FRAME_PIXELS}
    return VideoLlama3Processor(
        image_processor=VideoLlama3ImageProcessor(**shared, size=frame),
        tokenizer=tokenizer,
        video_processor=VideoLlama3VideoProcessor(**shared, size=clip, use_token_compression=False),
        chat_template=tokenizer.chat_template,
    )


def _video_llava_processor(tokenizer: PreTrainedTokenizerFast) -> VideoLlavaProcessor:
    """Real Video-LLaVA processor resizing/cropping every frame to the tiny size."""
    size = _LLAVA_IMAGE_SIZE
    common = {
        "size": {"shortest_edge": size},
        "crop_size": {"height": size, "width": size},
    }
    return VideoLlavaProcessor(
        image_processor=VideoLlavaImageProcessor(**common),
        video_processor=VideoLlavaVideoProcessor(**common),
        tokenizer=tokenizer,
        patch_size=_LLAVA_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template,
    )


@dataclass(frozen=True)
class _FamilyBuilders:
    """The three family-specific pieces: config, model class and processor."""

    config: Callable[[_TextDims, PreTrainedTokenizerFast], PretrainedConfig]
    model_class: type[PreTrainedModel]
    processor: Callable[[PreTrainedTokenizerFast], ProcessorMixin]


_FAMILIES: dict[str, _FamilyBuilders] = {
    "llava_next_video": _FamilyBuilders(
        _llava_next_video_config,
        LlavaNextVideoForConditionalGeneration,
        functools.partial(llava_next_video_processor, grid_pinpoints=_tiny_grid_pinpoints()),
    ),
    "llava_onevision": _FamilyBuilders(
        _llava_onevision_config,
        LlavaOnevisionForConditionalGeneration,
        _llava_onevision_processor,
    ),
    "qwen2_5_vl": _FamilyBuilders(_qwen2_5_vl_config, Qwen2_5_VLForConditionalGeneration, _qwen2_5_vl_processor),
    "qwen2_vl": _FamilyBuilders(_qwen2_vl_config, Qwen2VLForConditionalGeneration, _qwen2_vl_processor),
    "video_llava": _FamilyBuilders(_video_llava_config, VideoLlavaForConditionalGeneration, _video_llava_processor),
    "internvl": _FamilyBuilders(_internvl_config, InternVLForConditionalGeneration, _internvl_processor),
    "qwen3_vl": _FamilyBuilders(_qwen3_vl_config, Qwen3VLForConditionalGeneration, _qwen3_vl_processor),
    "videollama3": _FamilyBuilders(_videollama3_config, VideoLlama3ForConditionalGeneration, _videollama3_processor),
}


# --------------------------------------------------------------------------- public API
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
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Return (hf_model in eval mode, fp32, on CPU, processor).

    The model is the family's real ``*ForConditionalGeneration`` class with a
    tiny random vision tower and a ``num_layers``-layer text tower using grouped
    query attention (``num_kv_heads`` key/value heads). Weights depend only on
    ``seed`` (and the size arguments), so equal seeds give identical models.
    ``attn_implementation`` ("eager" or "sdpa") applies to text and vision towers.
    The processor is the family's real processor class around
    :func:`build_tiny_tokenizer` (extended with ``vocab_words``); the text
    vocabulary size equals ``len(tokenizer)`` and every image/video/vision
    special-token id in the config is taken from that tokenizer.

    Raises:
        ValueError: for an unknown ``family`` or inconsistent head counts.
    """
    _check_family(family)
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError("hidden_size must be divisible by num_heads, and num_heads by num_kv_heads")
    builders = _FAMILIES[family]
    tokenizer = build_tiny_tokenizer(family, vocab_words)
    dims = _TextDims(num_layers, hidden_size, num_heads, num_kv_heads, vocab_size=len(tokenizer))
    config = builders.config(dims, tokenizer)
    config._attn_implementation = attn_implementation  # propagates to sub-configs
    # Seed inside a forked RNG so building a model leaves global RNG state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builders.model_class(config)
    model = model.to(dtype=torch.float32).eval()
    return model, builders.processor(tokenizer)


def save_tiny_model(family: str, folder: str | Path, **kwargs: object) -> Path:
    """Build a tiny model and ``save_pretrained`` model + processor into ``folder``.

    ``kwargs`` are forwarded to :func:`build_tiny_model`. The folder then loads
    offline with ``AutoModelForImageTextToText.from_pretrained(folder)`` and
    ``AutoProcessor.from_pretrained(folder)``. Returns the folder as a ``Path``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, processor = build_tiny_model(family, **kwargs)  # type: ignore[arg-type]
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def random_video(num_frames: int = 8, height: int = 48, width: int = 48, seed: int = 0) -> np.ndarray:
    """Return a reproducible random RGB video of shape (T, H, W, 3), dtype uint8."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(num_frames, height, width, 3), dtype=np.uint8)


def build_tiny_pllava(
    *,
    seed: int = 0,
    attn_implementation: str = "eager",
    num_layers: int = 2,
    hidden_size: int = 64,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    pooling_shape: tuple[int, int, int] = (8, 2, 2),
) -> tuple[PreTrainedModel, object]:
    """Return (tiny PLLaVA-format model, its processor), see :mod:`model_adapters.pllava.modeling`.

    CLIP tower 32x32 / patch 8 -> a 4x4 grid per frame (CLS dropped), pooled with
    adaptive 3D average pooling to ``pooling_shape`` (8 frames of 2x2 -> 32 ``<image>``
    tokens for ``random_video(8)``); Llama text tower; the LLaVA-NeXT-Video tiny tokenizer
    with a Vicuna template that renders a video item as ``"<image>\\n"``.
    """
    from model_adapters.pllava.modeling import (
        PLLAVA_CHAT_TEMPLATE,
        PllavaForConditionalGeneration,
        PllavaProcessor,
        pllava_config,
    )

    tokenizer = build_tiny_tokenizer("llava_next_video")
    tokenizer.chat_template = PLLAVA_CHAT_TEMPLATE
    dims = _TextDims(num_layers, hidden_size, num_heads, num_kv_heads, vocab_size=len(tokenizer))
    vision = CLIPVisionConfig(
        **_TINY_TOWER,
        image_size=_LLAVA_IMAGE_SIZE,
        patch_size=_LLAVA_PATCH_SIZE,
        projection_dim=_VISION_HIDDEN,
    )
    text = LlamaConfig(**dims.common_kwargs(), **_token_ids(tokenizer), tie_word_embeddings=False)
    config = pllava_config(text, vision, tokenizer.convert_tokens_to_ids("<image>"), pooling_shape)
    config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PllavaForConditionalGeneration(config)
    model = model.to(dtype=torch.float32).eval()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": _LLAVA_IMAGE_SIZE}, crop_size={"height": _LLAVA_IMAGE_SIZE, "width": _LLAVA_IMAGE_SIZE}
    )
    return model, PllavaProcessor(tokenizer, image_processor, pooling_shape, chat_template=PLLAVA_CHAT_TEMPLATE)
