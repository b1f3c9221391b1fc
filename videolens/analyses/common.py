"""What every analysis shares: samples, prompts, answer tokens, results written as they go."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from tqdm.auto import tqdm

from videolens.analyses.correctness import AccuracyCounter
from videolens.core.hooked import HookedVideoLLM
from videolens.core.layout import LETTERS
from videolens.core.prompt import PAPER_ANSWER_PREFIX, PAPER_SYSTEM, VideoPrompt
from videolens.data.sample import Sample
from videolens.errors import InputError, LayoutError, StateError, VideoLensError
from videolens.runs.records import jsonable

SampleMode = Literal["correct", "wrong", "all"]


_SAMPLE_FIELDS = tuple(f.name for f in fields(Sample))


def as_sample(item: Any) -> Sample | VideoPrompt:
    """Accept a :class:`Sample`, a prepared :class:`VideoPrompt`, or a dict with the same keys."""
    if isinstance(item, (Sample, VideoPrompt)):
        return item
    if isinstance(item, dict):
        known = {k: item[k] for k in _SAMPLE_FIELDS if k in item}
        return Sample(**known)
    raise VideoLensError(f"Cannot read a sample from {type(item).__name__}; use videolens.analyses.Sample.")


def prompt_for(
    model: HookedVideoLLM, sample: Sample | VideoPrompt, *, needs_answer: bool = True, **prepare_kwargs: Any
) -> VideoPrompt:
    """The paper-format prompt of a sample (a prepared prompt is used as it is).

    A sample whose video is still a path is decoded here; its own answer prefix (e.g.
    Video-MME's ``"Best option:"``) and option style (Video-MME's ``A. text``) are used unless
    ``answer_prefix=`` / ``option_style=`` are given. ``needs_answer=False`` for an analysis
    that reads the prompt alone (the logit lens): a sample without a true option is then prepared too.
    """
    if isinstance(sample, VideoPrompt):
        if sample.answer is None and needs_answer:
            raise LayoutError("The prompt has no answer; prepare it with answer=... for this analysis.")
        return sample
    if sample.answer is None and needs_answer:
        raise LayoutError(
            f"Sample {sample.id or sample.question!r} has no answer; this analysis needs the true option "
            "(Sample(..., answer=<index, letter or option text>))."
        )
    sample = sample.decoded()
    prepare_kwargs.setdefault("answer_prefix", sample.answer_prefix or PAPER_ANSWER_PREFIX)
    prepare_kwargs.setdefault("system", PAPER_SYSTEM)
    if sample.option_style is not None:
        prepare_kwargs.setdefault("option_style", sample.option_style)
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


class _RecordedCounter(AccuracyCounter):
    """An :class:`AccuracyCounter` that also files each sample's clean answer with its record."""

    def __init__(self, writer: ResultWriter) -> None:
        super().__init__()
        self._writer = writer

    def add(self, correct: bool, analysed: bool) -> None:
        super().add(correct, analysed)
        self._writer.note(correct=bool(correct), analysed=bool(analysed))


