"""Exceptions that name the problem and the fix.

Every error videolens raises on bad input derives from :class:`VideoLensError`, so a
notebook can catch them in one place, and each message says what to do next.
"""

from __future__ import annotations


class VideoLensError(Exception):
    """Base class for all errors raised by videolens on bad input."""


class VideoDecodeError(VideoLensError, ValueError):
    """A video file is missing, unreadable, or yields no frames."""


class LayoutError(VideoLensError, ValueError):
    """The token layout cannot be built (text not in the prompt, token counts disagree)."""


class GroupError(VideoLensError, KeyError):
    """A group name that the layout does not know, or a group that is empty."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly instead
        return str(self.args[0]) if self.args else ""


class LayerRangeError(VideoLensError, IndexError):
    """A layer index outside the model."""


class UnsupportedModelError(VideoLensError, ValueError):
    """The Hugging Face architecture has no registered adapter."""


class InterventionError(VideoLensError, ValueError):
    """An intervention that cannot be applied to this prompt or model."""


class InputError(VideoLensError, ValueError):
    """An argument whose value videolens cannot use as given (it says which and what to pass)."""


class StateError(VideoLensError, RuntimeError):
    """A call made where it cannot run (e.g. videolens' attention outside a videolens forward)."""
