"""The toy VideoLLM: a small LLaVA-NeXT-Video trained from scratch on synthetic videos.

This module builds its untrained parts (word-level tokenizer, config, processor) so that
the training script (``scripts/train_toy_model.py``) and the tests share one definition.
The trained model ships in the package as ``videolens/toy-moving-shapes`` (see
:mod:`videolens.models`).

Shape: a CLIP-style tower (2 layers, width 96) on 32x32 frames with 4-pixel patches
(8x8 patches, average-pooled 2x to 16 tokens per frame; 8 frames give 128 video tokens)
and a Llama language model (8 layers, width 128, 4 heads). Prompts use the paper's
multiple-choice format with its system prompt.
"""

from __future__ import annotations

import re

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextVideoConfig,
    LlavaNextVideoForConditionalGeneration,
    LlavaNextVideoProcessor,
    PreTrainedTokenizerFast,
)

from videolens.core.layout import LETTERS
from videolens.core.prompt import PAPER_ANSWER_PREFIX, PAPER_INSTRUCTION, PAPER_SYSTEM
from videolens.data.synthetic import vocabulary
from videolens.testing import VICUNA_TEMPLATE as _VICUNA_TEMPLATE
from videolens.testing import llava_next_video_processor

TOY_MODEL_NAME = "videolens/toy-moving-shapes"
FRAME_SIZE = 32
PATCH_SIZE = 4
NUM_FRAMES = 8
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "<video>"]
_WORD = re.compile(r"\w+|[^\w\s]")


def toy_words() -> list[str]:
    """The word-level vocabulary: prompt template, system prompt, questions, options, letters."""
    text = " ".join([PAPER_SYSTEM, PAPER_INSTRUCTION, PAPER_ANSWER_PREFIX, "USER: ASSISTANT: Question: Options:"])
    words = set(_WORD.findall(text)) | set(vocabulary()) | set(LETTERS[:4]) | set("()?.,:")
    return sorted(words)


def build_toy_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer (offsets supported) with the Vicuna-style chat template."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for word in toy_words():
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    bos = vocab["<s>"]
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
        chat_template=_VICUNA_TEMPLATE,
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    return fast


def build_toy_config(tokenizer: PreTrainedTokenizerFast) -> LlavaNextVideoConfig:
    """The toy model's architecture."""
    vision = CLIPVisionConfig(
        hidden_size=96,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=FRAME_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=96,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=8,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    s = FRAME_SIZE
    return LlavaNextVideoConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[s, s]],
        spatial_pool_mode="average",
        spatial_pool_stride=2,
    )


def build_toy_processor(tokenizer: PreTrainedTokenizerFast) -> LlavaNextVideoProcessor:
    """LLaVA-NeXT-Video's own processor, resizing frames to 32x32."""
    return llava_next_video_processor(tokenizer, FRAME_SIZE, PATCH_SIZE)


def build_untrained_toy() -> tuple[LlavaNextVideoForConditionalGeneration, LlavaNextVideoProcessor]:
    """A randomly initialised toy model and its processor (the starting point of training)."""
    tokenizer = build_toy_tokenizer()
    model = LlavaNextVideoForConditionalGeneration(build_toy_config(tokenizer))
    return model, build_toy_processor(tokenizer)
