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


def test_sweep_benchmark_long_video_options(tmp_path):
    result = run(
        "sweep_benchmark.py", "--window", "3", "--frames", "16", "--reference-every", "2", out=tmp_path / "s.json"
    )
    assert result["reference_timed_conditions"] == 11 * 2
    assert result["max_abs_prob_diff"] <= 1e-5
    assert result["videolens_first_sweep_s"] > 0


def test_throughput_benchmark_runs(tmp_path):
    result = run("throughput_benchmark.py", "--samples", "2", out=tmp_path / "t.json")
    assert result["samples"] == 2 and result["conditions_per_sample"] == 11 * 4
    assert abs(sum(result["share"].values()) - 1) < 0.05


def test_cpu_condition_benchmark_runs(tmp_path):
    out = tmp_path / "c.json"
    subprocess.run(
        [sys.executable, "cpu_condition_benchmark.py", "--repeats", "1", "--out", str(out)],
        cwd=BENCH,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(out.read_text())
    assert len(result["per_target"]) == 4
    assert result["all_targets_over_share"] > 0
