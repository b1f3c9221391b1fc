"""Reading benchmark annotation files, with errors that name the file, the sample and the fix.

Every benchmark loader reads its JSON, JSONL, CSV or parquet files through these helpers
and takes each field through :class:`Entry`, so a malformed file is reported the same way
everywhere: which file, which entry, which field, and what that benchmark's entries hold.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import string
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from videolens.data.sample import Sample
from videolens.errors import InputError, LayoutError, VideoDecodeError

LETTERS = string.ascii_uppercase  # the option letters, as the prompt builder writes them


class AnnotationError(InputError):
    """An annotation file that is missing or does not hold its benchmark's format."""


class MissingVideoError(VideoDecodeError):
    """A sample's video file is not where its benchmark's layout puts it."""


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file; otherwise an :class:`AnnotationError` saying what belongs there."""
    if not path.is_file():
        raise AnnotationError(f"{what} not found: {path}. Check --data-root (see docs/datasets.md for the layout).")
    return path


def read_text(path: Path) -> str:
    """A text file's content; an :class:`AnnotationError` if it is not UTF-8 or cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark (Excel's CSVs) is not text
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    except OSError as exc:
        raise AnnotationError(f"Cannot read {path}: {exc.strerror or exc}.") from exc


def read_json(path: Path) -> Any:
    """The parsed content of a JSON file."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).") from exc


def read_jsonl(path: Path, holds: str) -> list[Entry]:
    """One entry per non-empty line of a JSON-lines file."""
    out = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnnotationError(f"{path}, line {number}: not valid JSON ({exc.msg}).") from exc
        out.append(Entry(value, Path(path), f"line {number}", holds, position=str(len(out))))
    return out


def read_csv(path: Path, holds: str) -> list[Entry]:
    """One entry per row of a CSV file with a header line; every value is a string."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    if not reader.fieldnames:
        raise AnnotationError(f"{path} is empty; expected a header line naming the columns.")
    rows = list(reader)
    out = []
    for k, row in enumerate(rows):
        if None in row:
            raise AnnotationError(f"{path}, row {k + 1}: more values than the header has columns.")
        out.append(Entry(row, Path(path), f"row {k + 1}", holds, position=str(k)))
    return out


def read_parquet(path: Path, holds: str) -> list[Entry]:
    """One entry per row of a parquet file (pandas' reader; array cells become lists)."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except ImportError as exc:
        raise AnnotationError(f"Reading {path} needs pyarrow: pip install 'videolens[benchmarks]'.") from exc
    except Exception as exc:  # the engines raise their own error types for damaged files
        raise AnnotationError(f"{path} is not a readable parquet file ({type(exc).__name__}: {exc}).") from exc
    rows = frame.to_dict(orient="records")
    return [
        Entry({key: _plain(v) for key, v in row.items()}, Path(path), f"row {k + 1}", holds, position=str(k))
        for k, row in enumerate(rows)
    ]


def _plain(value: Any) -> Any:
    """numpy arrays and scalars from parquet as Python lists and scalars."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def read_json_entries(path: Path, holds: str) -> list[Entry]:
    """The entries of a JSON file holding a list of objects (``entry k``) or an object of them (``key 'k'``)."""
    data = read_json(path)
    if isinstance(data, list):
        return [Entry(row, Path(path), f"entry {k}", holds, position=str(k)) for k, row in enumerate(data)]
    if isinstance(data, dict):
        return [Entry(row, Path(path), f"key {k!r}", holds, position=str(k)) for k, row in data.items()]
    raise AnnotationError(
        f"{path} should hold a JSON list (or object) of entries with {holds}; it holds a {type(data).__name__}."
    )


