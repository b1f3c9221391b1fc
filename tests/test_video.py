"""load_video: time-based sampling, variable frame rates, start/end, image folders, refusals."""

from __future__ import annotations

import wave
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image
from test_video_helpers import (
    assert_matches_reference,
    coded_frame,
    expected_positions,
    read_code,
    reference_decode,
    vfr_pts_ms,
    write_video,
)

import videolens.io.video as video_module
from videolens import VideoDecodeError, load_video
from videolens.io.video import Video, select_frames

VFR_CODECS = {
    # lossless, a keyframe every 12 frames
    "ffv1.mkv": {"codec": "ffv1", "options": {"g": "12"}},
    # lossy, B-frames and open GOPs (leading pictures), a keyframe every 12 frames
    "h264.mp4": {
        "codec": "libx264",
        "options": {"x264-params": "keyint=12:min-keyint=12:bframes=3:b-adapt=0:open-gop=1:log-level=error"},
    },
}


@pytest.fixture(scope="module")
def vfr_files(tmp_path_factory):
    """130 frames: 30 at 1/30 s, then 100 at 1/10 s (11 s in all); each frame spells its index."""
    folder = tmp_path_factory.mktemp("vfr")
    pts = vfr_pts_ms()
    images = [coded_frame(i) for i in range(len(pts))]
    files = {}
    for name, how in VFR_CODECS.items():
        files[name] = folder / name
        write_video(files[name], images, pts, **how)
    return files


def seconds(values):
    return [Fraction(v) for v in values]


# --- sampling on time ---------------------------------------------------------------------


def test_select_frames_on_a_constant_rate():
    times = seconds(range(100))
    assert select_frames(times, Fraction(100), 4) == [0, 33, 66, 99]
    assert select_frames(seconds(range(80)), Fraction(80), 8, "segment_midpoint") == [5, 15, 25, 35, 45, 55, 65, 75]
    assert select_frames(times, Fraction(100), None, start=Fraction(10), end=Fraction(13)) == [10, 11, 12]
    assert select_frames(times, Fraction(100), 1) == [0]


def test_select_frames_on_a_variable_rate():
    times = seconds([0, 1, 2, 10, 20])  # dense, then sparse
    assert select_frames(times, Fraction(30), 3) == [0, 3, 4]  # nearest to 0, 10, 20
    assert select_frames(times, Fraction(30), 3, "segment_midpoint") == [2, 3, 4]  # shown at 5, 15, 25
    assert select_frames(times, Fraction(30), 2, start=Fraction(1), end=Fraction(15)) == [1, 3]
    # a frame on screen at two sample times is returned twice (samples stay even in time)
    assert select_frames(times, Fraction(30), 4, "segment_midpoint") == [2, 3, 3, 4]


def test_uniform_picks_the_earlier_frame_on_a_tie():
    assert select_frames(seconds(range(10)), Fraction(10), 3) == [0, 4, 9]  # 4.5 is between 4 and 5


# --- files ------------------------------------------------------------------------------------


def test_constant_rate_file(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, [coded_frame(i) for i in range(30)], [i * 100 for i in range(30)], codec="mpeg4", rate=10)
    video = load_video(path, num_frames=4)
    assert video.frames.shape == (4, 32, 64, 3) and video.frames.dtype == np.uint8
    assert np.allclose(video.timestamps, [0.0, 1.0, 1.9, 2.9])
    assert video.frame_indices.tolist() == [0, 10, 19, 29]
    assert [read_code(frame) for frame in video.frames] == [0, 10, 19, 29]
    assert video.source_fps == pytest.approx(10.0) and video.source == str(path)
    mid = load_video(path, num_frames=3, sampling="segment_midpoint")
    assert np.allclose(mid.timestamps, [0.5, 1.5, 2.5]) and mid.fps == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(VFR_CODECS))
@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_frames": 4},
        {"num_frames": 9, "sampling": "segment_midpoint"},
        {"num_frames": 4, "start": 3.0, "end": 6.0},
        {"num_frames": 5, "sampling": "segment_midpoint", "start": 0.5, "end": 2.05},
        {"num_frames": None, "start": 0.9, "end": 1.35},
    ],
    ids=["uniform", "midpoint", "uniform-3s-6s", "midpoint-0.5s-2.05s", "all-0.9s-1.35s"],
)
def test_variable_frame_rate_timestamps_are_decoder_pts(vfr_files, name, kwargs):
    reference = reference_decode(vfr_files[name])
    video = load_video(vfr_files[name], **kwargs)
    start, end = kwargs.get("start"), kwargs.get("end")
    if kwargs["num_frames"] is None:
        expected = [i for i, t in enumerate(reference.times) if start - 1e-9 <= t < end - 1e-9]
    else:
        expected = expected_positions(
            reference.times, reference.end, kwargs["num_frames"], kwargs.get("sampling", "uniform"), start, end
        )
    assert_matches_reference(video, reference, expected)
    assert [read_code(frame) for frame in video.frames] == video.frame_indices.tolist()  # the pixels say which frame
    if start is not None:
        assert np.all((video.timestamps >= start) & (video.timestamps < end))


