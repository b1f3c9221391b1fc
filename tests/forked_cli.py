"""The videolens command in child processes forked from a server that has already imported it.

A fresh interpreter spends seconds importing torch and transformers; the kill tests start
the command a dozen times, so they fork it instead from a multiprocessing *forkserver*
that imported everything once. Each child is a separate process running ``main(argv)``:
killing it with SIGKILL is a real crash (nothing flushed, no cleanup).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Mapping, Sequence

PRELOAD = [
    "torch",
    "transformers",
    "videolens.cli",
    "videolens.core.hooked",
    "videolens.analyses",
    "videolens.data.registry",
    "videolens.runs.report",
    "videolens.viz.plots",
    "model_adapters",
]
_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def _child(argv: list[str], env: dict[str, str], log: str) -> None:
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    import torch

    torch.set_num_threads(1)  # the CPU is shared; as in every run compared here
    from videolens.cli import main

    sys.exit(main(argv))


def start(argv: Sequence[str], log: str, env: Mapping[str, str] | None = None):
    """Start ``videolens <argv>`` in a forked child; returns the running process."""
    process = _context().Process(target=_child, args=(list(argv), dict(env or {}), log), daemon=True)
    process.start()
    return process


def run(argv: Sequence[str], log: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> int | None:
    """Run ``videolens <argv>`` to the end in a forked child; its exit status."""
    process = start(argv, log, env)
    process.join(timeout)
    return process.exitcode
