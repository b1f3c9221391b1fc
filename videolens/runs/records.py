"""Append-only result logs that a crash cannot corrupt: one checksummed line per sample.

Format (one record per line, each line valid JSON)::

    {"crc32":"1a2b3c4d","record":{"key":"Action Sequence/3","index":3,"rows":[...],"info":{...}}}\\n

``crc32`` is the CRC-32 of the exact bytes of the ``record`` value as written. A line is
a result only when it is complete (ends in ``\\n``), has that shape, and its checksum
matches. Why a crash never yields a torn or half-counted row:

- a sample's rows are written as one record, in one ``write`` of one line, then flushed
  and ``fsync``-ed before the next sample starts: a sample is either wholly in the log or
  not at all, and resuming recomputes only the samples not in it;
- a process killed in the middle of a write leaves at most one incomplete last line; it
  fails the checks, so readers never see it, and the next writer cuts it off before
  appending (:meth:`RecordLog.open`), so it cannot merge with the next record;
- a line damaged in place (a disk error) fails its checksum and is skipped with a warning.

One file per writing process (a *shard*): processes never append to the same file.
"""

from __future__ import annotations

import json
import os
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

_HEAD = b'{"crc32":"'
_MIDDLE = b'","record":'
_TAIL = b"}\n"
_CRC_CHARS = 8

#: Test hook: seconds to pause halfway through every record write, so a test can kill a
#: process in the middle of one. Never set it in real runs.
SLOW_WRITE_ENV = "VIDEOLENS_TEST_SLOW_WRITE"


def jsonable(value: Any) -> Any:
    """JSON for the values analyses put in rows: tensors as lists, numpy scalars as numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def encode(record: dict[str, Any]) -> bytes:
    """One complete line for ``record``."""
    body = json.dumps(record, default=jsonable, separators=(",", ":")).encode()
    crc = b"%08x" % zlib.crc32(body)
    return _HEAD + crc + _MIDDLE + body + _TAIL


def decode(line: bytes) -> dict[str, Any] | None:
    """The record a complete line holds, or None when the line is torn or damaged."""
    start = len(_HEAD) + _CRC_CHARS + len(_MIDDLE)
    if not (line.startswith(_HEAD) and line.endswith(_TAIL) and line[len(_HEAD) + _CRC_CHARS :].startswith(_MIDDLE)):
        return None
    body = line[start : -len(_TAIL)]
    if b"%08x" % zlib.crc32(body) != line[len(_HEAD) : len(_HEAD) + _CRC_CHARS]:
        return None
    try:
        record = json.loads(body)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _scan(data: bytes) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """``(end offset, record or None)`` for every complete line of ``data``."""
    offset = 0
    while True:
        end = data.find(b"\n", offset)
        if end < 0:
            return
        yield end + 1, decode(data[offset : end + 1])
        offset = end + 1


class RecordLog:
    """One shard: an append-only file of records."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh: BinaryIO | None = None

    def read(self) -> list[dict[str, Any]]:
        """Every intact record, in the order written (a torn last line is not one)."""
        if not self.path.exists():
            return []
        out, damaged = [], 0
        for _, record in _scan(self.path.read_bytes()):
            if record is None:
                damaged += 1
            else:
                out.append(record)
        if damaged:
            warnings.warn(f"{self.path}: skipped {damaged} damaged record line(s) (checksum mismatch).", stacklevel=2)
        return out

    def _intact_length(self) -> int:
        """Bytes up to the end of the last intact record: what follows it is a torn write."""
        if not self.path.exists():
            return 0
        length = 0
        for end, record in _scan(self.path.read_bytes()):
            if record is not None:
                length = end
        return length

    def open(self) -> RecordLog:
        """Open for appending, first cutting off whatever a killed writer left after the last intact record."""
        if self._fh is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        keep = self._intact_length()
        fh = open(self.path, "ab")  # noqa: SIM115 (held open across appends, closed in close())
        if fh.tell() > keep:
            fh.truncate(keep)
            os.fsync(fh.fileno())
        if new:
            _fsync_folder(self.path.parent)
        self._fh = fh
        return self

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line, then flush and fsync it."""
        if self._fh is None:
            self.open()
        assert self._fh is not None
        line = encode(record)
        pause = float(os.environ.get(SLOW_WRITE_ENV, "0") or 0)
        if pause > 0:  # test hook: leave half a line on disk for a while
            self._fh.write(line[: len(line) // 2])
            self._fh.flush()
            os.fsync(self._fh.fileno())
            time.sleep(pause)
            line = line[len(line) // 2 :]
        self._fh.write(line)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _fsync_folder(folder: Path) -> None:
    """Make a new file's name durable (POSIX: fsync the directory); a no-op where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Replace ``path`` with ``data`` in one step: written to a temporary file, fsynced, renamed into place.

    A reader (or a process killed meanwhile) sees the old file or the new one, never a part.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_folder(path.parent)
    return path
