"""Video input: decoding files with decord and normalising in-memory frames.

Axis glossary: ``frame`` (T), ``height`` (H), ``width`` (W), ``channel`` (3, RGB).
Frames are always ``uint8`` arrays of shape ``(T, H, W, 3)`` at native resolution; the
model's processor resizes them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float, UInt8

from videolens.errors import VideoDecodeError

Sampling = Literal["uniform", "segment_midpoint"]


@dataclass(frozen=True)
class Video:
    """Decoded frames and the times (in seconds) at which they were sampled.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB frames.
        timestamps: ``(T,)`` seconds from the start of the file, or ``None`` when unknown.
        source: where the frames came from (a path), for reports.
    """

    frames: UInt8[np.ndarray, "frame height width 3"]
    timestamps: Float[np.ndarray, " frame"] | None = None
    source: str | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def fps(self) -> float | None:
        """Sampling rate implied by the timestamps (frames per second), if known."""
        if self.timestamps is None or len(self.timestamps) < 2:
            return None
        step = float(np.mean(np.diff(self.timestamps)))
        return 1.0 / step if step > 0 else None


def sample_indices(
    total: int, num_frames: int, sampling: Sampling = "uniform", start: int = 0, end: int | None = None
) -> np.ndarray:
    """Frame indices to decode from the frame range ``[start, end)``.

    ``uniform`` spreads ``num_frames`` evenly from the first to the last frame of the range
    (both included); ``segment_midpoint`` splits the range into ``num_frames`` equal segments
    and takes the middle of each (the paper's sampling).
    """
    end = total if end is None else min(end, total)
    if num_frames < 1:
        raise VideoDecodeError(f"num_frames must be at least 1, got {num_frames}.")
    if end <= start:
        raise VideoDecodeError(
            f"The frame range [{start}, {end}) is empty (the video has {total} frames); check start/end."
        )
    length = end - start
    if sampling == "uniform":
        idx = np.linspace(start, end - 1, num_frames)
    elif sampling == "segment_midpoint":
        seg = length / num_frames
        idx = start + seg * (np.arange(num_frames) + 0.5)
    else:
        raise VideoDecodeError(f"Unknown sampling {sampling!r}; use 'uniform' or 'segment_midpoint'.")
    return np.clip(np.round(idx).astype(np.int64), start, end - 1)


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence FFmpeg's own messages (written straight to fd 2) while decord opens a file;
    our exception carries the reason instead."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # no real stderr (e.g. captured)
        yield
        return
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def load_video(
    path: str | os.PathLike,
    num_frames: int = 8,
    sampling: Sampling = "uniform",
    start: float | None = None,
    end: float | None = None,
) -> Video:
    """Decode ``num_frames`` frames from a video file with decord.

    Args:
        path: a video file that decord (FFmpeg) can read.
        num_frames: how many frames to sample.
        sampling: ``"uniform"`` (first to last frame) or ``"segment_midpoint"`` (middle of
            ``num_frames`` equal segments, as in the paper).
        start, end: optional bounds in seconds (e.g. an annotated event), inclusive of start.

    Returns:
        A :class:`Video` with frames ``(T, H, W, 3)`` uint8 and their timestamps in seconds.

    Raises:
        VideoDecodeError: the file is missing, cannot be decoded, or has no frames.
    """
    p = Path(path)
    if not p.exists():
        raise VideoDecodeError(f"Video file not found: {p}. Check the path (it is resolved from {Path.cwd()}).")
    if p.is_dir():
        raise VideoDecodeError(f"{p} is a directory, not a video file.")
    try:
        import decord
    except ImportError as exc:  # pragma: no cover - decord is a hard dependency
        raise VideoDecodeError("decord is not installed: pip install decord") from exc
    try:
        with _quiet_native_stderr():
            reader = decord.VideoReader(str(p), ctx=decord.cpu(0))
        total = len(reader)
        fps = float(reader.get_avg_fps()) or 0.0
    except Exception as exc:  # decord raises its own DECORDError and RuntimeErrors
        raise VideoDecodeError(
            f"Could not decode {p} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Is it a video file? Re-encode it, e.g. `ffmpeg -i in -c:v libx264 out.mp4`."
        ) from exc
    if total == 0:
        raise VideoDecodeError(f"{p} decodes to zero frames; the file is empty or truncated.")
    first = 0 if start is None or fps <= 0 else int(np.floor(start * fps))
    last = None if end is None or fps <= 0 else int(np.ceil(end * fps)) + 1
    idx = sample_indices(total, num_frames, sampling, first, last)
    try:
        frames = reader.get_batch(idx.tolist()).asnumpy()
    except Exception as exc:
        raise VideoDecodeError(f"Could not decode frames {idx.tolist()} of {p}: {exc}") from exc
    timestamps = idx / fps if fps > 0 else None
    return Video(frames=np.ascontiguousarray(frames, dtype=np.uint8), timestamps=timestamps, source=str(p))


def as_frames(video: object) -> UInt8[np.ndarray, "frame height width 3"]:
    """Normalise any supported video input to ``(T, H, W, 3)`` uint8 frames.

    Accepts a :class:`Video`, a numpy array or torch tensor of shape ``(T, H, W, 3)`` or
    ``(T, 3, H, W)`` (uint8, or floats in [0, 1]), or a list of PIL images / arrays.
    """
    if isinstance(video, Video):
        arr = video.frames
    elif isinstance(video, (str, os.PathLike)):
        raise VideoDecodeError(f"Got a path ({video}); decode it first with videolens.load_video(path, num_frames=8).")
    elif isinstance(video, torch.Tensor):
        arr = video.detach().cpu().numpy()
    elif isinstance(video, np.ndarray):
        arr = video
    elif isinstance(video, Sequence):
        if len(video) == 0:
            raise VideoDecodeError("The video has zero frames; pass at least one frame.")
        arr = np.stack([np.asarray(frame.convert("RGB") if hasattr(frame, "convert") else frame) for frame in video])
    else:
        raise VideoDecodeError(
            f"Unsupported video type {type(video).__name__}; pass a videolens.Video, a (T, H, W, 3) "
            "array or tensor, or a list of PIL images."
        )
    if arr.ndim != 4:
        raise VideoDecodeError(f"Expected frames of shape (T, H, W, 3); got shape {tuple(arr.shape)}.")
    if arr.shape[0] == 0:
        raise VideoDecodeError("The video has zero frames; pass at least one frame.")
    if arr.shape[-1] != 3 and arr.shape[1] == 3:
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] != 3:
        raise VideoDecodeError(f"Expected RGB frames with 3 channels; got shape {tuple(arr.shape)}.")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)
