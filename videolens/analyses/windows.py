"""Layer windows for knockout sweeps, exactly as the reference implementation defines them.

For a sweep position ``l`` in a model of ``n_layers`` layers and a window ``w``:

- ``center``: ``range(max(0, l - w // 2), min(n_layers, l + ceil(w / 2)))`` (w=9: l-4..l+4)
- ``inverse``: every layer not in ``center``
- ``top_down``: ``l .. n_layers - 1``
- ``bottom_up``: ``0 .. l``
"""

from __future__ import annotations

import math
from typing import Literal

from videolens.errors import LayerRangeError, VideoLensError

WindowStyle = Literal["center", "inverse", "top_down", "bottom_up"]


def _check(layer: int, n_layers: int) -> None:
    if not 0 <= layer < n_layers:
        raise LayerRangeError(f"Layer {layer} is outside the model, which has layers 0..{n_layers - 1}.")


def center(layer: int, window: int, n_layers: int) -> list[int]:
    """The ``window`` layers centred on ``layer``, clipped to the model."""
    _check(layer, n_layers)
    return list(range(max(0, layer - window // 2), min(n_layers, layer + math.ceil(window / 2))))


def inverse(layer: int, window: int, n_layers: int) -> list[int]:
    """Every layer outside :func:`center`."""
    inside = set(center(layer, window, n_layers))
    return [x for x in range(n_layers) if x not in inside]


def top_down(layer: int, window: int, n_layers: int) -> list[int]:
    """``layer`` and every layer above it."""
    _check(layer, n_layers)
    return list(range(layer, n_layers))


def bottom_up(layer: int, window: int, n_layers: int) -> list[int]:
    """Every layer up to and including ``layer``."""
    _check(layer, n_layers)
    return list(range(0, layer + 1))


STYLES = {"center": center, "inverse": inverse, "top_down": top_down, "bottom_up": bottom_up}


def window_layers(style: WindowStyle, layer: int, window: int, n_layers: int) -> list[int]:
    """The layers knocked out at sweep position ``layer`` for a window style."""
    if style not in STYLES:
        raise VideoLensError(f"Unknown window style {style!r}; use one of {', '.join(STYLES)}.")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise VideoLensError(f"window must be a whole number of layers, at least 1; got {window!r}.")
    return STYLES[style](layer, window, n_layers)
