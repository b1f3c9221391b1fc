"""Video input: frames exactly as the file holds them, sampled on the file's own clock.

Decoding goes through PyAV (FFmpeg). Every returned frame carries the decoder's presentation
timestamp, so constant and variable frame-rate files are treated alike: sampling is defined
on time, never on ``index / average fps``. In-memory frames are normalised by
:func:`as_frames`, which refuses anything it would otherwise have to guess at (negative or
out-of-range floats, 16-bit integers, grey frames, mixed sizes).

Axis glossary: ``frame`` (T), ``height`` (H), ``width`` (W), ``channel`` (3, RGB).
Frames are always ``uint8`` arrays of shape ``(T, H, W, 3)`` at native resolution; the
model's processor resizes them. See ``docs/video.md``.
"""

from __future__ import annotations

import bisect
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from jaxtyping import Float, Int, UInt8

from videolens.errors import VideoDecodeError

Sampling = Literal["uniform", "segment_midpoint", "paper", "strided"]
SAMPLINGS: tuple[str, ...] = ("uniform", "segment_midpoint", "paper", "strided")

#: File suffixes read as frames when ``load_video`` is given a folder.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})

_REENCODE_HINT = "Re-encode it, e.g. `ffmpeg -i in -c:v libx264 -pix_fmt yuv420p out.mp4`."


# ---------------------------------------------------------------------------------------
# The Video record
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Video:
    """Decoded frames and where they sit in their source.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB frames at the source's resolution. Anything
            :func:`as_frames` accepts may be passed; it is normalised (or refused) on construction.
        timestamps: ``(T,)`` seconds on the file's clock: the decoder's presentation time
            (pts) of each frame. ``None`` when unknown (bare frames, an image folder without ``fps=``).
        source: where the frames came from (a path), for reports.
        frame_indices: ``(T,)`` index of each frame in its source, counting the source's
            frames from 0 in presentation order. ``None`` when unknown.
        source_fps: the source stream's average frame rate as its container states it
            (``None`` when it states none). For a variable-frame-rate file it is an average only.
    """

    frames: UInt8[np.ndarray, "frame height width 3"]
    timestamps: Float[np.ndarray, " frame"] | None = None
    source: str | None = None
    frame_indices: Int[np.ndarray, " frame"] | None = None
    source_fps: float | None = None

    def __post_init__(self) -> None:
        frames = as_frames(self.frames)
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "timestamps", _checked_timestamps(self.timestamps, len(frames)))
        object.__setattr__(self, "frame_indices", _checked_indices(self.frame_indices, len(frames)))

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def fps(self) -> float | None:
        """The sampling rate implied by the timestamps: ``(T - 1) / (last - first timestamp)``.

        This is the rate of the *returned* frames (what a time-aware model should be told),
        not the source's rate (see :attr:`source_fps`). ``None`` without timestamps, with
        fewer than two frames, or when all frames share one timestamp.
        """
        if self.timestamps is None or len(self.timestamps) < 2:
            return None
        span = float(self.timestamps[-1] - self.timestamps[0])
        return (len(self.timestamps) - 1) / span if span > 0 else None


def _checked_timestamps(timestamps: object, num_frames: int) -> np.ndarray | None:
    """Timestamps as float64 seconds, one per frame, finite and never decreasing."""
    if timestamps is None:
        return None
    times = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if len(times) != num_frames:
        raise VideoDecodeError(f"Got {len(times)} timestamps for {num_frames} frames; pass one timestamp per frame.")
    if not np.all(np.isfinite(times)):
        raise VideoDecodeError("The timestamps hold NaN or inf; pass finite times in seconds (or timestamps=None).")
    if np.any(np.diff(times) < 0):
        raise VideoDecodeError("The timestamps decrease; frames must be in time order (sort them by timestamp).")
    return times


def _checked_indices(frame_indices: object, num_frames: int) -> np.ndarray | None:
    """Source frame indices as int64, one per frame."""
    if frame_indices is None:
        return None
    indices = np.asarray(frame_indices).reshape(-1)
    if len(indices) != num_frames or not np.issubdtype(indices.dtype, np.integer):
        raise VideoDecodeError(f"frame_indices must be {num_frames} integers (one per frame); got {indices!r}.")
    return indices.astype(np.int64)


# ---------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------


def _check_num_frames(num_frames: object) -> int | None:
    """``num_frames`` as a positive int, or ``None`` (every frame of the clip)."""
    if num_frames is None:
        return None
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise VideoDecodeError(
            f"num_frames must be a whole number of at least 1 (or None for every frame of the clip); "
            f"got {num_frames!r}."
        )
    return int(num_frames)


def _check_sampling(sampling: object) -> str:
    if sampling not in SAMPLINGS:
        raise VideoDecodeError(
            f"Unknown sampling {sampling!r}; use 'uniform', 'segment_midpoint', 'paper' or 'strided'."
        )
    return str(sampling)


