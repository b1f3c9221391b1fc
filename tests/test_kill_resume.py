"""Runs killed with SIGKILL at random moments, in the middle of writes too, resume to exactly the uninterrupted rows."""

from __future__ import annotations

import os
import random
import signal
import time

import forked_cli
from benchmark_fixtures import many_clips_generic

from videolens.runs.records import SLOW_WRITE_ENV, RecordLog
from videolens.runs.run import Run

ARGS = [
    "flow",
    "--dataset",
    "generic",
    "--target",
    "cross-frame",
    "--layers",
    "1",
    "5",
    "--window",
    "2",
    "--no-progress",
]
TABLE = "flow_cross-frame"
KILL_ROUNDS = 12


def _bytes(path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _torn(path) -> bool:
    """Whether the shard ends in a half-written line right now."""
    data = _bytes(path)
    return bool(data) and not data.endswith(b"\n")


def _wait(process, ready, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while process.is_alive() and time.monotonic() < deadline and not ready():
        time.sleep(0.002)


def _kill_moment(round_: int, process, shard, rng: random.Random) -> None:
    """Rounds cycle through three moments: starting or resuming; mid-write; after saving some samples."""
    if round_ % 3 == 0:
        time.sleep(rng.uniform(0.0, 0.4))  # loading, reading the shards, cutting a torn tail, computing
    elif round_ % 3 == 1:
        _wait(process, lambda: _torn(shard))  # half a record on disk
    else:
        lines = _bytes(shard).count(b"\n")
        _wait(process, lambda: _bytes(shard).count(b"\n") > lines)  # at least one more sample saved
        time.sleep(rng.uniform(0.0, 0.2))


def test_killed_runs_resume_to_exactly_the_rows_of_an_uninterrupted_run(tmp_path):
    data = many_clips_generic(tmp_path / "data", 12)
    argv = [*ARGS, "--data-root", str(data)]
    log = str(tmp_path / "children.log")
    assert forked_cli.run([*argv, "--out", str(tmp_path / "whole")], log) == 0, open(log).read()[-3000:]

    out = tmp_path / "killed"
    shard = out / "results" / TABLE / "shard-0.jsonl"
    rng = random.Random(20260101)
    saved: list[dict] = []
    kills = torn_kills = 0
    progress_rounds: list[int] = []
    for round_ in range(KILL_ROUNDS):
        child = forked_cli.start([*argv, "--out", str(out)], log, env={SLOW_WRITE_ENV: "0.08"})
        _kill_moment(round_, child, shard, rng)
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
            torn_kills += _torn(shard)
        child.join()
        now = RecordLog(shard).read()
        keys = [r["key"] for r in now]
        assert len(keys) == len(set(keys)), f"round {round_}: a sample was saved twice"
        assert now[: len(saved)] == saved, f"round {round_}: a saved record was lost or changed"
        if len(now) > len(saved):
            progress_rounds.append(round_)
        saved = now
    assert kills >= 10 and torn_kills >= 1, (kills, torn_kills)
    assert len(progress_rounds) >= 3  # saved a bit, killed, resumed, saved more: several times over

    assert forked_cli.run([*argv, "--out", str(out)], log) == 0, open(log).read()[-3000:]
    resumed, whole = Run.load(out).records(TABLE), Run.load(tmp_path / "whole").records(TABLE)
    assert [r["key"] for r in resumed] == [r["key"] for r in whole] == [f"q{i:02d}" for i in range(12)]
    assert [r["rows"] for r in resumed] == [r["rows"] for r in whole]  # every row, exactly, once
    for name in (f"{TABLE}.csv", f"{TABLE}_accuracy.csv"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
