"""load_video on the real sample videos, and on re-encodings of one into other formats.

Each result is compared with an independent PyAV pass that decodes every frame of the file
(times and pixels). The real inputs live outside the project (``VIDEOLENS_REAL_INPUTS``,
default ``<repo>/../shared/real-inputs``); re-encodings are written to a temporary folder.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import av
import numpy as np
import pytest
from test_video_helpers import (
    assert_matches_reference,
    evaluation_code_indices,
    expected_positions,
    real_video,
    reference_decode,
    write_video,
)

from videolens import load_video
from videolens.errors import VideoDecodeError

SAMPLES = {  # name: (frames, stated fps)
    "bikes.mp4": (250, 25.0),
    "bigbuckbunny.mp4": (132, 25.0),
    "carphone_pristine.mp4": (120, 30000 / 1001),
    "carphone_distorted.mp4": (120, 30000 / 1001),
}


@functools.cache
def cached_reference(path):
    return reference_decode(path)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_real_samples_match_a_full_decode(name):
    path = real_video(name)
    reference = cached_reference(path)
    count, fps = SAMPLES[name]
    assert len(reference.times) == count
    duration = reference.end
    start, stop = round(0.3 * duration, 2), round(0.6 * duration, 2)
    cases = [
        ({"num_frames": 8}, expected_positions(reference.times, duration, 8)),
        (
            {"num_frames": 8, "sampling": "segment_midpoint"},
            expected_positions(reference.times, duration, 8, "segment_midpoint"),
        ),
        (
            {"num_frames": 5, "start": start, "end": stop},
            expected_positions(reference.times, duration, 5, "uniform", start, stop),
        ),
        (
            {"num_frames": 4, "sampling": "segment_midpoint", "start": start, "end": stop},
            expected_positions(reference.times, duration, 4, "segment_midpoint", start, stop),
        ),
    ]
    for kwargs, expected in cases:
        video = load_video(path, **kwargs)
        assert_matches_reference(video, reference, expected)
        assert video.source_fps == pytest.approx(fps)
        if "start" in kwargs:
            assert np.all((video.timestamps >= start) & (video.timestamps < stop))


def test_real_sample_time_window_returns_every_frame_in_it():
    path = real_video("bikes.mp4")
    video = load_video(path, num_frames=None, start=4.0, end=4.2)
    assert video.frame_indices.tolist() == [100, 101, 102, 103, 104]  # 25 fps: 4.00, 4.04, ..., 4.16
    assert np.allclose(video.timestamps, [4.0, 4.04, 4.08, 4.12, 4.16])
    assert_matches_reference(video, cached_reference(path))


# --- re-encodings --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source_clip():
    """The first 24 frames of carphone (176x144, 29.97 fps): RGB images and pts in 1/30000 s."""
    path = real_video("carphone_pristine.mp4")
    images, pts = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.time_base.numerator, stream.time_base.denominator) == (1, 30000)
        for frame in container.decode(stream):
            images.append(frame.to_ndarray(format="rgb24"))
            pts.append(frame.pts)
            if len(images) == 24:
                break
    return images, pts


def has_encoder(codec: str, pix_fmt: str) -> bool:
    try:
        formats = av.codec.Codec(codec, "w").video_formats or []
    except Exception:
        return False
    return any(f.name == pix_fmt for f in formats)


QUIET_X265 = {"x265-params": "log-level=error"}
FORMATS = {  # id: (file name, codec, pix_fmt, options, crop to (height, width), decoded pixel format prefix)
    "webm-vp8": ("clip.webm", "libvpx", "yuv420p", {"deadline": "realtime", "cpu-used": "8"}, None, "yuv420p"),
    "webm-vp9": ("clip.webm", "libvpx-vp9", "yuv420p", {"deadline": "realtime", "cpu-used": "8"}, None, "yuv420p"),
    "mkv-h264": ("clip.mkv", "libx264", "yuv420p", {"preset": "ultrafast"}, None, "yuv420p"),
    "avi-mpeg4": ("clip.avi", "mpeg4", "yuv420p", {}, None, "yuv420p"),
    "mov-h264": ("clip.mov", "libx264", "yuv420p", {"preset": "veryfast"}, None, "yuv420p"),
    "mp4-hevc": ("clip.mp4", "libx265", "yuv420p", {"preset": "ultrafast", **QUIET_X265}, None, "yuv420p"),
    "mkv-hevc-10bit": ("clip.mkv", "libx265", "yuv420p10le", {"preset": "ultrafast", **QUIET_X265}, None, "yuv420p10"),
    "mkv-hevc-gray": ("clip.mkv", "libx265", "gray", {"preset": "ultrafast", **QUIET_X265}, None, "gray"),
    "mkv-ffv1-gray": ("clip.mkv", "ffv1", "gray", {}, None, "gray"),
    "webm-vp9-odd-size": ("clip.webm", "libvpx-vp9", "yuv420p", {"deadline": "realtime"}, (143, 175), "yuv420p"),
    "mkv-ffv1-odd-size": ("clip.mkv", "ffv1", "yuv444p", {}, (143, 175), "yuv444p"),
    "gif": ("clip.gif", "gif", "rgb8", {}, None, ""),
}


@pytest.mark.parametrize("kind", list(FORMATS))
def test_reencoded_formats_load_with_their_timestamps(kind, source_clip, tmp_path):
    name, codec, pix_fmt, options, crop, decoded_format = FORMATS[kind]
    if not has_encoder(codec, pix_fmt):
        pytest.skip(f"this FFmpeg build has no {codec} encoder for {pix_fmt}")
    images, pts = source_clip
    if crop is not None:
        images = [image[: crop[0], : crop[1]] for image in images]
    path = tmp_path / name
    write_video(path, images, pts, Fraction(1, 30000), codec, pix_fmt, options, rate=Fraction(30000, 1001))
    reference = cached_reference(path)
    assert len(reference.times) == 24 and reference.pix_fmt.startswith(decoded_format)
    source_times = np.asarray(pts) / 30000
    tolerance = 0.011 if kind == "gif" else 1e-3  # GIF stores times in 1/100 s
    assert np.allclose(reference.times, source_times, atol=tolerance)
    for sampling in ("uniform", "segment_midpoint"):
        video = load_video(path, num_frames=6, sampling=sampling)
        height, width = images[0].shape[:2]
        assert video.frames.shape == (6, height, width, 3) and video.frames.dtype == np.uint8
        assert_matches_reference(video, reference, expected_positions(reference.times, reference.end, 6, sampling))
        assert np.allclose(video.timestamps, source_times[video.frame_indices], atol=tolerance)
        if pix_fmt == "gray":
            assert np.all(video.frames[..., 0] == video.frames[..., 2])


def test_gif_written_by_pil_loads(source_clip, tmp_path):
    from PIL import Image

    images, _ = source_clip
    path = tmp_path / "pil.gif"
    frames = [Image.fromarray(image) for image in images[:10]]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[40] * 5 + [120] * 5, loop=0)
    video = load_video(path, num_frames=None)
    assert video.frames.shape == (10, 144, 176, 3)
    assert np.allclose(video.timestamps, [0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.32, 0.44, 0.56, 0.68])
    assert_matches_reference(video, cached_reference(path))


@pytest.mark.parametrize(
    ("name", "bound"),
    [("bikes.mp4", None), ("bigbuckbunny.mp4", None), ("carphone_pristine.mp4", None), ("bikes.mp4", (2.0, 6.0))],
)
def test_paper_sampling_reads_the_frames_the_papers_evaluation_code_reads(name, bound):
    path = real_video(name)
    count, fps = SAMPLES[name]
    expected = evaluation_code_indices(bound, fps, count, 8)
    clip = {"start": bound[0], "end": bound[1]} if bound else {}
    video = load_video(path, 8, "paper", **clip)
    assert video.frame_indices.tolist() == expected
    assert_matches_reference(video, cached_reference(path), expected)


def test_a_truncated_file_is_refused_whatever_the_sampling(tmp_path):
    source = real_video("bikes.mp4")
    whole = tmp_path / "whole.mp4"
    with av.open(str(source)) as src, av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])  # a download stopped at 60%
    assert len(load_video(whole, None).frame_indices) == 250
    for sampling in ("uniform", "segment_midpoint", "paper"):
        with pytest.raises(VideoDecodeError, match="states 250: the file is truncated"):
            load_video(cut, 8, sampling)