def _exact_seconds(value: object, name: str) -> Fraction | None:
    """A time in seconds as an exact fraction of its decimal spelling (``0.1`` is 1/10, not the binary float)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise VideoDecodeError(f"{name}={value!r} is not a number; pass a time in seconds.")
    if not math.isfinite(float(value)):
        raise VideoDecodeError(f"{name}={value!r} must be a finite time in seconds.")
    return Fraction(int(value)) if isinstance(value, (int, np.integer)) else Fraction(str(float(value)))


def _check_bounds(start: object, end: object) -> tuple[Fraction | None, Fraction | None]:
    """``start``/``end`` as exact seconds; refuses an empty range before anything is decoded."""
    lo, hi = _exact_seconds(start, "start"), _exact_seconds(end, "end")
    if lo is not None and hi is not None and lo >= hi:
        raise VideoDecodeError(
            f"The clip [start={float(lo):g} s, end={float(hi):g} s) is empty: start must be before end."
        )
    return lo, hi


def check_rate(fps: object, error: type[Exception], meaning: str) -> float | None:
    """A frame rate that is a finite number above 0 (None stays None); ``error`` names what is wrong.

    ``meaning`` says what the rate is, for the message (e.g. "the folder's frame rate").
    """
    if fps is None:
        return None
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        raise error(f"fps={fps!r} is not a number; pass {meaning} in frames per second.")
    if not math.isfinite(float(fps)) or float(fps) <= 0:
        raise error(f"fps={fps!r} must be a finite number above 0 (frames per second).")
    return float(fps)


def _check_fps(fps: object) -> Fraction | None:
    """The frame rate of an image folder, exactly as spelled."""
    rate = check_rate(fps, VideoDecodeError, "the folder's frame rate")
    return None if rate is None else Fraction(str(rate))


# ---------------------------------------------------------------------------------------
# Sampling on time
# ---------------------------------------------------------------------------------------


def _span(times: Sequence[Fraction], video_end: Fraction) -> str:
    """The time range of a video, for messages."""
    return f"[{float(times[0]):.3f} s, {float(video_end):.3f} s) ({len(times)} frames)"


def _describe_clip(start: Fraction | None, end: Fraction | None) -> str:
    """The clip a caller asked for, for messages."""
    first = "first frame" if start is None else f"{float(start):g} s"
    last = "end" if end is None else f"{float(end):g} s"
    return f"[{first}, {last})"


def _clip_positions(
    times: Sequence[Fraction], video_end: Fraction, start: Fraction | None, end: Fraction | None
) -> tuple[int, int]:
    """The frames ``[lo, hi)`` whose time lies in ``[start, end)``; refuses an empty clip."""
    lo = 0 if start is None else bisect.bisect_left(times, start)
    hi = len(times) if end is None else bisect.bisect_left(times, end)
    if hi <= lo:
        raise VideoDecodeError(
            f"The clip {_describe_clip(start, end)} holds no frames: the video spans {_span(times, video_end)}. "
            "Pass start/end inside that range."
        )
    return lo, hi


def _nearest(times: Sequence[Fraction], t: Fraction, lo: int, hi: int) -> int:
    """The frame of ``[lo, hi)`` whose time is nearest ``t`` (the earlier one on a tie)."""
    after = bisect.bisect_left(times, t, lo, hi)
    if after == hi:
        return hi - 1
    if after == lo:
        return lo
    before = after - 1
    return before if t - times[before] <= times[after] - t else after


def _shown_at(times: Sequence[Fraction], t: Fraction, lo: int, hi: int) -> int:
    """The frame of ``[lo, hi)`` on screen at time ``t``: the last one starting at or before ``t``."""
    return max(bisect.bisect_right(times, t, lo, hi) - 1, lo)


def _paper_indices(
    n_frames: int, num_frames: int, rate: float, first: Fraction, start: Fraction | None, end: Fraction | None
) -> list[int]:
    """The frames the paper's evaluation code reads: segment midpoints computed on frame indices.

    Its loader (VideoChat2's MVBench ``get_index``, used by "Map the Flow"'s evaluation)
    turns the clip bounds into frame indices at the stream's average rate, clipped to
    ``[0, n_frames - 1]``, splits that index range into ``num_frames`` equal segments and
    takes ``int(start_index + segment / 2 + round(segment * k))``: Python's rounding (half
    to even) in floating point, as there. The range ends at the last frame's index, not
    past it, so these frames can sit one before the time-based ``segment_midpoint`` ones.
    """
    start_index = 0 if start is None else max(0, round(float(start - first) * rate))
    end_index = n_frames - 1 if end is None else min(round(float(end - first) * rate), n_frames - 1)
    segment = float(end_index - start_index) / num_frames
    return [int(start_index + segment / 2 + round(segment * k)) for k in range(num_frames)]


def select_frames(
    times: Sequence[Fraction],
    video_end: Fraction,
    num_frames: int | None,
    sampling: str = "uniform",
    start: Fraction | None = None,
    end: Fraction | None = None,
    rate: float | None = None,
) -> list[int]:
    """Which frames to return, chosen on time (``"paper"``: on frame indices, as the paper's code).

    Args:
        times: every frame's presentation time (seconds, exact), strictly increasing.
        video_end: when the last frame stops being shown (its time plus its duration).
        num_frames: how many frames; ``None`` for every frame of the clip.
        sampling: ``"uniform"``: the frames nearest ``num_frames`` evenly spaced times from
            the clip's first to its last frame time. ``"segment_midpoint"``: split the clip
            ``[start, end)`` into ``num_frames`` equal segments and take the frame on screen
            at each segment's midpoint (the paper's description, Sec. 4). ``"paper"``: the
            frames the paper's evaluation code reads (:func:`_paper_indices`: the same
            midpoints computed on frame indices at ``rate``). ``"strided"``: every
            ``s``-th frame of the clip from its first, ``s = clip frames // num_frames``
            (LongVideoBench's own loader, which the paper's LongVideoBench runs used).
        start, end: the clip in seconds; a frame belongs to it when its time is in
            ``[start, end)``. Defaults: the first frame's time and ``video_end``.
        rate: the stream's average frame rate (``"paper"`` only; default: the frames' own
            mean spacing).

    Returns:
        Positions into ``times``, in time order. A variable-frame-rate frame that stays on
        screen across several sample times is returned once per sample time.
    """
    lo, hi = _clip_positions(times, video_end, start, end)
    if num_frames is None:
        return list(range(lo, hi))
    if num_frames > hi - lo:
        raise VideoDecodeError(
            f"Asked for num_frames={num_frames} but the clip has only {hi - lo} frames "
            f"(the video spans {_span(times, video_end)}). Pass num_frames={hi - lo} or fewer, "
            "or num_frames=None for every frame of the clip."
        )
    if sampling == "uniform":
        first, last = times[lo], times[hi - 1]
        steps = max(num_frames - 1, 1)
        return [_nearest(times, first + (last - first) * k / steps, lo, hi) for k in range(num_frames)]
    if sampling == "strided":
        stride = (hi - lo) // num_frames
        return [lo + stride * k for k in range(num_frames)]
    if sampling == "paper":
        if rate is None:
            span = float(times[-1] - times[0])
            rate = (len(times) - 1) / span if span > 0 else 1.0
        return _paper_indices(len(times), num_frames, rate, times[0], start, end)
    clip_start = times[0] if start is None else max(start, times[0])
    clip_end = video_end if end is None else min(end, video_end)
    segment = (clip_end - clip_start) / num_frames
    return [_shown_at(times, clip_start + segment * (2 * k + 1) / 2, lo, hi) for k in range(num_frames)]


# ---------------------------------------------------------------------------------------
# Video files (PyAV)
# ---------------------------------------------------------------------------------------


class _TimelineMismatch(Exception):
    """The decoder's timestamps disagree with the container's packet timestamps."""


@dataclass(frozen=True)
class _Keyframe:
    """A keyframe: where decoding can start. ``dts`` is its decode time (its pts if the file has none)."""

    pts: int
    dts: int


@dataclass(frozen=True)
class _Timeline:
    """Every frame of a stream in presentation order, and how to reach each by seeking.

    Attributes:
        pts: presentation timestamps in ``time_base`` units, strictly increasing.
        end_pts: when the last frame stops being shown (its pts plus its duration).
        time_base: seconds per pts unit.
        keyframes: for each frame, the keyframe its decoding must start from (``None`` when
            the table was read by decoding, which never seeks).
        first_dts: the decode time of the stream's first packet (a seek there restarts the stream).
    """

    pts: list[int]
    end_pts: int
    time_base: Fraction
    keyframes: list[_Keyframe] | None = None
    first_dts: int | None = None

    def times(self) -> list[Fraction]:
        return [self.time_base * p for p in self.pts]

    def end_time(self) -> Fraction:
        return self.time_base * self.end_pts

    def seek_targets(self, position: int) -> list[int]:
        """Timestamps to seek to before decoding frame ``position``, best first.

        Demuxers differ in whether a seek lands by pts or by dts, so the keyframe's pts is
        tried first, then its dts, then the stream's start (always correct, slowest).
        """
        key = self.keyframes[position]
        return list(dict.fromkeys([key.pts, key.dts, self.first_dts]))


def _open_container(path: Path):
    """Open a media file with PyAV; FFmpeg's own log stays off, the reason goes in our error."""
    import av

    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoDecodeError(
            f"Could not decode {path} ({_reason(exc)}). Is it a video file? {_REENCODE_HINT}"
        ) from exc


