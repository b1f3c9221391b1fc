"""A multiple-choice video question: the unit every analysis and dataset works with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    """One multiple-choice video question.

    Attributes:
        video: a :class:`~videolens.Video`, frames array/tensor, or PIL list.
        question: the question text.
        options: the answer options.
        answer: the true option (index, letter or text).
        task: a task name for grouping results.
        id: a sample id (defaults to its index in the run).
        meta: anything else to carry into the results (e.g. labels for probes).
    """

    video: Any
    question: str
    options: Sequence[str]
    answer: int | str
    task: str = "default"
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
