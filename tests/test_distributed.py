"""Data parallelism over samples: two torchrun processes (gloo, CPU) give the rows of one process, merged."""

from __future__ import annotations

import os
import subprocess
import sys

import forked_cli
from benchmark_fixtures import many_clips_generic

from videolens.runs.records import RecordLog
from videolens.runs.run import Run

ARGS = ["flow", "--dataset", "generic", "--target", "cross-frame", "--layers", "2", "--window", "2", "--no-progress"]
TABLE = "flow_cross-frame"


def test_two_processes_write_two_shards_that_merge_into_the_single_process_result(tmp_path):
    data = many_clips_generic(tmp_path / "data", 7)
    argv = [*ARGS, "--data-root", str(data)]
    log = str(tmp_path / "child.log")
    assert forked_cli.run([*argv, "--out", str(tmp_path / "one")], log) == 0, open(log).read()[-3000:]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "videolens.cli", *argv, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    shards = tmp_path / "two" / "results" / TABLE
    assert [r["index"] for r in RecordLog(shards / "shard-0.jsonl").read()] == [0, 2, 4, 6]  # every 2nd sample
    assert [r["index"] for r in RecordLog(shards / "shard-1.jsonl").read()] == [1, 3, 5]
    merged, single = Run.load(tmp_path / "two").records(TABLE), Run.load(tmp_path / "one").records(TABLE)
    assert [r["key"] for r in merged] == [r["key"] for r in single] and [r["rows"] for r in merged] == [
        r["rows"] for r in single
    ]
    assert (tmp_path / "two" / f"{TABLE}.csv").read_bytes() == (tmp_path / "one" / f"{TABLE}.csv").read_bytes()
    assert launched.stdout.count("report:") == 1  # rank 0 alone merged and reported


def test_the_wait_for_other_ranks_is_set_in_seconds(monkeypatch):
    from datetime import timedelta

    import pytest

    from videolens.errors import VideoLensError
    from videolens.runs.distributed import finish_timeout

    monkeypatch.delenv("VIDEOLENS_FINISH_TIMEOUT_S", raising=False)
    assert finish_timeout() == timedelta(hours=24)
    monkeypatch.setenv("VIDEOLENS_FINISH_TIMEOUT_S", "7200")
    assert finish_timeout() == timedelta(hours=2)
    for bad in ("two hours", "0", "-5", "inf", "nan"):
        monkeypatch.setenv("VIDEOLENS_FINISH_TIMEOUT_S", bad)
        with pytest.raises(VideoLensError, match="positive number of seconds"):
            finish_timeout()