def _reason(exc: BaseException) -> str:
    """First line of an exception, without the path PyAV appends."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return re.sub(r":\s*'[^']*'$", "", text)


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise VideoDecodeError(f"{path} holds no video stream (it may be audio only). Pass a video file.")
    return container.streams.video[0]


def _exact(rational) -> Fraction | None:
    """A PyAV rational (a ``Fraction``, or an ``AVRational`` in newer PyAV) as a ``Fraction``; ``None`` if unset."""
    if rational is None or not rational.denominator or not rational.numerator:
        return None
    return Fraction(rational.numerator, rational.denominator)


def _time_base(stream) -> Fraction:
    time_base = _exact(stream.time_base)
    if time_base is None:
        raise VideoDecodeError(f"The video stream of {stream.container.name} states no time base. {_REENCODE_HINT}")
    return time_base


def _source_fps(stream) -> float | None:
    rate = _exact(stream.average_rate)
    return float(rate) if rate else None


def _last_duration(durations: list[int | None], pts: list[int], stream) -> int:
    """How long the last frame is shown, in pts units: as stated, else the last gap, else one frame period."""
    if durations[-1] and durations[-1] > 0:
        return int(durations[-1])
    if len(pts) > 1:
        return pts[-1] - pts[-2]
    rate = _exact(stream.average_rate)
    return max(round(1 / (rate * _time_base(stream))), 1) if rate else 1


class _Packet(NamedTuple):
    """What the frame table needs from one packet (not its data, which may be large)."""

    pts: int | None
    dts: int | None
    keyframe: bool
    duration: int


def _packets(container, stream) -> tuple[list[_Packet], int]:
    """The stream's packets in decode order, without their data (empty and discarded ones left out),
    and how many packets with data the file holds, discarded ones included."""
    kept, with_data = [], 0
    for p in container.demux(stream):
        if p.size:
            with_data += 1
            if not p.is_discard:
                kept.append(_Packet(p.pts, p.dts if p.dts is not None else p.pts, bool(p.is_keyframe), p.duration or 0))
    return kept, with_data


def _check_complete(stream, demuxed: int, path: Path) -> None:
    """Refuse a file that ends before its header says (a cut download or copy).

    Its readable frames would still make a frame table, only a shorter one, and sampling
    by time would spread the frames over the part that is there without a word. The
    header's frame count is compared with the packets the file actually holds, discarded
    ones (outside an edit list) included, in MP4/QuickTime files: their sample table lists
    every frame exactly (other containers' counts are estimates, or absent; AVI writers
    state counts their files do not hold).
    """
    stated = int(stream.frames or 0)
    if "mp4" not in stream.container.format.name.split(","):
        return
    if stated and demuxed < stated - max(2, stated // 100):
        raise VideoDecodeError(
            f"{path} holds {demuxed} frames but its header states {stated}: the file is truncated (an "
            "interrupted download or copy?). Fetch it again, or re-encode the part that is there "
            "(`ffmpeg -i in.mp4 -c:v libx264 out.mp4`) to use it as a shorter video."
        )


def _timeline_from_packets(container, stream, path: Path) -> _Timeline | None:
    """Read the frame table from the packets alone (demuxing, no decoding).

    ``None`` when the packets cannot be trusted as a frame table (a packet without pts,
    two packets with the same pts); the caller then decodes every frame instead.
    """
    packets, demuxed = _packets(container, stream)
    _check_complete(stream, demuxed, path)
    if not packets or any(p.pts is None for p in packets):
        return None
    keyframes = _keyframes_to_start_from(packets)
    order = sorted(range(len(packets)), key=lambda i: packets[i].pts)
    pts = [packets[i].pts for i in order]
    if len(set(pts)) != len(pts):
        return None
    end_pts = pts[-1] + _last_duration([packets[i].duration for i in order], pts, stream)
    return _Timeline(pts, end_pts, _time_base(stream), [keyframes[i] for i in order], packets[0].dts)


def _keyframes_to_start_from(packets: list[_Packet]) -> list[_Keyframe]:
    """For each packet (decode order), the keyframe that decoding it must start from.

    That is the last keyframe before it in decode order, or the one before that when the
    packet is a leading picture (shown before its keyframe, so it may reference the
    previous group of pictures).
    """
    previous = current = _Keyframe(packets[0].pts, packets[0].dts)
    chosen = []
    for packet in packets:
        if packet.keyframe:
            previous, current = current, _Keyframe(packet.pts, packet.dts)
        chosen.append(previous if packet.pts < current.pts else current)
    return chosen


def _decoded_frames(container, stream, seek_ts: int | None = None) -> Iterator:
    """Decode frames forward, from a seek to ``seek_ts`` (stream time base) or from where the demuxer is.

    A stream that cannot seek raises :class:`_TimelineMismatch`, so the caller decodes from the start.
    """
    import av

    if seek_ts is not None:
        try:
            container.seek(seek_ts, backward=True, any_frame=False, stream=stream)
        except av.error.FFmpegError as exc:  # a stream that cannot seek: the caller decodes from the start
            raise _TimelineMismatch from exc
    try:
        for packet in container.demux(stream):
            yield from packet.decode()
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(
            f"Could not decode a frame of {container.name} ({_reason(exc)}). {_REENCODE_HINT}"
        ) from exc


def _to_rgb(frame) -> UInt8[np.ndarray, "height width 3"]:
    """A decoded frame as RGB uint8 at its native size, using the frame's own colour matrix and range."""
    return frame.reformat(format="rgb24", src_color_range=frame.color_range).to_ndarray()