class Entry:
    """One annotation entry and where it came from, read field by field.

    Args:
        fields: the entry's fields.
        source: the annotation file.
        where: how to find the entry in the file (``"entry 12"``, ``"line 40"``, ``"key '0'"``).
        holds: what an entry of this benchmark holds, for the error messages.
        position: the entry's key in its file (its index in a list, its key in an object).
    """

    def __init__(self, fields: Any, source: Path, where: str, holds: str, position: str = "") -> None:
        if not isinstance(fields, Mapping):
            raise AnnotationError(f"{source}, {where}: expected an object with {holds}; got {type(fields).__name__}.")
        self.fields, self.source, self.where, self.holds, self.position = fields, source, where, holds, position

    def fail(self, problem: str) -> AnnotationError:
        return AnnotationError(f"{self.source}, {self.where}: {problem}")

    def has(self, key: str) -> bool:
        return self.fields.get(key) not in (None, "")

    def raw(self, key: str) -> Any:
        if not self.has(key):
            raise self.fail(f"field {key!r} is missing; entries here hold {self.holds}.")
        return self.fields[key]

    def text(self, key: str) -> str:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(f"field {key!r} should be text; got {type(value).__name__}.")
        return str(value)

    def seconds(self, key: str) -> float:
        """A time in seconds (a number, or a string holding one)."""
        value = self.raw(key)
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise self.fail(f"field {key!r} should be a time in seconds; got {value!r}.") from None
        if not math.isfinite(out) or out < 0:
            raise self.fail(f"field {key!r} should be a finite time of 0 s or more; got {value!r}.")
        return out

    def optional_seconds(self, key: str) -> float | None:
        return self.seconds(key) if self.has(key) else None

    def index(self, key: str, n_options: int) -> int:
        """A 0-based option index."""
        value = self.raw(key)
        try:
            out = int(value)
        except (TypeError, ValueError):
            raise self.fail(f"field {key!r} should be an option index; got {value!r}.") from None
        if isinstance(value, bool) or str(out) != str(value).strip() or not 0 <= out < n_options:
            raise self.fail(
                f"field {key!r} = {value!r} is not an index of the {n_options} options (0..{n_options - 1})."
            )
        return out

    def options(self, key: str) -> list[str]:
        """A list of option texts (JSON arrays in CSV cells are parsed)."""
        value = self.raw(key)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise self.fail(
                    f'field {key!r} should be a list of options, e.g. ["left", "right"]; got {value!r}.'
                ) from None
        if not isinstance(value, Sequence) or isinstance(value, str) or not value:
            raise self.fail(f"field {key!r} should be a non-empty list of options; got {value!r}.")
        return [self._option_text(key, k, o) for k, o in enumerate(value)]

    def _option_text(self, key: str, k: int, option: Any) -> str:
        if isinstance(option, bool) or not isinstance(option, (str, int, float)) or not str(option).strip():
            raise self.fail(f"option {k} of {key!r} should be non-empty text; got {option!r}.")
        return str(option)

    def clip(self, required: bool) -> tuple[float | None, float | None]:
        """The ``start`` and ``end`` seconds (both needed when ``required``); end must come after start."""
        read = self.seconds if required else self.optional_seconds
        start, end = read("start"), read("end")
        if start is not None and end is not None and end <= start:
            raise self.fail(f"end ({end} s) must come after start ({start} s).")
        return start, end

    def answer_letter(self, key: str, options: Sequence[str]) -> int:
        """The true option's index from a letter only (a benchmark whose answers are always letters:
        an option whose text is a letter must not be read as the answer)."""
        value = self.raw(key)
        letter = value.strip().upper() if isinstance(value, str) else ""
        if len(letter) != 1 or letter not in LETTERS[: len(options)]:
            raise self.fail(f"the answer {value!r} is not one of the option letters {LETTERS[: len(options)]}")
        return LETTERS.index(letter)

    def answer(self, key: str, options: Sequence[str]) -> int:
        """The true option's index from its text, its letter or a 0-based index (in that order)."""
        value = self.raw(key)
        try:
            return answer_index(options, value)
        except LayoutError as exc:
            raise self.fail(str(exc)) from None


