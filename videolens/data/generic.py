"""A generic multiple-choice format for any video QA data: one JSONL line or CSV row per question.

Fields (JSONL keys or CSV columns):

========== ======== ==============================================================
field      needed   meaning
========== ======== ==============================================================
video      yes      a video file or frame folder, relative to the annotation file's folder
question   yes      the question text
options    yes      the option texts: a JSON list (in CSV, a cell holding one, e.g. ``["left", "right"]``)
answer     yes      the true option: its text, its letter (``B``) or its 0-based index
task       no       a task name for grouping results (default ``default``)
id         no       a unique sample id (default ``<task>/<line>``)
start, end no       the clip in seconds; frames are sampled inside it
num_frames no       frames to decode for this sample (default: the run's ``--num-frames``)
fps        no       the frame rate of a frame folder
========== ======== ==============================================================

``--data-root`` is the ``.jsonl`` or ``.csv`` file, or a folder holding ``annotations.jsonl``
or ``annotations.csv``.
"""

from __future__ import annotations

from pathlib import Path

from videolens.data.annotations import AnnotationError, Entry, read_csv, read_jsonl, video_question
from videolens.data.registry import Benchmark, register
from videolens.data.sample import Sample

HOLDS = "video, question, options and answer (task, id, start, end, num_frames, fps optional)"
_NAMES = ("annotations.jsonl", "annotations.csv")


def annotation_file(root: Path) -> Path:
    if root.is_file():
        if root.suffix.lower() not in (".jsonl", ".csv"):
            raise AnnotationError(f"{root} is neither .jsonl nor .csv; the generic format is one of those.")
        return root
    for name in _NAMES:
        if (root / name).is_file():
            return root / name
    raise AnnotationError(f"No {' or '.join(_NAMES)} in {root}; pass the annotation file as --data-root.")


def _frames(entry: Entry) -> int | None:
    if not entry.has("num_frames"):
        return None
    value = str(entry.raw("num_frames")).strip()
    if not value.isdigit() or int(value) < 1:
        raise entry.fail(f"field 'num_frames' should be a whole number of 1 or more; got {value!r}.")
    return int(value)


def _sample(entry: Entry, folder: Path) -> Sample:
    task = entry.text("task") if entry.has("task") else "default"
    start, end = entry.clip(required=False)
    fps = entry.optional_seconds("fps")
    if fps is not None and fps <= 0:
        raise entry.fail("field 'fps' must be above 0.")
    sample_id = entry.text("id") if entry.has("id") else f"{task}/{entry.position}"
    return video_question(
        entry, folder, "options", task=task, id=sample_id, start=start, end=end, num_frames=_frames(entry), fps=fps
    )


def read(root: Path, tasks: tuple[str, ...] | None) -> list[Sample]:
    path = annotation_file(root)
    rows = read_csv(path, HOLDS) if path.suffix.lower() == ".csv" else read_jsonl(path, HOLDS)
    return [_sample(entry, path.parent) for entry in rows]


BENCHMARK = register(
    Benchmark(
        name="generic",
        title="Generic JSONL/CSV",
        tasks=(),
        read=read,
        layout="a .jsonl or .csv file with video, question, options, answer[, task, id, start, end] per line",
    )
)