def _advance_to(frames: Iterator, target_pts: int):
    """Decode forward to the frame whose pts is ``target_pts``; a frame past it means the table is wrong."""
    for frame in frames:
        if frame.pts is None or frame.pts > target_pts:
            raise _TimelineMismatch
        if frame.pts == target_pts:
            return frame
    raise _TimelineMismatch


def _seek_to(container, stream, seek_targets: list[int], target_pts: int) -> tuple[Iterator, object]:
    """Seek and decode up to the frame at ``target_pts``, trying each seek target until one lands early enough."""
    for seek_ts in seek_targets:
        frames = _decoded_frames(container, stream, seek_ts)
        try:
            return frames, _advance_to(frames, target_pts)
        except _TimelineMismatch:
            continue  # the seek landed past the frame: try an earlier point
    raise _TimelineMismatch


def _decode_by_seeking(container, stream, timeline: _Timeline, positions: list[int]) -> dict[int, np.ndarray]:
    """Decode just the frames at ``positions``: seek to the keyframe before each, decode forward.

    Targets share one decode run when no keyframe lies between them. Raises
    :class:`_TimelineMismatch` if the decoder does not produce the frame the packets announced.
    """
    images: dict[int, np.ndarray] = {}
    frames, last_pts = None, None
    for position in sorted(set(positions)):
        target_pts = timeline.pts[position]
        if frames is not None and timeline.keyframes[position].pts <= last_pts:
            frame = _advance_to(frames, target_pts)  # its keyframe is already decoded: keep going
        else:
            frames, frame = _seek_to(container, stream, timeline.seek_targets(position), target_pts)
        images[position] = _to_rgb(frame)
        last_pts = frame.pts
    return images


