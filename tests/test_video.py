"""Decoding videos with decord: sampling, timestamps, bad files."""

from __future__ import annotations

import av
import numpy as np
import pytest

from videolens import VideoDecodeError, load_video
from videolens.io.video import sample_indices


def write_video(path, n_frames: int = 30, fps: int = 10, size: int = 32) -> None:
    """Encode frames whose red channel counts the frame index (to check which frames decode)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(n_frames):
            img = np.zeros((size, size, 3), dtype=np.uint8)
            img[..., 0] = i * 8
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_load_video_uniform_and_midpoints(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path)
    video = load_video(path, num_frames=4)
    assert video.frames.shape == (4, 32, 32, 3) and video.frames.dtype == np.uint8
    assert np.allclose(video.timestamps, [0.0, 1.0, 1.9, 2.9], atol=1e-6)
    red = video.frames[..., 0].mean(axis=(1, 2))
    assert np.all(np.diff(red) > 0)  # later frames are redder
    mid = load_video(path, num_frames=3, sampling="segment_midpoint")
    assert np.allclose(mid.timestamps, [0.5, 1.5, 2.5], atol=0.051)
    assert mid.fps == pytest.approx(1.0)
    bounded = load_video(path, num_frames=2, start=1.0, end=2.0)
    assert bounded.timestamps[0] >= 1.0 and bounded.timestamps[-1] <= 2.05


def test_sample_indices():
    assert sample_indices(100, 4).tolist() == [0, 33, 66, 99]
    assert sample_indices(80, 8, "segment_midpoint").tolist() == [5, 15, 25, 35, 45, 55, 65, 75]


def test_missing_corrupt_and_empty_inputs(tmp_path):
    with pytest.raises(VideoDecodeError, match="not found"):
        load_video(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoDecodeError, match="Could not decode"):
        load_video(bad)
    with pytest.raises(VideoDecodeError, match="directory"):
        load_video(tmp_path)
    with pytest.raises(VideoDecodeError, match="at least 1"):
        sample_indices(10, 0)
