"""TOMATO (Shangguan et al., 2025): visual temporal reasoning in six reasoning types.

Layout (the ``yale-nlp/TOMATO`` repository with its videos unpacked)::

    <root>/data/count.json ...                           one JSON object per reasoning type,
                                                         keyed by question id
    <root>/videos/<demonstration_type>/<key>.mp4         human, object, simulated, ...

Each entry has ``question``, ``options`` (texts), ``answer`` (the true option's 0-based
index), ``key`` (the video's name) and ``demonstration_type`` (its folder). The paper's
ids are 0 Count, 1 Direction, 2 Rotation, 3 ShapeTrend, 4 VelocityFrequency, 5 VisualCues.
"""

from __future__ import annotations

from pathlib import Path

from videolens.data.annotations import read_json_entries, task_files
from videolens.data.registry import Benchmark, register
from videolens.data.sample import Sample

#: Reasoning type -> annotation file in ``<root>/data/``, in id order.
TASKS: dict[str, str] = {
    "Count": "count.json",
    "Direction": "direction.json",
    "Rotation": "rotation.json",
    "ShapeTrend": "shape&trend.json",
    "VelocityFrequency": "velocity&frequency.json",
    "VisualCues": "visual_cues.json",
}
HOLDS = "question, options, answer (an option index), key and demonstration_type"


def read(root: Path, tasks: tuple[str, ...] | None) -> list[Sample]:
    out = []
    for task, path in task_files("TOMATO", {task: root / "data" / name for task, name in TASKS.items()}, tasks).items():
        for entry in read_json_entries(path, HOLDS):
            options = entry.options("options")
            demonstration = entry.text("demonstration_type")
            out.append(
                Sample(
                    video=root / "videos" / demonstration / f"{entry.text('key')}.mp4",
                    question=entry.text("question"),
                    options=options,
                    answer=entry.index("answer", len(options)),
                    task=task,
                    id=f"{task}/{entry.position}",
                    meta={"demonstration_type": demonstration, "motion_type": entry.fields.get("motion_type")},
                )
            )
    return out


BENCHMARK = register(
    Benchmark(
        name="tomato",
        title="TOMATO",
        tasks=tuple(TASKS),
        read=read,
        layout="<root>/data/<reasoning type>.json and <root>/videos/<demonstration_type>/<key>.mp4",
        paper_tasks=tuple(TASKS),
        note=(
            "The paper's TOMATO prompts carried no option fields, so it ran only the cross-frame and "
            "vql-to-ql sweeps and effective pathways there; videolens passes TOMATO's options as options, "
            "so the option targets run too (they have no counterpart in the paper)."
        ),
    )
)