def _timeline_from_decoding(path: Path) -> _Timeline:
    """The frame table read by decoding every frame (for files whose packets lack usable timestamps)."""
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        pts, durations = [], []
        for frame in _decoded_frames(container, stream):
            if frame.pts is None:
                raise VideoDecodeError(
                    f"{path} has frames without presentation timestamps (a raw stream?), so their times are "
                    "unknown. Remux it into a container that stores them, stating the rate, e.g. "
                    "`ffmpeg -framerate 25 -i in.h264 -c copy out.mkv`."
                )
            pts.append(frame.pts)
            durations.append(getattr(frame, "duration", None))
        if not pts:
            raise VideoDecodeError(f"{path} decodes to zero frames; the file is empty or truncated.")
        if any(b <= a for a, b in zip(pts, pts[1:])):
            raise VideoDecodeError(f"{path} has frames whose timestamps do not increase. {_REENCODE_HINT}")
        return _Timeline(pts, pts[-1] + _last_duration(durations, pts, stream), _time_base(stream))


def _decode_in_order(path: Path, positions: list[int]) -> dict[int, np.ndarray]:
    """Decode the file from the start, keeping the frames at ``positions`` (counting decoded frames)."""
    wanted = set(positions)
    images: dict[int, np.ndarray] = {}
    with _open_container(path) as container:
        for count, frame in enumerate(_decoded_frames(container, _video_stream(container, path))):
            if count in wanted:
                images[count] = _to_rgb(frame)
            if len(images) == len(wanted):
                break
    return images


def _load_video_file(
    path: Path, num_frames: int | None, sampling: str, start: Fraction | None, end: Fraction | None
) -> Video:
    """Sample and decode a video file; the frame table comes from the packets, or else from decoding."""
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        source_fps = _source_fps(stream)
        timeline = _timeline_from_packets(container, stream, path)
        if timeline is not None:
            positions = select_frames(
                timeline.times(), timeline.end_time(), num_frames, sampling, start, end, source_fps
            )
            try:
                images = _decode_by_seeking(container, stream, timeline, positions)
                return _video_from(images, positions, timeline, path, source_fps)
            except _TimelineMismatch:
                pass  # the decoder disagrees with the packets: trust only decoded frames below
    timeline = _timeline_from_decoding(path)
    positions = select_frames(timeline.times(), timeline.end_time(), num_frames, sampling, start, end, source_fps)
    return _video_from(_decode_in_order(path, positions), positions, timeline, path, source_fps)


