"""`videolens discover`: a resumable run on the toy model, and one-line refusals of bad arguments."""

from __future__ import annotations

import json

import pytest

from videolens.cli import main
from videolens.runs.run import Run

ARGS = ["discover", "--tasks", "color", "--n-per-task", "1", "--max-rounds", "1", "--batch", "4", "--no-progress"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_discover_is_a_run_that_resumes(tmp_path, capsys):
    code, out, err = run(capsys, *ARGS, "--out", str(tmp_path))
    assert code == 0, err
    result = Run.load(tmp_path)
    assert result.manifest["command"] == "discover" and result.manifest["arguments"]["tolerance"] == 2.0
    rounds = result.records("discover_search")
    assert [r["key"] for r in rounds] == ["round-0"]
    rows = result.records("discover")[0]["rows"]
    assert {r["condition"] for r in rows} == {"full", "discovered", "paper", "random"}
    pathway = json.loads((tmp_path / "pathway.json").read_text())
    assert pathway["n_layers"] == 8 and "pathway search, rounds recorded: 1" in (tmp_path / "report.html").read_text()
    assert {p for p, _, _ in pathway["paper_share"]} <= {p for p, _ in pathway["candidates"]}
    assert "exact forwards per sample" in out
    before = (tmp_path / "results" / "discover_search" / "shard-0.jsonl").read_bytes()
    code, out, err = run(capsys, *ARGS, "--out", str(tmp_path))  # resumed: nothing recomputed
    assert code == 0, err
    assert (tmp_path / "results" / "discover_search" / "shard-0.jsonl").read_bytes() == before
    assert json.loads((tmp_path / "pathway.json").read_text()) == pathway


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tolerance", "-1"], "--tolerance -1.0 must be 0 or more"),
        (["--batch", "0"], "--batch 0 must be 1 or more"),
        (["--max-rounds", "0"], "--max-rounds 0 must be 1 or more"),
        (["--spec", "70b"], "--spec '70b'"),
        (["--method", "exact"], "invalid choice"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(capsys, extra, message, monkeypatch):
    import videolens.cli

    monkeypatch.setattr(videolens.cli, "_load", lambda *a: pytest.fail("loaded the model"))
    code, _, err = run(capsys, *ARGS, *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_report_rebuilds_a_discover_run(tmp_path, capsys):
    """``videolens report`` gives a discover run its tables and plots again, from the records alone."""
    import pandas as pd

    code, _, err = run(capsys, *ARGS, "--out", str(tmp_path))
    assert code == 0, err
    outputs = ["discover_summary.csv", "discover_curve.csv"]
    written = {name: (tmp_path / name).read_bytes() for name in outputs}
    for name in [*outputs, "report.html"]:
        (tmp_path / name).unlink()
    code, _, err = run(capsys, "report", str(tmp_path))
    assert code == 0, err
    assert {name: (tmp_path / name).read_bytes() for name in outputs} == written
    report = (tmp_path / "report.html").read_text()
    assert "GroupPathway(" in report and "discover_search: search rounds: 1" in report
    # the summary against a hand count of the evaluation records
    rows = [row for record in Run.load(tmp_path).records("discover") for row in record["rows"]]
    summary = pd.read_csv(tmp_path / "discover_summary.csv").set_index("condition")
    for condition in ("full", "discovered", "paper", "random"):
        picked = [r for r in rows if r["condition"] == condition]
        assert summary.loc[condition, "accuracy"] == pytest.approx(
            100 * sum(r["correct"] for r in picked) / len(picked)
        )
        kept = sum(r["kept_edges"] for r in picked) / sum(r["total_edges"] for r in picked)
        assert summary.loc[condition, "suppressed_percent"] == pytest.approx(100 - 100 * kept)
    curve = pd.read_csv(tmp_path / "discover_curve.csv")
    assert len(curve) == sum(len(r["rows"]) for r in Run.load(tmp_path).records("discover_search")) > 0
