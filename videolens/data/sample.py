"""A multiple-choice video question: the unit every analysis and dataset works with.

A sample's ``video`` is either frames already in memory (a :class:`~videolens.Video`, an
array, a tensor, a PIL list) or the path of a file or frame folder that is decoded only
when the sample is used (:meth:`Sample.decoded`), so a benchmark of thousands of
questions is listed in moments and decoded one video at a time, in background workers
(:mod:`videolens.data.prefetch`). The frame bounds and count travel with the sample:
"Map the Flow" samples 8 segment midpoints per video (Sec. 4), restricted to the
annotated ``start``/``end`` seconds on TVBench's Action Sequence and Action Localization.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from videolens.errors import VideoDecodeError

#: Frames per video in the paper's analyses (segment midpoints).
PAPER_NUM_FRAMES = 8


@dataclass
class Sample:
    """One multiple-choice video question.

    Attributes:
        video: a :class:`~videolens.Video`, frames array/tensor, or PIL list; or the path of a
            video file or frame folder, decoded when the sample is used.
        question: the question text.
        options: the answer options.
        answer: the true option (index, letter or text).
        task: a task name for grouping results.
        id: a sample id (defaults to its index in the run); unique within a dataset.
        meta: anything else to carry into the results (e.g. labels for probes, the source file).
        start, end: the clip to read, in seconds on the video's clock (None: from the start / to the end).
        num_frames: how many frames to decode (None: :data:`PAPER_NUM_FRAMES`).
        fps: the frame rate of a frame-folder video (frame ``i`` is at ``i / fps`` s).
        answer_prefix: the text the answer starts with, where the benchmark has its own
            (Video-MME: ``"Best option:"``); None uses the paper's ``"Best option:("``.
        sampling: how frames are chosen (see :func:`~videolens.load_video`), where the
            benchmark has its own rule (LongVideoBench: ``"strided"``); None: ``"paper"``, the
            frames the paper's evaluation code reads.
        option_style: how the options are written, where the benchmark has its own style
            (Video-MME: ``"A."``, giving ``A. text``); None uses the paper's ``"(A)"``.
    """

    video: Any
    question: str
    options: Sequence[str]
    answer: int | str
    task: str = "default"
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None
    num_frames: int | None = None
    fps: float | None = None
    answer_prefix: str | None = None
    option_style: str | None = None
    sampling: str | None = None

    @property
    def is_lazy(self) -> bool:
        """Whether ``video`` is still a path to decode."""
        return isinstance(self.video, (str, os.PathLike))

    def decoded(self) -> Sample:
        """This sample with its video decoded (itself when the frames are already in memory).

        Frames are the segment midpoints of ``[start, end)`` on frame indices, the frames the
        paper's evaluation code reads (``sampling="paper"`` of :func:`~videolens.load_video`).

        Raises:
            VideoDecodeError: the file is missing or cannot be decoded; the message names the sample.
        """
        if not self.is_lazy:
            return self
        from videolens.io.video import load_video

        try:
            video = load_video(
                self.video,
                num_frames=self.num_frames or PAPER_NUM_FRAMES,
                sampling=self.sampling or "paper",
                start=self.start,
                end=self.end,
                fps=self.fps,
            )
        except VideoDecodeError as exc:
            raise VideoDecodeError(f"Sample {self.id or self.question!r} (task {self.task!r}): {exc}") from exc
        return replace(self, video=video)