def _video_from(
    images: dict[int, np.ndarray], positions: list[int], timeline: _Timeline, path: Path, source_fps: float | None
) -> Video:
    """Assemble the :class:`Video` of the frames at ``positions``."""
    frames = np.stack([images[p] for p in positions])
    timestamps = np.array([float(timeline.time_base * timeline.pts[p]) for p in positions])
    return Video(frames, timestamps, str(path), np.asarray(positions, dtype=np.int64), source_fps)


# ---------------------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------------------


def _natural_key(name: str) -> tuple[list[int | str], str]:
    """Sort key that orders ``frame2.png`` before ``frame10.png`` (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", name)  # text, digits, text, ...: same types at the same places
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(parts)], name


def _image_files(folder: Path) -> list[Path]:
    files = [
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    ]
    if not files:
        raise VideoDecodeError(
            f"{folder} is a directory without images ({', '.join(sorted(IMAGE_SUFFIXES))}). "
            "Pass a video file, or a folder of frame images."
        )
    return sorted(files, key=lambda p: _natural_key(p.name))


def _read_image(path: Path) -> UInt8[np.ndarray, "height width 3"]:
    """One image file as RGB uint8; 16-bit grey images are scaled to 8 bits (``/ 257``), not clipped.

    Floating-point images, 32-bit integer ones (mode ``"I"`` outside PNG and 16-bit TIFF:
    their levels may be 8-, 16- or 32-bit) and integer ones with values outside 16 bits have
    no one meaning in 8 bits (a 0-1 float would turn black if clipped), so they are refused.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode == "F":
                raise VideoDecodeError(
                    f"{path} is a floating-point image; its values have no one meaning in 8 bits. "
                    "Convert the frames to 8-bit RGB images (PNG or JPEG) first."
                )
            if image.mode == "I" and not _stores_16_bits(image):
                raise VideoDecodeError(
                    f"{path} is a 32-bit integer image: whether its values are 8-, 16- or 32-bit levels is not "
                    "known, so no 8-bit conversion is the one meant. Convert the frames to 8-bit RGB images "
                    "(PNG or JPEG) first."
                )
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                grey = np.asarray(image, dtype=np.float64)
                if grey.size and (grey.min() < 0 or grey.max() > 65535):
                    raise VideoDecodeError(
                        f"{path} is a 32-bit integer image with values from {grey.min():g} to {grey.max():g}, "
                        "outside 16 bits; converting it to 8 bits would clip it. Convert the frames to 8-bit RGB first."
                    )
                return np.repeat(np.round(grey / 257).astype(np.uint8)[..., None], 3, axis=-1)
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise VideoDecodeError(f"Could not read the image {path} ({exc}). Remove it or convert it to PNG.") from exc


def _stores_16_bits(image: Any) -> bool:
    """Whether a mode-``"I"`` image holds 16-bit levels: a PNG (PNG has no 32-bit grey; older Pillow
    opens 16-bit grey PNGs as ``"I"``) or a TIFF whose BitsPerSample says 16."""
    if image.format == "PNG":
        return True
    if image.format == "TIFF":
        bits = image.tag_v2.get(258)  # BitsPerSample
        return (bits if isinstance(bits, tuple) else (bits,)) == (16,)
    return False


def _stack_same_size(images: list[np.ndarray], names: list[str]) -> np.ndarray:
    sizes = {image.shape[:2] for image in images}
    if len(sizes) > 1:
        listed = ", ".join(f"{name}: {image.shape[1]}x{image.shape[0]}" for name, image in zip(names, images))
        raise VideoDecodeError(f"The images differ in size ({listed}); resize them to one size first.")
    return np.stack(images)


def _load_image_folder(
    folder: Path,
    num_frames: int | None,
    sampling: str,
    start: Fraction | None,
    end: Fraction | None,
    fps: Fraction | None,
) -> Video:
    """Sample a folder of frame images (natural name order); times are ``index / fps`` if ``fps`` is given."""
    files = _image_files(folder)
    if fps is None and (start is not None or end is not None):
        raise VideoDecodeError(
            f"start/end are times in seconds, but the image folder {folder} has no frame rate; pass fps= as well."
        )
    period = Fraction(1) if fps is None else 1 / fps
    times = [period * i for i in range(len(files))]
    positions = select_frames(times, period * len(files), num_frames, sampling, start, end, 1 / float(period))
    chosen = sorted(set(positions))
    images = dict(zip(chosen, (_read_image(files[p]) for p in chosen)))
    frames = _stack_same_size([images[p] for p in positions], [files[p].name for p in positions])
    timestamps = None if fps is None else np.array([float(times[p]) for p in positions])
    return Video(
        frames, timestamps, str(folder), np.asarray(positions, dtype=np.int64), None if fps is None else float(fps)
    )


