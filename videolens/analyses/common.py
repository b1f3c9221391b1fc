"""What every analysis shares: samples, prompts, answer tokens, results written as they go."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from tqdm.auto import tqdm

from videolens.core.hooked import HookedVideoLLM
from videolens.core.layout import LETTERS
from videolens.core.prompt import PAPER_ANSWER_PREFIX, PAPER_SYSTEM, VideoPrompt
from videolens.data.sample import Sample
from videolens.errors import LayoutError, VideoLensError

SampleMode = Literal["correct", "wrong", "all"]


def as_sample(item: Any) -> Sample | VideoPrompt:
    """Accept a :class:`Sample`, a prepared :class:`VideoPrompt`, or a dict with the same keys."""
    if isinstance(item, (Sample, VideoPrompt)):
        return item
    if isinstance(item, dict):
        known = {k: item[k] for k in ("video", "question", "options", "answer", "task", "id", "meta") if k in item}
        return Sample(**known)
    raise VideoLensError(f"Cannot read a sample from {type(item).__name__}; use videolens.analyses.Sample.")


def prompt_for(model: HookedVideoLLM, sample: Sample | VideoPrompt, **prepare_kwargs: Any) -> VideoPrompt:
    """The paper-format prompt of a sample (a prepared prompt is used as it is)."""
    if isinstance(sample, VideoPrompt):
        if sample.answer is None:
            raise LayoutError("The prompt has no answer; prepare it with answer=... for this analysis.")
        return sample
    if sample.answer is None:
        raise LayoutError(
            f"Sample {sample.id or sample.question!r} has no answer; this analysis needs the true option "
            "(Sample(..., answer=<index, letter or option text>))."
        )
    prepare_kwargs.setdefault("answer_prefix", PAPER_ANSWER_PREFIX)
    prepare_kwargs.setdefault("system", PAPER_SYSTEM)
    return model.prepare(sample.video, sample.question, list(sample.options), answer=sample.answer, **prepare_kwargs)


def option_token_ids(model: HookedVideoLLM, prompt: VideoPrompt) -> list[int]:
    """The token id the model would emit for each option letter right after the prompt.

    Read from the tokenizer on the prompt text followed by the letter, so the id is the
    one that continues this exact text (no guessing between ``"A"`` and ``"▁A"``).
    """
    if not prompt.options:
        raise LayoutError("The prompt has no options to score.")
    tok = model.tokenizer
    base = tok(prompt.text)["input_ids"]
    ids = []
    for letter in LETTERS[: len(prompt.options)]:
        full = tok(prompt.text + letter)["input_ids"]
        if full[: len(base)] != base or len(full) != len(base) + 1:
            raise LayoutError(
                f"The letter {letter!r} merges with the end of the prompt when tokenized, so it is not a "
                "separate next token; end the answer prefix differently (e.g. 'Best option:(')."
            )
        ids.append(full[-1])
    unk = getattr(tok, "unk_token_id", None)
    for k, token_id in enumerate(ids):
        if token_id == unk or ids.index(token_id) != k:
            raise LayoutError(
                f"The option letters {LETTERS[: len(ids)]} do not map to distinct known tokens (letter "
                f"{LETTERS[k]!r} is token {tok.convert_ids_to_tokens(token_id)!r}); this vocabulary cannot score "
                f"{len(ids)} options. Use fewer options."
            )
    return ids


def keep_sample(mode: SampleMode, correct: bool) -> bool:
    if mode not in ("correct", "wrong", "all"):
        raise VideoLensError(f"Unknown sample_mode {mode!r}; use 'correct', 'wrong' or 'all'.")
    return mode == "all" or (mode == "correct") == correct


class ResultWriter:
    """Append result rows to JSONL as they are produced, so a crash loses nothing."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.rows: list[dict[str, Any]] = []
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        self.rows.extend(rows)
        if self.path is not None and rows:
            with self.path.open("a") as fh:
                for row in rows:
                    fh.write(json.dumps(row, default=_jsonable) + "\n")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def iterate(samples: Iterable[Any], desc: str, progress: bool) -> Iterator[tuple[int, Sample | VideoPrompt]]:
    """Enumerate samples with a progress bar."""
    items = list(samples)
    for i, item in enumerate(tqdm(items, desc=desc, disable=not progress)):
        yield i, as_sample(item)


def sample_id(sample: Sample | VideoPrompt, index: int) -> str:
    return str(getattr(sample, "id", None) or index)


def sample_task(sample: Sample | VideoPrompt) -> str:
    return getattr(sample, "task", "default")
