"""Helpers shared by the video tests: coded frames, writing files with PyAV, an independent reference decode.

Everything here is written independently of ``videolens.io.video``: the reference decodes
every frame of a file with plain PyAV and the expected sampling is recomputed with numpy
floats, so the tests compare two separate implementations.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

CODE_BITS = 8
CODE_BLOCK = 8  # pixels per bit: wide black/white bars survive lossy codecs


def coded_frame(index: int, height: int = 32, width: int = CODE_BITS * CODE_BLOCK) -> np.ndarray:
    """An RGB frame whose vertical bars spell ``index`` in binary (bar b is white when bit b is set)."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    for bit in range(CODE_BITS):
        if (index >> bit) & 1:
            frame[:, bit * CODE_BLOCK : (bit + 1) * CODE_BLOCK] = 255
    return frame


def read_code(frame: np.ndarray) -> int:
    """The index spelled by :func:`coded_frame` (read at each bar's centre)."""
    row = frame[frame.shape[0] // 2, CODE_BLOCK // 2 :: CODE_BLOCK, :].mean(axis=-1)[:CODE_BITS]
    return int(((row > 128).astype(np.int64) << np.arange(CODE_BITS)).sum())


def write_video(
    path: Path,
    images: list[np.ndarray],
    pts: list[int],
    time_base: Fraction = Fraction(1, 1000),
    codec: str = "ffv1",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    rate: int = 30,
) -> None:
    """Encode ``images`` with presentation times ``pts`` (in ``time_base``); each packet lasts until the next frame."""
    gaps = [b - a for a, b in zip(pts, pts[1:])]
    gaps.append(gaps[-1] if gaps else 1)
    duration_of = dict(zip(pts, gaps))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = time_base
        for image, p in zip(images, pts):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = p, time_base
            _mux(container, stream.encode(frame), duration_of)
        _mux(container, stream.encode(), duration_of)


def _mux(container, packets, duration_of: dict[int, int]) -> None:
    for packet in packets:
        if packet.pts is not None and packet.pts in duration_of:  # packets come in the codec's time base
            packet.duration = duration_of[packet.pts]
        container.mux(packet)


def vfr_pts_ms(dense: int = 30, sparse: int = 100) -> list[int]:
    """``dense`` frames 1/30 s apart, then ``sparse`` frames 1/10 s apart (milliseconds)."""
    pts = [round(1000 * i / 30) for i in range(dense)]
    return pts + [1000 + 100 * k for k in range(sparse)]


@dataclass
class Reference:
    """Every frame of a file, decoded by plain PyAV: times (s), a digest of its RGB pixels, end of the last frame."""

    times: np.ndarray
    digests: list[str]
    end: float
    pix_fmt: str


def reference_decode(path: Path) -> Reference:
    """Decode every frame of ``path`` in order, without seeking."""
    times, digests, last_duration = [], [], 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            times.append(float(frame.time))
            digests.append(digest(frame.reformat(format="rgb24", src_color_range=frame.color_range).to_ndarray()))
            last_duration = float((frame.duration or 0) * frame.time_base.numerator / frame.time_base.denominator)
            pix_fmt = frame.format.name
    return Reference(np.asarray(times), digests, times[-1] + last_duration, pix_fmt)


def digest(image: np.ndarray) -> str:
    """A fingerprint of an RGB image's shape and pixels (so references need not hold every frame)."""
    return hashlib.blake2b(
        repr(image.shape).encode() + np.ascontiguousarray(image).tobytes(), digest_size=16
    ).hexdigest()


def expected_positions(times, end, num_frames, sampling="uniform", start=None, stop=None) -> list[int]:
    """The sampling contract recomputed with numpy floats (independent of videolens)."""
    times = np.asarray(times, dtype=np.float64)
    lo = 0 if start is None else int(np.searchsorted(times, start - 1e-9, side="left"))
    hi = len(times) if stop is None else int(np.searchsorted(times, stop - 1e-9, side="left"))
    if sampling == "uniform":
        targets = np.linspace(times[lo], times[hi - 1], num_frames)
        return [lo + int(np.argmin(np.round(np.abs(times[lo:hi] - t), 9))) for t in targets]  # ties: the earlier
    clip_start = times[0] if start is None else max(start, times[0])
    clip_end = end if stop is None else min(stop, end)
    mids = clip_start + (np.arange(num_frames) + 0.5) * (clip_end - clip_start) / num_frames
    return [max(lo, lo + int(np.searchsorted(times[lo:hi], m + 1e-9, side="right")) - 1) for m in mids]


def assert_matches_reference(video, reference: Reference, positions: list[int] | None = None) -> None:
    """Each returned frame is the reference frame of the same pts: same index, same time, same pixels."""
    for k, (frame, t) in enumerate(zip(video.frames, video.timestamps)):
        match = int(np.argmin(np.abs(reference.times - t)))
        assert abs(reference.times[match] - t) < 1e-6, f"frame {k}: no decoded frame has time {t}"
        assert int(video.frame_indices[k]) == match
        assert digest(frame) == reference.digests[match], f"frame {k} (t={t}): pixels differ from the reference decode"
    if positions is not None:
        assert video.frame_indices.tolist() == positions


def real_inputs() -> Path:
    """The folder of real sample inputs (env ``VIDEOLENS_REAL_INPUTS``, default ``<repo>/../shared/real-inputs``)."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "real-inputs"
    return Path(os.environ.get("VIDEOLENS_REAL_INPUTS", default))


def real_video(name: str) -> Path:
    """A real sample video, or skip the test saying where it was looked for."""
    path = real_inputs() / "videos" / name
    if not path.is_file():
        pytest.skip(
            f"real sample video {name} not found at {path} (set VIDEOLENS_REAL_INPUTS to the real-inputs folder)"
        )
    return path


def evaluation_code_indices(bound, fps, n_video_frames, num_segments):
    """The frames the paper's evaluation loader reads (VideoChat2's MVBench ``get_index``), as its code computes them."""
    start, end = bound if bound else (-100000, 100000)
    start_idx = max(0, round(start * fps))
    end_idx = min(round(end * fps), n_video_frames - 1)
    seg_size = float(end_idx - start_idx) / num_segments
    return [int(start_idx + (seg_size / 2) + np.round(seg_size * idx)) for idx in range(num_segments)]
