"""Video-MME (Fu et al., 2025): 900 videos from 11 s to 1 h, twelve task types.

Layout (the Hugging Face dataset ``lmms-lab/Video-MME`` as downloaded)::

    <root>/videomme/test-00000-of-00001.parquet    the questions (or any *.parquet / *.json there or in <root>)
    <root>/data/<videoID>.mp4                       the videos (.MP4 and .mkv are found too)

Each row has ``videoID``, ``question_id``, ``task_type``, ``duration`` (short, medium,
long), ``question``, ``options`` written ``"A. ..."`` and ``answer`` (the letter). The
paper prompts Video-MME with options written ``A. text`` and the answer prefix
``Best option:`` (no parenthesis), and reads the option letter after it; it plots Action
Recognition (id 1) and Spatial Perception (id 8). Subtitles are not used.
"""

from __future__ import annotations

from pathlib import Path

from videolens.data.annotations import (
    AnnotationError,
    Entry,
    read_json_entries,
    read_jsonl,
    read_parquet,
    strip_letters,
)
from videolens.data.registry import Benchmark, register
from videolens.data.sample import Sample

TASKS = (
    "Action Reasoning",
    "Action Recognition",
    "Attribute Perception",
    "Counting Problem",
    "Information Synopsis",
    "OCR Problems",
    "Object Reasoning",
    "Object Recognition",
    "Spatial Perception",
    "Spatial Reasoning",
    "Temporal Perception",
    "Temporal Reasoning",
)
#: The answer prefix of the paper's Video-MME prompts.
ANSWER_PREFIX = "Best option:"
#: Options are written as the benchmark (and the paper's Video-MME prompts) write them: ``A. text``.
OPTION_STYLE = "A."
HOLDS = "videoID, question_id, task_type, question, options ('A. ...') and answer (a letter)"
_ANNOTATIONS = ("videomme/*.parquet", "*.parquet", "videomme/*.json", "*.json", "videomme/*.jsonl", "*.jsonl")
_VIDEO_SUFFIXES = (".mp4", ".MP4", ".mkv")


def annotation_files(root: Path) -> list[Path]:
    """The annotation files of a local copy: the first pattern of :data:`_ANNOTATIONS` that matches."""
    for pattern in _ANNOTATIONS:
        found = sorted(root.glob(pattern))
        if found:
            return found
    raise AnnotationError(
        f"No Video-MME annotations in {root}: expected videomme/test-00000-of-00001.parquet (or a .parquet/.json "
        "file with the questions) there."
    )


def _entries(path: Path) -> list[Entry]:
    if path.suffix == ".parquet":
        return read_parquet(path, HOLDS)
    return read_jsonl(path, HOLDS) if path.suffix == ".jsonl" else read_json_entries(path, HOLDS)


def _video(root: Path, video_id: str) -> Path:
    candidates = [root / "data" / f"{video_id}{suffix}" for suffix in _VIDEO_SUFFIXES]
    return next((c for c in candidates if c.exists()), candidates[0])


def read(root: Path, tasks: tuple[str, ...] | None) -> list[Sample]:
    out = []
    for path in annotation_files(root):
        for entry in _entries(path):
            written = entry.options("options")
            options = strip_letters(written) or written
            out.append(
                Sample(
                    video=_video(root, entry.text("videoID")),
                    question=entry.text("question"),
                    options=options,
                    answer=entry.answer_letter("answer", options),
                    task=entry.text("task_type"),
                    id=entry.text("question_id"),
                    meta={key: entry.fields.get(key) for key in ("duration", "domain", "sub_category", "videoID")},
                    answer_prefix=ANSWER_PREFIX,
                    option_style=OPTION_STYLE,
                )
            )
    return out


BENCHMARK = register(
    Benchmark(
        name="videomme",
        title="Video-MME",
        tasks=TASKS,
        read=read,
        layout="<root>/videomme/test-00000-of-00001.parquet and <root>/data/<videoID>.mp4",
        paper_tasks=("Action Recognition", "Spatial Perception"),
        note=(
            "Options are shown as 'A. text' lines and the answer prefix is 'Best option:', as in the paper's "
            "Video-MME prompts."
        ),
    )
)