def test_the_variable_rate_clip_that_used_to_fail(vfr_files):
    """``index / average fps`` made this an empty frame range on an 11 s clip."""
    video = load_video(vfr_files["ffv1.mkv"], 4, start=3.0, end=6.0)
    assert np.allclose(video.timestamps, [3.0, 4.0, 4.9, 5.9])
    assert [read_code(frame) for frame in video.frames] == [50, 60, 69, 79]


def test_seeks_instead_of_decoding_everything(vfr_files, monkeypatch):
    decoded = []
    original = video_module._decoded_frames

    def counting(*args, **kwargs):
        for frame in original(*args, **kwargs):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(video_module, "_decoded_frames", counting)
    video = load_video(vfr_files["ffv1.mkv"], 2, start=10.0)
    assert [read_code(frame) for frame in video.frames] == [120, 129]
    assert len(decoded) <= 24  # two groups of 12 frames, not all 130


# --- image folders ------------------------------------------------------------------------


def write_frames(folder, count, size=(64, 32), prefix="frame"):
    folder.mkdir(exist_ok=True)
    for i in range(count):
        Image.fromarray(coded_frame(i, size[1], size[0])).save(folder / f"{prefix}{i + 1}.png")
    return folder


def test_image_folder_in_natural_order(tmp_path):
    folder = write_frames(tmp_path / "frames", 12)
    (folder / "notes.txt").write_text("not a frame")
    video = load_video(folder, num_frames=None)
    assert [read_code(frame) for frame in video.frames] == list(range(12))  # frame2 before frame10
    assert video.timestamps is None and video.fps is None and video.source_fps is None
    assert load_video(folder, 4).frame_indices.tolist() == [0, 4, 7, 11]


def test_image_folder_with_fps_has_times(tmp_path):
    folder = write_frames(tmp_path / "frames", 12)
    video = load_video(folder, num_frames=3, fps=10, start=0.2, end=0.8)
    assert video.frame_indices.tolist() == [2, 4, 7]
    assert np.allclose(video.timestamps, [0.2, 0.4, 0.7]) and video.source_fps == 10.0


def test_image_folder_grey_and_16_bit_images(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 100, dtype=np.uint8)).save(folder / "a1.png")
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(folder / "a2.png")
    video = load_video(folder, num_frames=None)
    assert video.frames.shape == (2, 8, 8, 3)
    assert video.frames[0].max() == video.frames[0].min() == 100 and video.frames[1].min() == 255


def test_image_folder_refuses_32_bit_integer_images_but_reads_16_bit_tiffs(tmp_path):
    """A 32-bit integer TIFF (mode "I") has no known level scale: refused, not darkened by /257."""
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 200, dtype=np.int32), mode="I").save(folder / "a1.tif")
    with pytest.raises(VideoDecodeError, match=r"32-bit integer image.*8-bit RGB"):
        load_video(folder, num_frames=None)
    (folder / "a1.tif").unlink()
    Image.fromarray(np.full((8, 8), 257 * 90, dtype=np.uint16)).save(folder / "a1.tif")
    assert Image.open(folder / "a1.tif").mode.startswith("I")
    assert load_video(folder, num_frames=None).frames.min() == 90


# --- refusals ---------------------------------------------------------------------------------


def test_refuses_more_frames_than_the_clip_holds(vfr_files):
    with pytest.raises(VideoDecodeError, match=r"has only 130 frames.*num_frames=None"):
        load_video(vfr_files["ffv1.mkv"], num_frames=131)
    with pytest.raises(VideoDecodeError, match=r"has only 4 frames"):
        load_video(vfr_files["ffv1.mkv"], num_frames=5, start=10.55)
    assert load_video(vfr_files["ffv1.mkv"], num_frames=None).num_frames == 130