def answer_index(options: Sequence[str], answer: Any) -> int:
    """The true option's index: an option's text first, then a letter, then a 0-based index.

    ``options=["1", "2", "3"]`` with ``answer="2"`` is option B (the text "2"); a digit is
    read as an index only when no option has that text, as the command line reads ``--answer``.
    """
    from videolens.core.prompt import resolve_answer

    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    try:
        index = resolve_answer(options, answer)
    except LayoutError:
        if isinstance(answer, str) and answer.strip().isdigit():
            index = resolve_answer(options, int(answer.strip()))
        else:
            raise
    assert index is not None
    return index


def strip_letters(options: Sequence[str]) -> list[str] | None:
    """Options written ``"A. text"``, ``"B. text"``, ... as their texts; None if they are not all so."""
    out = []
    for k, option in enumerate(options):
        head = f"{LETTERS[k]}."
        if not option.startswith(head):
            return None
        out.append(option[len(head) :].strip())
    return out


#: Text the model's processor would read as a video/image placeholder or a control token.
_PLACEHOLDER = re.compile(r"<\|[^|<>]{1,40}\|>|</?(?:video|image|img|IMG_CONTEXT)>", re.IGNORECASE)


def find_placeholder(text: str) -> str | None:
    """The first video/image placeholder or ``<|...|>`` control token in ``text``, if any.

    Models expand ``<video>`` (or ``<|video_pad|>``, ``<image>``, ...) into video tokens; in a
    question it would splice in a second video, so such text is refused before anything loads.
    """
    found = _PLACEHOLDER.search(text)
    return found.group(0) if found else None


def check_sample_text(sample_id: str, question: str, options: Sequence[str]) -> None:
    """Refuse a question or option holding a placeholder, and options the prompt builder would refuse."""
    from videolens.core.prompt import check_options

    if len(options) > len(LETTERS):
        raise AnnotationError(
            f"Sample {sample_id!r} has {len(options)} options; a prompt letters them A-Z, so at most "
            f"{len(LETTERS)}. Drop the extra options or split the question."
        )
    for name, text in [("question", question), *((f"option {LETTERS[k]}", o) for k, o in enumerate(options))]:
        token = find_placeholder(text)
        if token:
            raise AnnotationError(
                f"Sample {sample_id!r}: the {name} contains {token!r}, a model placeholder or control token; "
                "the video is placed by videolens, so remove it from the text."
            )
    try:
        check_options(list(options))
    except LayoutError as exc:
        raise AnnotationError(f"Sample {sample_id!r}: {exc}") from None


def task_files(title: str, files: Mapping[str, Path], requested: Sequence[str] | None) -> dict[str, Path]:
    """The annotation file of each task to read.

    Requested tasks must have their file. With no tasks requested, every task whose file is
    there is read and the absent ones are named in a warning (a partial download); with no
    file at all, the layout is wrong and that is an error.
    """
    if requested:
        return {task: require_file(files[task], f"{title} annotations of task {task!r}") for task in requested}
    present = {task: path for task, path in files.items() if path.is_file()}
    if not present:
        first = next(iter(files.values()))
        raise AnnotationError(f"No {title} annotations found: expected files like {first}. Check --data-root.")
    absent = [task for task in files if task not in present]
    if absent:
        warnings.warn(f"{title}: no annotations for {', '.join(absent)}; reading the other tasks.", stacklevel=3)
    return present


def video_question(entry: Entry, folder: Path, options_key: str, **fields: Any) -> Sample:
    """The sample of an entry whose ``video`` (a name in ``folder``), ``question`` and ``answer`` fields
    are read as such, with its options under ``options_key``; ``fields`` fill in the rest of the sample."""
    options = entry.options(options_key)
    fields.setdefault("meta", {"annotation": entry.source.name, "entry": entry.where})
    return Sample(
        video=folder / entry.text("video"),
        question=entry.text("question"),
        options=options,
        answer=entry.answer("answer", options),
        **fields,
    )
