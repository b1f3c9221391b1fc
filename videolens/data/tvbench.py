"""TVBench (Cores et al., 2024): ten temporal tasks in MVBench's format.

Layout (the Hugging Face dataset ``FunAILab/TVBench`` as downloaded)::

    <root>/json/action_sequence.json ...   one JSON list per task
    <root>/video/action_sequence/<video>   the task's videos

Action Sequence and Action Localization restrict each question to its ``start``/``end``
seconds; "Map the Flow" samples its 8 frames inside them (Sec. 4) and reports tasks
0, 3, 5, 6 and 8 (Action Antonym, Action Sequence, Moving Direction, Object Count, Scene
Transition).
"""

from __future__ import annotations

from videolens.data.mvbench_format import TaskSource, register_mvbench_style

BOUNDED = ("Action Localization", "Action Sequence")
#: Task name -> annotation file and video folder; in id order (alphabetical, as the paper numbers them).
TASKS: dict[str, TaskSource] = {
    name: TaskSource(f"{stem}.json", stem, bounded=name in BOUNDED)
    for name in (
        "Action Antonym",
        "Action Count",
        "Action Localization",
        "Action Sequence",
        "Egocentric Sequence",
        "Moving Direction",
        "Object Count",
        "Object Shuffle",
        "Scene Transition",
        "Unexpected Action",
    )
    for stem in [name.lower().replace(" ", "_")]
}


BENCHMARK = register_mvbench_style(
    "tvbench",
    "TVBench",
    TASKS,
    layout="<root>/json/<task>.json and <root>/video/<task>/<video>",
    paper_tasks=("Action Antonym", "Action Sequence", "Moving Direction", "Object Count", "Scene Transition"),
)
