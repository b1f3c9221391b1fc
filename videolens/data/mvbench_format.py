"""The MVBench annotation format, shared by MVBench and TVBench (which follows it).

A local copy holds one JSON list per task in ``<root>/json/`` and the videos under
``<root>/video/<folder>/``. Each entry has ``video`` (a file name in the task's folder),
``question``, ``candidates`` (the option texts) and ``answer`` (the true candidate's
text); tasks whose questions are about part of a video also give ``start`` and ``end``
in seconds, and the paper samples its frames inside them (Sec. 4). MVBench's episodic
reasoning videos are folders of JPEG frames at 3 fps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videolens.data.annotations import Entry, read_json_entries, task_files, video_question
from videolens.data.registry import Benchmark, register
from videolens.data.sample import Sample

HOLDS = "video, question, candidates and answer (and start/end in seconds for bounded tasks)"


@dataclass(frozen=True)
class TaskSource:
    """Where one task's annotations and videos are in a local copy.

    Attributes:
        json: the annotation file in ``<root>/json/``.
        videos: the video folder under ``<root>/video/``.
        bounded: entries give the ``start``/``end`` seconds the question is about.
        frame_rate: the videos are folders of frames at this rate (None: video files).
    """

    json: str
    videos: str
    bounded: bool = False
    frame_rate: float | None = None


def read_mvbench_style(
    title: str, root: Path, table: Mapping[str, TaskSource], tasks: tuple[str, ...] | None
) -> list[Sample]:
    """The samples of the selected tasks (every task with a file when None), task by task in file order."""
    files = task_files(title, {task: root / "json" / source.json for task, source in table.items()}, tasks)
    out = []
    for task, path in files.items():
        source = table[task]
        for entry in read_json_entries(path, HOLDS):
            out.append(_sample(entry, task, source, root / "video" / source.videos))
    return out


def _sample(entry: Entry, task: str, source: TaskSource, folder: Path) -> Sample:
    start, end = entry.clip(required=True) if source.bounded else (None, None)
    return video_question(
        entry,
        folder,
        "candidates",
        task=task,
        id=f"{task}/{entry.position}",
        start=start,
        end=end,
        fps=source.frame_rate,
    )


def register_mvbench_style(
    name: str, title: str, table: Mapping[str, TaskSource], layout: str, **info: Any
) -> Benchmark:
    """Register a benchmark in this format under ``name``; ``info`` is the rest of its :class:`Benchmark`."""

    def read(root: Path, tasks: tuple[str, ...] | None) -> list[Sample]:
        return read_mvbench_style(title, root, table, tasks)

    return register(Benchmark(name=name, title=title, tasks=tuple(table), read=read, layout=layout, **info))