def test_refuses_an_empty_clip(vfr_files):
    with pytest.raises(VideoDecodeError, match="start must be before end"):
        load_video(vfr_files["ffv1.mkv"], start=6.0, end=3.0)
    with pytest.raises(
        VideoDecodeError, match=r"holds no frames: the video spans \[0.000 s, 11.000 s\) \(130 frames\)"
    ):
        load_video(vfr_files["ffv1.mkv"], start=20.0, end=30.0)
    with pytest.raises(VideoDecodeError, match="holds no frames"):
        load_video(vfr_files["ffv1.mkv"], start=1.01, end=1.05)  # between two frames


def test_refuses_missing_unreadable_and_empty_inputs(tmp_path, capfd):
    with pytest.raises(VideoDecodeError, match="not found"):
        load_video(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoDecodeError, match="Could not decode.*Re-encode"):
        load_video(bad)
    assert capfd.readouterr().err == ""  # no FFmpeg noise
    with pytest.raises(VideoDecodeError, match="directory without images"):
        load_video(tmp_path)
    audio = tmp_path / "tone.wav"
    with wave.open(str(audio), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(8000)
        out.writeframes(np.zeros(800, dtype=np.int16).tobytes())
    with pytest.raises(VideoDecodeError, match="no video stream"):
        load_video(audio)


def test_refuses_a_truncated_file(vfr_files, tmp_path):
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(vfr_files["ffv1.mkv"].read_bytes()[:300])
    with pytest.raises(VideoDecodeError, match="Could not decode|zero frames"):
        load_video(cut)


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        ({"num_frames": 0}, "at least 1"),
        ({"num_frames": 2.5}, "whole number"),
        ({"num_frames": True}, "whole number"),
        ({"sampling": "random"}, "Unknown sampling"),
        ({"start": float("nan")}, "finite"),
        ({"end": "3s"}, "not a number"),
        ({"fps": 25}, "only for image folders"),
    ],
)
def test_refuses_bad_arguments(vfr_files, kwargs, phrase):
    with pytest.raises(VideoDecodeError, match=phrase):
        load_video(vfr_files["ffv1.mkv"], **kwargs)


def test_image_folder_refusals(tmp_path):
    folder = write_frames(tmp_path / "frames", 3)
    with pytest.raises(VideoDecodeError, match="pass fps="):
        load_video(folder, 2, start=0.5)
    with pytest.raises(VideoDecodeError, match="fps=0"):
        load_video(folder, 2, fps=0)
    Image.new("RGB", (40, 32)).save(folder / "frame4.png")
    with pytest.raises(VideoDecodeError, match="differ in size.*resize"):
        load_video(folder, num_frames=None)
    (folder / "frame5.png").write_bytes(b"not a png")
    with pytest.raises(VideoDecodeError, match="Could not read the image"):
        load_video(folder, num_frames=None)


def test_video_records_stay_constructible():
    frames = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    video = Video(frames=frames, timestamps=[0.0, 0.5, 1.0])
    assert video.fps == pytest.approx(2.0) and video.frame_indices is None and video.source_fps is None
    assert Video(frames).timestamps is None
    with pytest.raises(VideoDecodeError, match="2 timestamps for 3 frames"):
        Video(frames, timestamps=[0.0, 1.0])
    with pytest.raises(VideoDecodeError, match="decrease"):
        Video(frames, timestamps=[0.0, 1.0, 0.5])


def test_packets_without_usable_timestamps_fall_back_to_decoding(tmp_path):
    """AVI stores no pts; with B-frames the packets cannot be trusted, so every frame is decoded."""
    path = tmp_path / "bframes.avi"
    write_video(
        path,
        [coded_frame(i) for i in range(12)],
        list(range(12)),
        Fraction(1, 25),
        "mpeg4",
        options={"bf": "2"},
        rate=25,
    )
    reference = reference_decode(path)
    video = load_video(path, num_frames=None)
    assert [read_code(frame) for frame in video.frames] == list(range(12))
    assert_matches_reference(video, reference, list(range(12)))
    assert load_video(path, 3, "segment_midpoint").frame_indices.tolist() == [2, 6, 10]


def test_refuses_a_raw_stream_without_timestamps(tmp_path):
    path = tmp_path / "raw.h264"
    write_video(
        path,
        [coded_frame(i) for i in range(4)],
        [0, 40, 80, 120],
        codec="libx264",
        options={"x264-params": "log-level=error"},
    )
    with pytest.raises(VideoDecodeError, match="without presentation timestamps.*-framerate"):
        load_video(path, num_frames=2)
