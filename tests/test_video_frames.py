"""as_frames: the in-memory inputs accepted as they are, and the ones refused instead of converted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from videolens import VideoDecodeError
from videolens.io.video import Video, as_frames

RNG = np.random.default_rng(0)
FRAMES = RNG.integers(0, 256, size=(4, 6, 5, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "make",
    [
        lambda: FRAMES,
        lambda: torch.from_numpy(FRAMES),
        lambda: FRAMES.transpose(0, 3, 1, 2),  # (T, 3, H, W)
        lambda: torch.from_numpy(FRAMES).permute(0, 3, 1, 2),
        lambda: [Image.fromarray(frame) for frame in FRAMES],
        lambda: list(FRAMES),
        lambda: [torch.from_numpy(frame) for frame in FRAMES],
        lambda: Video(FRAMES, timestamps=[0, 1, 2, 3]),
    ],
    ids=[
        "uint8",
        "tensor",
        "channels-first",
        "tensor-channels-first",
        "pil-list",
        "array-list",
        "tensor-list",
        "Video",
    ],
)
def test_accepted_inputs_pass_unchanged(make):
    out = as_frames(make())
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, FRAMES)


def test_floats_in_0_1_are_scaled_and_rounded():
    floats = np.array([0.0, 0.5, 1.0, 0.2]).reshape(1, 2, 2, 1).repeat(3, axis=-1).astype(np.float32)
    assert as_frames(floats)[0, :, :, 0].tolist() == [[0, 128], [255, 51]]
    np.testing.assert_array_equal(as_frames(FRAMES / 255.0), FRAMES)
    np.testing.assert_array_equal(as_frames(torch.from_numpy(FRAMES / 255.0).to(torch.bfloat16)).shape, FRAMES.shape)


def test_grey_pil_images_become_rgb():
    out = as_frames([Image.new("L", (5, 6), 77)] * 2)
    assert out.shape == (2, 6, 5, 3) and np.all(out == 77)


@pytest.mark.parametrize(
    "frames, phrase",
    [
        (FRAMES / 127.5 - 1.0, r"\[-1, 1\].*uint8.*floats in \[0, 1\].*\(frames \+ 1\) / 2"),
        (FRAMES.astype(np.float32), r"floats in \[0, 1\].*astype\(np.uint8\)"),
        (np.where(FRAMES > 128, np.nan, 0.5), "NaN"),
        (np.full(FRAMES.shape, np.inf), "NaN or inf"),
        (FRAMES.astype(np.uint16) * 257, r"uint16.*uint8.*// 257"),
        (FRAMES.astype(np.int64), r"int64.*uint8.*astype\(np.uint8\)"),
        (FRAMES > 128, r"bool.*uint8"),
        (FRAMES[..., 0], r"\(T, H, W, 3\).*grey.*np.repeat"),
        (FRAMES[..., :1], r"grey.*np.repeat"),
        (FRAMES[0], r"\(T, H, W, 3\).*frames\[None\]"),
        (np.concatenate([FRAMES, FRAMES[..., :1]], axis=-1), r"RGBA.*\[\.\.\., :3\]"),
        (FRAMES[None], r"\(T, H, W, 3\)"),
        (FRAMES[:, :0], "no pixels"),
        (FRAMES[:0], "zero frames"),
        ([], "zero frames"),
        ([Image.new("RGB", (32, 32)), Image.new("RGB", (40, 32))], r"differ in size.*resize"),
        ([FRAMES[0], FRAMES[0, :3]], r"differ in size.*resize"),
        ([Image.new("I;16", (4, 4))], r"16-bit.*8 bits"),
        ("clip.mp4", "load_video"),
        (42, "Unsupported video type"),
        (FRAMES.astype(np.complex64), "dtype complex64"),
    ],
    ids=[
        "float-1..1",
        "float-0..255",
        "nan",
        "inf",
        "uint16",
        "int64",
        "bool",
        "grey-THW",
        "grey-THW1",
        "single-frame",
        "rgba",
        "5d",
        "empty-frames",
        "zero-T",
        "empty-list",
        "pil-mixed-sizes",
        "array-mixed-sizes",
        "pil-16-bit",
        "path",
        "int",
        "complex",
    ],
)
def test_refused_inputs_name_the_problem_and_the_fix(frames, phrase):
    with pytest.raises(VideoDecodeError, match=phrase):
        as_frames(frames)


def test_video_normalises_and_refuses_its_frames():
    assert Video(FRAMES / 255.0).frames.dtype == np.uint8
    with pytest.raises(VideoDecodeError, match=r"\[0, 1\]"):
        Video(FRAMES * 2.0)
