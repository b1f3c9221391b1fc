"""Reproducible random videos for tests."""

from __future__ import annotations

import numpy as np


def random_video(num_frames: int = 8, height: int = 48, width: int = 48, seed: int = 0) -> np.ndarray:
    """Return a reproducible random RGB video of shape (T, H, W, 3), dtype uint8.

    Any frame size works with the tiny models: their processors resize frames to the tiny
    resolution (:mod:`videolens.testing.sizes`).
    """
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(num_frames, height, width, 3), dtype=np.uint8)
