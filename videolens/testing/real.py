"""Tiny random models around the real tokenizers and chat templates of ``$VIDEOLENS_REAL_INPUTS``.

The conformance tests on real inputs (``tests/test_real_inputs.py``) run videolens on the
tokenizers and chat templates real checkpoints ship, which the tiny BPE of
:mod:`videolens.testing.tokenizer` does not imitate (SentencePiece's byte fallback and
legacy prefix space, byte-level BPE's merged ``".\\n"``). A model here keeps the
checkpoint's token ids and vocabulary size; the rest is the family's tiny test model
(its ``TinySpec`` config and processor, random weights, a tiny text tower).

The real files are never part of the project: they are read from the folder named by
``$VIDEOLENS_REAL_INPUTS`` (default ``<repo>/../shared/real-inputs``).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from videolens.testing.build import tiny_adapter, tiny_spec
from videolens.testing.sizes import TextDims

if TYPE_CHECKING:
    from videolens.core.hooked import HookedVideoLLM

__all__ = ["REAL_TOKENS", "RealTokens", "build_real_model", "real_inputs", "real_template", "real_tokenizer"]

#: The environment variable naming the folder of real inputs.
REAL_INPUTS_ENV = "VIDEOLENS_REAL_INPUTS"
#: Qwen's first added token: the byte-level BPE proper has 151,643 tokens.
_QWEN_BPE_SIZE = 151643


def real_inputs() -> Path:
    """Where the real inputs are: ``$VIDEOLENS_REAL_INPUTS``, else ``<repo>/../shared/real-inputs``."""
    default = Path(__file__).resolve().parents[2].parent / "shared" / "real-inputs"
    return Path(os.environ.get(REAL_INPUTS_ENV) or default)


def real_template(name: str) -> str:
    """A real chat template: ``templates/{name}.jinja``, or a checkpoint folder's ``chat_template.jinja``."""
    root = real_inputs()
    path = root / "templates" / f"{name}.jinja"
    return (path if path.is_file() else root / name / "chat_template.jinja").read_text()


@dataclass(frozen=True)
class RealTokens:
    """A checkpoint's tokenizer, made from a real one as the checkpoint made it.

    Attributes:
        base: ``"llama"`` (the Llama-2 SentencePiece tokenizer) or ``"qwen"`` (Qwen's byte-level BPE).
        added: special tokens the checkpoint appends, in id order.
        vocab_size: rows of the checkpoint's embedding (at least the tokenizer's length).
        qwen_added: for ``"qwen"``, how many of Qwen3's added tokens (ids from 151,643) the
            checkpoint's base tokenizer has (Qwen2's LLM tokenizer: 3); None: all 26.
        pad: the pad token (None: the base tokenizer's).
        media: ``image_token`` / ``video_token`` attributes the processors read.
    """

    base: str
    added: tuple[str, ...]
    vocab_size: int
    qwen_added: int | None = None
    pad: str | None = None
    media: tuple[tuple[str, str], ...] = ()


_LLAMA_MEDIA = (("image_token", "<image>"), ("video_token", "<video>"))
#: Each family's checkpoint tokenizer (ids and vocabulary sizes from the llava-hf / Qwen configs).
REAL_TOKENS: dict[str, RealTokens] = {
    "llava_next_video": RealTokens("llama", ("<video>", "<image>"), 32064, pad="<unk>", media=_LLAMA_MEDIA),
    "video_llava": RealTokens("llama", ("<image>", "<video>"), 32064, pad="<unk>", media=_LLAMA_MEDIA),
    "pllava": RealTokens("llama", ("<image>",), 32064, pad="<unk>", media=_LLAMA_MEDIA[:1]),
    "llava_onevision": RealTokens("qwen", ("<image>", "<video>"), 152000, qwen_added=3, media=_LLAMA_MEDIA),
    "qwen2_vl": RealTokens("qwen", (), 152064),
    "qwen2_5_vl": RealTokens("qwen", (), 152064),
    "qwen3_vl": RealTokens("qwen", (), 151936),
}


@functools.lru_cache(maxsize=4)
def _qwen_json(n_added: int | None) -> str:
    """Qwen3's ``tokenizer.json`` keeping only its first ``n_added`` added tokens (None: all)."""
    spec = json.loads((real_inputs() / "qwen3-tokenizer" / "tokenizer.json").read_text())
    if n_added is not None:
        spec["added_tokens"] = [tok for tok in spec["added_tokens"] if tok["id"] < _QWEN_BPE_SIZE + n_added]
    return json.dumps(spec)


def real_tokenizer(tokens: RealTokens, chat_template: str | None = None) -> Any:
    """The checkpoint's tokenizer: the real base tokenizer plus ``tokens.added``, with ``chat_template``."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, Qwen2Tokenizer

    roles = {"pad_token": tokens.pad} if tokens.pad else {}
    if tokens.base == "llama":
        tokenizer = AutoTokenizer.from_pretrained(real_inputs() / "llama2-tokenizer", padding_side="left", **roles)
    else:
        backend = Tokenizer.from_str(_qwen_json(tokens.qwen_added))
        tokenizer = Qwen2Tokenizer(
            tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", errors="replace", **roles
        )
    tokenizer.add_tokens(list(tokens.added), special_tokens=True)
    for name, token in tokens.media:
        setattr(tokenizer, name, token)
    tokenizer.chat_template = chat_template
    return tokenizer


def build_real_model(
    family: str,
    chat_template: str | None = None,
    *,
    num_layers: int = 2,
    hidden_size: int = 16,
    num_heads: int = 2,
    num_kv_heads: int = 1,
    seed: int = 0,
) -> HookedVideoLLM:
    """``family``'s tiny random model (eager attention, fp32) around its checkpoint's real tokenizer.

    The config keeps the checkpoint's media token ids (read from the tokenizer) and its
    vocabulary size (:data:`REAL_TOKENS`); the processor is the family's tiny one around that
    tokenizer, with ``chat_template`` (None: the family's tiny template).
    """
    from videolens.core.hooked import HookedVideoLLM

    tokens = REAL_TOKENS[family]
    spec = tiny_spec(family)
    tokenizer = real_tokenizer(tokens, chat_template or spec.tokenizer.chat_template)
    dims = TextDims(num_layers, hidden_size, num_heads, num_kv_heads, vocab_size=tokens.vocab_size)
    config = spec.config(dims, tokenizer)
    config._attn_implementation = "eager"
    adapter = tiny_adapter(family)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        hf_model = adapter().model_class(adapter.architectures[0])(config)
    return HookedVideoLLM.from_hf(hf_model.to(torch.float32).eval(), spec.processor(tokenizer))
