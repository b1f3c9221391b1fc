"""The benchmark scripts run in their CPU-sized variant (correctness only; timings live in benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def run(script: str, *args: str, out: Path) -> dict:
    subprocess.run(
        [sys.executable, script, "--size", "tiny", "--device", "cpu", "--out", str(out), *args],
        cwd=BENCH,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads(out.read_text())


def test_sweep_benchmark_agrees_with_the_reference_method(tmp_path):
    result = run("sweep_benchmark.py", "--window", "3", out=tmp_path / "sweep.json")
    assert result["conditions"] == 11 * 4
    assert result["max_abs_prob_diff"] <= 1e-5
    assert set(result["per_target"]) == {"cross-frame", "vql-to-ql", "question-and-options-to-last", "vq-to-true-opt"}


def test_long_video_benchmark_runs(tmp_path):
    result = run("long_video_benchmark.py", "--frames", "8", out=tmp_path / "long.json")
    assert result["pooled_shape"][2] == 8 + 2 and result["full_cache"].startswith("completed")
