"""Decoding videos ahead of use, in background threads, so the model never waits for the decoder.

:func:`prefetch` keeps a small, bounded window of items loading in a thread pool while
the caller works on the current one, and hands them back in their original order. Video
decoding (PyAV/FFmpeg) spends its time outside the interpreter lock, so a couple of
threads keep up with a GPU; the bound keeps at most ``ahead`` decoded videos in memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Decoder threads and how many samples may be decoded ahead of the one in use.
WORKERS = 2
AHEAD = 4


def prefetch(items: Iterable[T], load: Callable[[T], R], workers: int = WORKERS, ahead: int = AHEAD) -> Iterator[R]:
    """``load(item)`` for each item, in order, computed up to ``ahead`` items in advance.

    An exception raised by ``load`` is raised when its item's turn comes, so an error
    names the sample the caller is at. Closing the iterator early cancels what is queued.
    """
    if workers < 1 or ahead < 1:
        raise ValueError("workers and ahead must be at least 1")
    source = iter(items)
    pending: deque[Future] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="videolens-decode")

    def top_up() -> None:
        while len(pending) < ahead:
            try:
                item = next(source)
            except StopIteration:
                return
            pending.append(pool.submit(load, item))

    try:
        top_up()
        while pending:
            done = pending.popleft()
            top_up()
            yield done.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _decode(item: Any) -> Any:
    return item.decoded() if hasattr(item, "decoded") else item


def prefetch_decoded(samples: Iterable[Any], workers: int = WORKERS, ahead: int = AHEAD) -> Iterator[Any]:
    """Samples with their videos decoded (:meth:`~videolens.data.sample.Sample.decoded`), decoded ahead of use."""
    return prefetch(samples, _decode, workers, ahead)
