"""Synthetic moving-shapes videos with multiple-choice questions, seeded and reproducible.

Every video is ``num_frames`` frames of ``size x size`` pixels: coloured squares on a dark
background. Tasks come in two kinds:

- temporal (need more than one frame): ``direction`` (which way a square moves),
  ``order`` (which of two colours appeared first), ``after`` (which colour appeared right
  after a named one);
- static controls (one frame suffices): ``color`` (the colour of a still square) and
  ``count`` (how many still squares).

Each :class:`~videolens.data.sample.Sample` carries the labels probes need in ``meta``:
``direction``, ``appear_frames`` (frame at which each shape appears), ``colors``,
``count`` and ``positions`` (top-left corner of every shape in every frame, -1 if absent).
Questions use four options in the paper's format; the answer is the option's index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from videolens.data.sample import Sample
from videolens.errors import InputError

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (235, 220, 40),
    "purple": (170, 60, 200),
}
DIRECTIONS = ("left", "right", "up", "down")
COUNTS = ("one", "two", "three", "four")
#: Word bags for the logit lens on these tasks, like the paper's temporal and spatial bags.
WORD_BAGS: dict[str, list[str]] = {
    "temporal": [*DIRECTIONS, "first", "after"],
    "spatial": [*COLORS, *COUNTS],
}
TEMPORAL_TASKS = ("direction", "order", "after")
STATIC_TASKS = ("color", "count")
TASKS = TEMPORAL_TASKS + STATIC_TASKS
QUESTIONS = {
    "direction": "Which way is the square moving?",
    "order": "Which colour appeared first?",
    "after": "Which colour appeared right after the {color} square?",
    "color": "What colour is the square?",
    "count": "How many squares are there?",
}
BACKGROUND = 20
SQUARE = 6


def vocabulary() -> list[str]:
    """Every word the questions and options use (for building a word-level tokenizer)."""
    words: set[str] = set()
    for text in QUESTIONS.values():
        words.update(text.replace("?", " ").replace("{color}", " ").split())
    words.update(COLORS, DIRECTIONS, COUNTS)
    return sorted(words)


def _free_spots(rng: np.random.Generator, n: int, size: int) -> list[tuple[int, int]]:
    """``n`` non-overlapping top-left corners for squares."""
    cells = [(y, x) for y in range(0, size - SQUARE + 1, SQUARE + 2) for x in range(0, size - SQUARE + 1, SQUARE + 2)]
    picks = rng.choice(len(cells), size=n, replace=False)
    jitter = rng.integers(0, 2, size=(n, 2))
    return [(cells[i][0] + int(j[0]), cells[i][1] + int(j[1])) for i, j in zip(picks, jitter)]


def _options(
    rng: np.random.Generator, answer: str, pool: Sequence[str], must: Sequence[str], shuffle: bool
) -> tuple[list[str], int]:
    """Four options containing ``answer`` and ``must``; shuffled, or in the pool's order."""
    chosen = list(dict.fromkeys([answer, *must]))
    rest = [c for c in pool if c not in chosen]
    chosen += [str(c) for c in rng.choice(rest, size=4 - len(chosen), replace=False)]
    if shuffle:
        rng.shuffle(chosen)
    else:
        chosen.sort(key=list(pool).index)
    return chosen, chosen.index(answer)


def make_sample(
    task: str, rng: np.random.Generator, *, num_frames: int = 8, size: int = 32, shuffle_options: bool = True
) -> Sample:
    """Draw one video and its question for ``task``."""
    if task not in TASKS:
        raise InputError(f"Unknown task {task!r}; use one of {', '.join(TASKS)}.")
    frames = np.full((num_frames, size, size, 3), BACKGROUND, dtype=np.uint8)
    colors = list(COLORS)
    meta: dict = {"task": task}
    if task == "direction":
        color = str(rng.choice(colors))
        direction = str(rng.choice(DIRECTIONS))
        step = int(rng.integers(2, 4))
        travel = step * (num_frames - 1)
        lo, hi = 0, size - SQUARE - travel
        along = int(rng.integers(lo, hi + 1))
        across = int(rng.integers(0, size - SQUARE + 1))
        positions = []
        for t in range(num_frames):
            offset = along + step * t
            if direction in ("left", "up"):
                offset = size - SQUARE - offset
            y, x = (across, offset) if direction in ("left", "right") else (offset, across)
            frames[t, y : y + SQUARE, x : x + SQUARE] = COLORS[color]
            positions.append([(y, x)])
        options, answer = _options(rng, direction, DIRECTIONS, [], shuffle_options)
        question = QUESTIONS[task]
        meta.update(direction=direction, colors=[color], appear_frames=[0], positions=positions)
    elif task in ("order", "after"):
        n = 2 if task == "order" else 3
        shown = [str(c) for c in rng.choice(colors, size=n, replace=False)]
        gaps = rng.integers(1, 3, size=n)
        first = int(rng.integers(0, num_frames - int(gaps.sum()) - n + 2))
        appear = list(np.minimum(first + np.cumsum(np.concatenate([[0], gaps[1:] + 1])), num_frames - 1))
        spots = _free_spots(rng, n, size)
        for (y, x), color, f in zip(spots, shown, appear):
            frames[f:, y : y + SQUARE, x : x + SQUARE] = COLORS[color]
        if task == "order":
            answer_color, question = shown[0], QUESTIONS[task]
        else:
            k = int(rng.integers(0, n - 1))
            answer_color, question = shown[k + 1], QUESTIONS[task].format(color=shown[k])
        options, answer = _options(rng, answer_color, colors, shown, shuffle_options)
        positions = [[spot if t >= f else (-1, -1) for spot, f in zip(spots, appear)] for t in range(num_frames)]
        meta.update(colors=shown, appear_frames=[int(f) for f in appear], positions=positions)
    elif task == "color":
        color = str(rng.choice(colors))
        ((y, x),) = _free_spots(rng, 1, size)
        frames[:, y : y + SQUARE, x : x + SQUARE] = COLORS[color]
        options, answer = _options(rng, color, colors, [], shuffle_options)
        question = QUESTIONS[task]
        meta.update(colors=[color], appear_frames=[0], positions=[[(y, x)]] * num_frames)
    else:  # count
        count = int(rng.integers(1, 5))
        shown = [str(c) for c in rng.choice(colors, size=count)]
        spots = _free_spots(rng, count, size)
        for (y, x), color in zip(spots, shown):
            frames[:, y : y + SQUARE, x : x + SQUARE] = COLORS[color]
        options, answer = _options(rng, COUNTS[count - 1], COUNTS, [], shuffle_options)
        question = QUESTIONS[task]
        meta.update(count=count, colors=shown, appear_frames=[0] * count, positions=[spots] * num_frames)
    meta["frame_index"] = list(range(num_frames))
    return Sample(frames, question, options, answer, task=task, meta=meta)


def make_dataset(
    n_per_task: int,
    seed: int = 0,
    tasks: Sequence[str] = TASKS,
    *,
    num_frames: int = 8,
    size: int = 32,
    shuffle_options: bool = True,
) -> list[Sample]:
    """``n_per_task`` samples of each task, interleaved, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_per_task):
        for task in tasks:
            sample = make_sample(task, rng, num_frames=num_frames, size=size, shuffle_options=shuffle_options)
            sample.id = f"{task}-{seed}-{i}"
            out.append(sample)
    return out
