"""LongVideoBench (Wu et al., 2024): referring reasoning over videos up to an hour long.

Layout (the Hugging Face dataset ``longvideobench/LongVideoBench`` as downloaded)::

    <root>/lvb_val.json              the validation questions (the split the paper uses)
    <root>/videos/<video_path>       the videos

Each entry has ``video_path``, ``question``, ``candidates`` (or ``option0`` ... ``option4``
with ``"N/A"`` for unused ones), ``correct_choice`` (the true option's index),
``question_category`` (the task: O2E, O3O, SOS, ...), ``duration_group`` and ``id``. The
paper uses the validation set without subtitles and plots categories 2 (O2E), 3 (O3O)
and 8 (SOS).
"""

from __future__ import annotations

from pathlib import Path

from videolens.data.annotations import Entry, read_json_entries, require_file
from videolens.data.registry import Benchmark, register
from videolens.data.sample import Sample

TASKS = (
    "E2O", "E3E", "O2E", "O3O", "S2A", "S2E", "S2O", "SAA", "SOS", "SSS", "T2A", "T2E", "T2O", "T3E", "T3O", "TAA", "TOS",
)  # fmt: skip
HOLDS = "video_path, question, candidates (or option0..option4), correct_choice, question_category and id"
ANNOTATION = "lvb_val.json"


def _options(entry: Entry) -> list[str]:
    if entry.has("candidates"):
        return entry.options("candidates")
    texts = [str(entry.fields.get(f"option{k}", "N/A")) for k in range(5)]
    used = [t not in ("N/A", "", "None") for t in texts]
    kept = [t for t, u in zip(texts, used) if u]
    if any(not u and later for k, u in enumerate(used) for later in used[k + 1 :]):
        gap = used.index(False)
        raise entry.fail(
            f"option{gap} is unused but a later option is not; correct_choice counts option0..option4 by "
            "position, so the options cannot be closed up. Fill the gap or renumber the entry."
        )
    if not kept:
        raise entry.fail(f"no options (neither 'candidates' nor option0..option4); entries here hold {entry.holds}.")
    return kept


def _duration(entry: Entry) -> float | None:
    """The annotated duration in seconds: the clip LongVideoBench's loader strides over (None: the whole file)."""
    value = entry.fields.get("duration")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


def read(root: Path, tasks: tuple[str, ...] | None) -> list[Sample]:
    path = require_file(root / ANNOTATION, "LongVideoBench validation annotations")
    out = []
    for entry in read_json_entries(path, HOLDS):
        options = _options(entry)
        out.append(
            Sample(
                video=root / "videos" / entry.text("video_path"),
                question=entry.text("question"),
                options=options,
                answer=entry.index("correct_choice", len(options)),
                task=entry.text("question_category"),
                id=entry.text("id") if entry.has("id") else f"lvb/{entry.position}",
                meta={key: entry.fields.get(key) for key in ("duration_group", "duration", "topic_category")},
                end=_duration(entry),
                sampling="strided",
            )
        )
    return out


BENCHMARK = register(
    Benchmark(
        name="longvideobench",
        title="LongVideoBench",
        tasks=TASKS,
        read=read,
        layout="<root>/lvb_val.json and <root>/videos/<video_path>",
        paper_tasks=("O2E", "O3O", "SOS"),
        note=(
            "Frames are strided as LongVideoBench's own loader strides them (every s-th frame of the annotated "
            "duration from the start, s = frames // N), which the paper's LongVideoBench runs used."
        ),
    )
)