class ResultWriter:
    """Where an analysis' rows go, one sample at a time.

    ``out`` may be:

    - ``None``: rows are kept in memory only;
    - a path: a JSON-lines file of rows, started afresh, each sample's rows appended and
      flushed when the sample is done;
    - a :class:`~videolens.runs.Run`: table ``table`` of the run, one crash-safe record per
      sample in this process' shard; samples already recorded (an interrupted run resumed)
      or owned by another process (``torch.distributed``) are skipped by :func:`iterate`,
      and :meth:`frame` returns every row of this process' samples, old and new.

    Analyses call :meth:`add` for a sample's rows inside :func:`iterate`, which opens and
    closes each sample; ``counter`` counts clean answers (kept with the records, so a
    resumed run's ``base_accuracy`` still covers every sample).
    """

    def __init__(self, out: Any = None, table: str = "results") -> None:
        from videolens.runs.run import Run

        self.rows: list[dict[str, Any]] = []
        self.path: Path | None = None
        self.table = out.table(table) if isinstance(out, Run) else None
        self._current: tuple[int, str, str] | None = None
        self._pending: list[dict[str, Any]] = []
        self._info: dict[str, Any] = {}
        self.counter: AccuracyCounter = _RecordedCounter(self)
        if self.table is not None:
            for record in self.table.mine():
                info = record.get("info") or {}
                if "correct" in info:
                    AccuracyCounter.add(self.counter, info["correct"], info.get("analysed", True))
        elif out is not None:
            self.path = Path(out)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def wants(self, index: int, key: str) -> bool:
        """Whether sample ``index`` (id ``key``) still has to be computed by this process."""
        return self.table is None or self.table.wants(index, key)

    def begin(self, index: int, key: str, task: str) -> None:
        self._current, self._pending, self._info = (index, key, task), [], {}

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rows of the current sample (kept until the sample is done)."""
        rows = list(rows)
        if self._current is None:  # outside iterate(): write at once
            self._write(rows, None)
        else:
            self._pending.extend(rows)

    def note(self, **info: Any) -> None:
        """Facts about the current sample to keep with its record (e.g. whether the clean answer is right)."""
        self._info.update(info)

    def commit(self) -> None:
        """The current sample is done: write its rows as one record."""
        if self._current is not None:
            self._write(self._pending, self._current)
        self._current, self._pending, self._info = None, [], {}

    def _write(self, rows: list[dict[str, Any]], current: tuple[int, str, str] | None) -> None:
        if self.table is not None:
            if current is None:
                raise StateError("Rows written to a run must come from inside iterate(samples, ..., writer=writer).")
            index, key, task = current
            self.table.append({"key": key, "index": index, "task": task, "rows": rows, "info": self._info})
            return
        self.rows.extend(rows)
        if self.path is not None and rows:
            with self.path.open("a") as fh:
                fh.write("".join(json.dumps(row, default=jsonable) + "\n" for row in rows))
                fh.flush()
                os.fsync(fh.fileno())

    def frame(self) -> pd.DataFrame:
        """The rows so far (for a run: of every sample this process owns, resumed ones included)."""
        if self.table is None:
            return pd.DataFrame(self.rows)
        df = self.table.run.frame(self.table.name, self.table.mine())
        df.attrs.clear()  # the analysis sets its own attrs from ``counter``
        return df


def iterate(
    samples: Iterable[Any], desc: str, progress: bool, writer: ResultWriter | None = None
) -> Iterator[tuple[int, Sample | VideoPrompt]]:
    """Enumerate samples with a progress bar (samples, rate, time left), decoding videos ahead in threads.

    With a ``writer``, samples it already holds (or that another process owns) are
    skipped, and each sample is committed to it when the loop body finishes; a sample
    whose body raised is not committed, so it is computed again on resume.
    """
    from videolens.data.prefetch import prefetch

    items = [as_sample(item) for item in samples]
    keys = [sample_id(item, i) for i, item in enumerate(items)]
    if writer is not None and writer.table is not None:
        check_unique_ids(keys)
    todo = [i for i in range(len(items)) if writer is None or writer.wants(i, keys[i])]
    skipped = len(items) - len(todo)
    bar = tqdm(total=len(todo), desc=desc, unit="sample", disable=not progress, dynamic_ncols=True)
    if skipped:
        bar.set_postfix_str(f"{skipped} already done or on other ranks", refresh=False)
    try:
        for index, item in prefetch(todo, lambda i: (i, _decoded(items[i]))):
            if writer is not None:
                writer.begin(index, keys[index], sample_task(item))
            yield index, item
            if writer is not None:
                writer.commit()
            bar.update()
    finally:
        bar.close()


def _decoded(item: Sample | VideoPrompt) -> Sample | VideoPrompt:
    return item.decoded() if isinstance(item, Sample) else item


def check_unique_ids(keys: list[str]) -> None:
    """Refuse two samples with one id (a run keys its records by sample id)."""
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise InputError(
                f"Two samples have the id {key!r}; a run needs unique sample ids to resume. Set Sample.id."
            )
        seen.add(key)


def sample_id(sample: Sample | VideoPrompt, index: int) -> str:
    return str(getattr(sample, "id", None) or index)


def sample_task(sample: Sample | VideoPrompt) -> str:
    return getattr(sample, "task", "default")
