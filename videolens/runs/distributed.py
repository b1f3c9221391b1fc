"""Data parallelism over samples with ``torch.distributed``: which process am I, and waiting for the others.

Under ``torchrun`` every process runs the same command; process ``rank`` of ``world_size``
takes samples ``rank, rank + world_size, ...`` and writes its own shard, and rank 0
merges the shards into one result when all are done (``videolens report`` merges them
at any time). Collectives that carry decisions (``Run.open``'s verdict, the final
barrier) go through a CPU (gloo) group, so they work the same next to NCCL.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import cache
from typing import Any

#: How long a finished rank waits for the slowest one before giving up (default; see :func:`finish_timeout`).
FINISH_TIMEOUT = timedelta(hours=24)
TIMEOUT_VARIABLE = "VIDEOLENS_FINISH_TIMEOUT_S"


def finish_timeout() -> timedelta:
    """How long ranks wait for each other: ``VIDEOLENS_FINISH_TIMEOUT_S`` seconds if set, else 24 hours.

    A shorter wait frees a job whose rank hangs (a crashed rank ends the job anyway: torchrun
    stops the others); it must still cover the slowest rank's share of the samples.
    """
    raw = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return FINISH_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        from videolens.errors import InputError

        raise InputError(f"{TIMEOUT_VARIABLE}={raw!r} must be a positive number of seconds (e.g. 7200 for 2 hours).")
    return timedelta(seconds=seconds)


def _dist() -> Any:
    import torch.distributed as dist

    return dist if dist.is_available() else None


def is_active() -> bool:
    """Whether this process is part of an initialised process group of more than one process."""
    dist = _dist()
    return bool(dist and dist.is_initialized() and dist.get_world_size() > 1)


def rank_and_world() -> tuple[int, int]:
    """This process' rank and the number of processes (``(0, 1)`` outside a process group)."""
    if not is_active():
        return 0, 1
    dist = _dist()
    return dist.get_rank(), dist.get_world_size()


def launched_world_size() -> int:
    """The number of processes ``torchrun`` (or SLURM via torchrun) started, from its environment."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def local_rank() -> int:
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def init_from_environment(use_cuda: bool) -> bool:
    """Join the process group ``torchrun`` describes (NCCL on GPUs, gloo on CPU); False when run alone."""
    dist = _dist()
    if dist is None or launched_world_size() < 2 or dist.is_initialized():
        return False
    timeout = finish_timeout()  # a bad value is refused before the group is joined
    if use_cuda:
        import torch

        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timeout)
    return True


@cache
def _cpu_group() -> Any:
    dist = _dist()
    return dist.new_group(backend="gloo", timeout=finish_timeout()) if dist.get_backend() != "gloo" else None


def broadcast_from_first(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (the value itself outside a process group)."""
    if not is_active():
        return value
    box = [value]
    _dist().broadcast_object_list(box, src=0, group=_cpu_group())
    return box[0]


def barrier() -> None:
    """Wait until every rank arrives (nothing outside a process group)."""
    if is_active():
        _dist().barrier(group=_cpu_group())


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    dist = _dist()
    if dist is not None and dist.is_initialized():
        dist.destroy_process_group()
        _cpu_group.cache_clear()
