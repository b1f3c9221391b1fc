"""NExT-QA (Xiao et al., 2021), multiple-choice: causal, temporal and descriptive questions.

Layout (the NExT-QA release)::

    <root>/val.csv (or test.csv)          video, question, a0 ... a4, answer (index), qid, type
    <root>/map_vid_vidorID.json           video id -> "<folder>/<VidOR id>" (optional)
    <root>/NExTVideo/<folder>/<VidOR id>.mp4, or flat: <root>/NExTVideo/<video>.mp4

``--data-root`` may also be the CSV file itself (another split); the other paths are then
taken from its folder. The task is the question type: CW, CH (causal), TN, TC, TP
(temporal), DB, DC, DL, DO (descriptive).
"""

from __future__ import annotations

from pathlib import Path

from videolens.data.annotations import AnnotationError, Entry, read_csv, read_json
from videolens.data.registry import Benchmark, register
from videolens.data.sample import Sample

TASKS = ("CH", "CW", "DB", "DC", "DL", "DO", "TC", "TN", "TP")
HOLDS = "video, question, a0..a4, answer (an option index), qid and type"
_SPLITS = ("val.csv", "test.csv")
MAP_FILE = "map_vid_vidorID.json"


def annotation_file(root: Path) -> Path:
    """The CSV a data root names: the file itself, or the first of val.csv, test.csv in the folder."""
    if root.is_file():
        return root
    for name in _SPLITS:
        if (root / name).is_file():
            return root / name
    raise AnnotationError(f"No NExT-QA annotations in {root}: expected {' or '.join(_SPLITS)} there (or pass the CSV).")


def _video_locator(folder: Path):
    """Video id -> path, through the id map when the release has one."""
    mapping = read_json(folder / MAP_FILE) if (folder / MAP_FILE).is_file() else {}
    if not isinstance(mapping, dict):
        raise AnnotationError(f"{folder / MAP_FILE} should map video ids to '<folder>/<VidOR id>'.")

    def locate(video: str) -> Path:
        return folder / "NExTVideo" / f"{mapping.get(video, video)}.mp4"

    return locate


def _sample(entry: Entry, locate) -> Sample:
    options = [entry.text(f"a{k}") for k in range(5)]
    video = entry.text("video")
    return Sample(
        video=locate(video),
        question=entry.text("question"),
        options=options,
        answer=entry.index("answer", len(options)),
        task=entry.text("type"),
        id=f"{video}/{entry.text('qid')}",
        meta={"video": video},
    )


def read(root: Path, tasks: tuple[str, ...] | None) -> list[Sample]:
    path = annotation_file(root)
    locate = _video_locator(path.parent)
    return [_sample(entry, locate) for entry in read_csv(path, HOLDS)]


BENCHMARK = register(
    Benchmark(
        name="nextqa",
        title="NExT-QA",
        tasks=TASKS,
        read=read,
        layout="<root>/val.csv, <root>/map_vid_vidorID.json and <root>/NExTVideo/<folder>/<id>.mp4",
    )
)