# ---------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------


def load_video(
    path: str | os.PathLike,
    num_frames: int | None = 8,
    sampling: Sampling = "uniform",
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
) -> Video:
    """Decode ``num_frames`` frames of a video file (or a folder of images), sampled on time.

    Args:
        path: a video file FFmpeg reads (mp4, webm, mkv, avi, mov, animated GIF, ...), or a
            folder of frame images read in natural name order (``2.png`` before ``10.png``).
        num_frames: how many frames to return; ``None`` for every frame of the clip. More
            frames than the clip holds is refused, never padded with repeats.
        sampling: ``"uniform"``: the frames nearest evenly spaced times from the clip's
            first to its last frame. ``"segment_midpoint"``: the frame on screen at the middle
            of each of ``num_frames`` equal segments of ``[start, end)`` (the paper's
            description). ``"paper"``: the frames the paper's evaluation code reads (the same
            midpoints on frame indices at the stream's average rate; the datasets' default).
            ``"strided"``: every ``s``-th frame of the clip from its first, ``s = clip frames //
            num_frames`` (LongVideoBench's loader).
        start, end: the clip in seconds on the file's clock; a frame belongs to it when its
            presentation time is in ``[start, end)``. Default: the whole video, from the first
            frame's time to the end of the last frame.
        fps: the frame rate of an image folder (frame ``i`` is at ``i / fps`` s); without it a
            folder's frames have no timestamps. Not accepted for video files, which carry
            their own timestamps.

    Returns:
        A :class:`Video`: frames ``(T, H, W, 3)`` uint8 RGB at native size, each frame's
        decoder presentation time (``timestamps``), its index in the source
        (``frame_indices``) and the source's stated rate (``source_fps``).

    Raises:
        VideoDecodeError: the path is missing, holds no video or images, cannot be decoded,
            the clip is empty, or holds fewer frames than ``num_frames``.
    """
    num_frames = _check_num_frames(num_frames)
    sampling = _check_sampling(sampling)
    lo, hi = _check_bounds(start, end)
    rate = _check_fps(fps)
    if not isinstance(path, (str, os.PathLike)):
        raise VideoDecodeError(
            f"load_video takes the path of a video file or frame folder (str or Path), not {type(path).__name__}. "
            "Frames already in memory go straight to model.prepare()."
        )
    p = Path(path)
    if not p.exists():
        raise VideoDecodeError(f"Video file not found: {p}. Check the path (it is resolved from {Path.cwd()}).")
    if p.is_dir():
        return _load_image_folder(p, num_frames, sampling, lo, hi, rate)
    if rate is not None:
        raise VideoDecodeError(
            f"fps= is only for image folders; {p} is a video file whose frames carry their own timestamps. Drop fps=."
        )
    return _load_video_file(p, num_frames, sampling, lo, hi)


# ---------------------------------------------------------------------------------------
# In-memory frames
# ---------------------------------------------------------------------------------------


