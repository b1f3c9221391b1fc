"""The error a run folder raises when it cannot be used as asked."""

from __future__ import annotations

from videolens.errors import InputError


class RunError(InputError):
    """An output folder that holds another run, no run to resume, or a damaged manifest."""
