"""Tiny local copies of each benchmark's download layout, with real (tiny) video files.

Every video is a 10 fps clip of coded frames (``test_video_helpers.coded_frame``: frame
``i`` spells ``i`` in bars), so a test can read back which source frames a sample decoded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_video_helpers import coded_frame, write_video

FPS = 10


@pytest.fixture
def one_thread():
    """One intra-op thread while a test runs the model (on a shared CPU, two threads mostly wait on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def clip(path: Path, n_frames: int = 30) -> Path:
    """A ``n_frames``-frame clip at 10 fps (frame ``i`` shown from ``i / 10`` s)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(
        path, [coded_frame(i) for i in range(n_frames)], [i * 100 for i in range(n_frames)], codec="mpeg4", rate=FPS
    )
    return path


def frame_folder(folder: Path, n_frames: int) -> Path:
    """A folder of JPEG frames ``00001.jpg`` ... (MVBench's episodic reasoning layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_frames):
        Image.fromarray(coded_frame(i)).save(folder / f"{i + 1:05d}.jpg", quality=95)
    return folder


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def tvbench(root: Path) -> Path:
    """Action Sequence (bounded, 2 questions) and Moving Direction (1 question)."""
    write_json(
        root / "json" / "action_sequence.json",
        [
            {"video": "a.mp4", "question": "What did the person do first?", "candidates": ["Sat down.", "Stood up."],
             "answer": "Stood up.", "start": 1.0, "end": 2.6},
            {"video": "b.mp4", "question": "What happened last?", "candidates": ["Ran.", "Walked.", "Jumped."],
             "answer": "Jumped.", "start": 0.5, "end": 1.3},
        ],
    )  # fmt: skip
    write_json(
        root / "json" / "moving_direction.json",
        [{"video": "c.mp4", "question": "Where does the ball go?", "candidates": ["left", "right"], "answer": "left"}],
    )
    for task, name in [("action_sequence", "a.mp4"), ("action_sequence", "b.mp4"), ("moving_direction", "c.mp4")]:
        clip(root / "video" / task / name)
    return root


def many_clips_generic(folder: Path, n: int) -> Path:
    """A generic JSONL dataset of ``n`` questions over three short clips (for run tests)."""
    for k in range(3):
        clip(folder / f"v{k}.mp4", n_frames=12)
    lines = [
        {"video": f"v{i % 3}.mp4", "question": "Which way is the square moving?", "options": ["left", "right", "up", "down"],
         "answer": i % 4, "task": ["direction", "color"][i % 2], "id": f"q{i:02d}"}
        for i in range(n)
    ]  # fmt: skip
    path = folder / "questions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path