def _tensor_to_array(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return tensor.numpy()


def _pil_to_array(image) -> np.ndarray:
    """A PIL image as an RGB array; 16-bit and float images are refused (PIL would clip them)."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        raise VideoDecodeError(
            f"A PIL frame has mode {image.mode!r} (16-bit or float); converting it to uint8 would clip it. "
            "Scale it to 8 bits first, e.g. Image.fromarray((np.asarray(img) / 257).astype(np.uint8))."
        )
    return np.asarray(image.convert("RGB"))


def _stack_frame_list(frames: Sequence) -> np.ndarray:
    """Stack a list of PIL images, arrays or tensors, refusing frames of different sizes."""
    if len(frames) == 0:
        raise VideoDecodeError("The video has zero frames; pass at least one frame.")
    arrays = []
    for frame in frames:
        if hasattr(frame, "convert") and hasattr(frame, "mode"):
            arrays.append(_pil_to_array(frame))
        elif isinstance(frame, torch.Tensor):
            arrays.append(_tensor_to_array(frame))
        else:
            arrays.append(np.asarray(frame))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise VideoDecodeError(
            f"The frames differ in size or shape ({sorted(shapes)}); resize them to one size first, "
            "e.g. [img.resize((W, H)) for img in frames]."
        )
    return np.stack(arrays)


def _as_array(video: object) -> np.ndarray:
    """Any supported input as a numpy array (not yet checked)."""
    if isinstance(video, Video):
        return video.frames
    if isinstance(video, (str, os.PathLike)):
        raise VideoDecodeError(f"Got a path ({video}); decode it first with videolens.load_video(path, num_frames=8).")
    if isinstance(video, torch.Tensor):
        return _tensor_to_array(video)
    if isinstance(video, np.ndarray):
        return video
    if isinstance(video, Sequence):
        return _stack_frame_list(video)
    raise VideoDecodeError(
        f"Unsupported video type {type(video).__name__}; pass a videolens.Video, a (T, H, W, 3) "
        "array or tensor, or a list of PIL images."
    )


def _channels_last(arr: np.ndarray) -> np.ndarray:
    """``(T, H, W, 3)`` from ``(T, H, W, 3)`` or ``(T, 3, H, W)``; every other shape is refused with its fix."""
    shape = tuple(arr.shape)
    if arr.ndim == 3:
        hint = (
            "one RGB frame needs a time axis: frames[None]"
            if shape[-1] == 3
            else "grey (T, H, W) frames need 3 channels: np.repeat(frames[..., None], 3, axis=-1)"
        )
        raise VideoDecodeError(f"Expected frames of shape (T, H, W, 3) or (T, 3, H, W); got shape {shape}: {hint}.")
    if arr.ndim != 4:
        raise VideoDecodeError(f"Expected frames of shape (T, H, W, 3) or (T, 3, H, W); got shape {shape}.")
    if shape[0] == 0:
        raise VideoDecodeError("The video has zero frames; pass at least one frame.")
    if shape[-1] != 3 and shape[1] == 3:
        arr = arr.transpose(0, 2, 3, 1)
    elif shape[-1] == 1 or (shape[-1] != 3 and shape[1] == 1):
        raise VideoDecodeError(
            f"Got grey frames of shape {shape}; expected (T, H, W, 3) RGB. "
            "Repeat the channel: np.repeat(frames, 3, axis=-1) for (T, H, W, 1)."
        )
    elif shape[-1] == 4:
        raise VideoDecodeError(f"Got 4-channel (RGBA) frames of shape {shape}; drop the alpha: frames[..., :3].")
    if arr.shape[-1] != 3:
        raise VideoDecodeError(f"Expected RGB frames of shape (T, H, W, 3) or (T, 3, H, W); got shape {shape}.")
    if 0 in arr.shape[1:3]:
        raise VideoDecodeError(f"The frames have no pixels (shape {shape}); pass frames of at least 1x1.")
    return arr


def _float_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] scaled to 0..255 and rounded; NaN/inf and other ranges refused."""
    if not np.all(np.isfinite(arr)):
        raise VideoDecodeError("The frames hold NaN or inf values; pass finite floats in [0, 1] or uint8 frames.")
    low, high = float(arr.min()), float(arr.max())
    if low < 0.0 or high > 1.0:
        hint = (
            "for -1..1 normalised frames use (frames + 1) / 2"
            if low < 0.0
            else "for floats holding 0..255 use frames.round().astype(np.uint8)"
        )
        raise VideoDecodeError(
            f"Float frames range over [{low:g}, {high:g}]; pass uint8 frames (0..255) or floats in [0, 1] ({hint})."
        )
    return np.round(arr.astype(np.float64) * 255.0).astype(np.uint8)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """uint8 frames as they are, floats in [0, 1] scaled; every other dtype refused with its conversion."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        raise VideoDecodeError("Got bool frames (a mask?); pass uint8 frames, e.g. frames.astype(np.uint8) * 255.")
    if np.issubdtype(arr.dtype, np.floating):
        return _float_to_uint8(arr)
    if np.issubdtype(arr.dtype, np.integer):
        low, high = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        how = (
            "(frames // 257).astype(np.uint8) for 16-bit frames"
            if arr.dtype == np.uint16
            else "frames.astype(np.uint8) if the values are in 0..255"
        )
        raise VideoDecodeError(
            f"Got {arr.dtype} frames (values {low}..{high}); pass uint8 frames (0..255): convert with {how}."
        )
    raise VideoDecodeError(f"Got frames of dtype {arr.dtype}; pass uint8 frames (0..255) or floats in [0, 1].")


def as_frames(video: object) -> UInt8[np.ndarray, "frame height width 3"]:
    """Normalise any supported video input to ``(T, H, W, 3)`` uint8 frames, or refuse it.

    Accepts a :class:`Video`, a numpy array or torch tensor of shape ``(T, H, W, 3)`` or
    ``(T, 3, H, W)``, or a list of PIL images / arrays of one size. uint8 passes unchanged;
    floats in [0, 1] are scaled by 255 and rounded. Refused (with the fix in the message):
    floats outside [0, 1] or NaN/inf, other integer dtypes (uint16, int64, ...), bool,
    grey or RGBA frames, other shapes, frames of mixed sizes, and paths (use :func:`load_video`).
    """
    arr = _channels_last(_as_array(video))
    return np.ascontiguousarray(_to_uint8(arr))
