"""The videolens command: runs on the toy model, writes tables and a report, resumes, fails cleanly."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from benchmark_fixtures import one_thread, tvbench  # noqa: F401 (one_thread: a fixture, used below)

import videolens.cli
from videolens.cli import main
from videolens.runs.manifest import make_manifest, write_manifest
from videolens.runs.run import Run

pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


FLOW = ["flow", "--target", "cross-frame", "--n-per-task", "1", "--tasks", "after", "color", "--no-progress"]


def test_flow_is_a_run_that_resumes_and_rebuilds_its_report(tmp_path, capsys):
    code, out, err = run(capsys, *FLOW, "--out", str(tmp_path))
    assert code == 0, err
    result = Run.load(tmp_path)
    assert result.manifest["command"] == "flow" and result.manifest["arguments"]["target"] == ["cross-frame"]
    assert result.manifest["dataset"] == {"name": "synthetic", "tasks": ["after", "color"], "n_per_task": 1, "seed": 0}
    records = result.records("flow_cross-frame")
    assert [r["key"] for r in records] == ["after-0-0", "color-0-0"] and all(len(r["rows"]) == 8 for r in records)
    csv = (tmp_path / "flow_cross-frame.csv").read_bytes()
    html = (tmp_path / "report.html").read_text()
    assert "plotly" in html and '<script src="http' not in html  # plotly.js is inlined
    shard = tmp_path / "results" / "flow_cross-frame" / "shard-0.jsonl"
    before = shard.read_bytes()
    assert run(capsys, *FLOW, "--out", str(tmp_path))[0] == 0  # the same run again: resumed, nothing recomputed
    assert run(capsys, *FLOW, "--out", str(tmp_path), "--resume")[0] == 0
    assert shard.read_bytes() == before
    for output in (tmp_path / "flow_cross-frame.csv", tmp_path / "report.html"):
        output.unlink()
    code, out, err = run(capsys, "report", str(tmp_path))
    assert code == 0 and (tmp_path / "flow_cross-frame.csv").read_bytes() == csv and (tmp_path / "report.html").exists()
    assert run(capsys, *FLOW, "--out", str(tmp_path), "--overwrite")[0] == 0  # computed again from scratch
    assert Run.load(tmp_path).records("flow_cross-frame") == records


def test_flow_over_a_benchmark_with_a_progress_bar(tmp_path, capsys):
    root = tvbench(tmp_path / "TVBench")
    code, out, err = run(
        capsys, "flow", "--dataset", "tvbench", "--data-root", str(root), "--tasks", "Action Sequence",
        "--target", "cross-frame", "--layers", "3", "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert code == 0, err
    records = Run.load(tmp_path / "run").records("flow_cross-frame")
    assert [r["key"] for r in records] == ["Action Sequence/0", "Action Sequence/1"]
    assert [row["gt"] for r in records for row in r["rows"]] == ["B", "C"]  # the true candidates' letters
    assert re.search(r"2/2 \[[0-9:]+<[0-9:]+, +[0-9.]+ ?s(/sample|ample/s)\]", err), err  # samples, time left, rate


def test_pathways_and_answer_prob_and_lens(tmp_path, capsys):
    import pandas as pd
    import torch

    from videolens import HookedVideoLLM
    from videolens.analyses.common import option_token_ids, prompt_for
    from videolens.data.synthetic import make_dataset

    for command, produced in [
        ("pathways", "pathways_summary.csv"),
        ("answer-prob", "answer_prob.csv"),
        ("lens", "vocab_frequency.csv"),
    ]:
        out_dir = tmp_path / command
        code, _, err = run(
            capsys, command, "--n-per-task", "2", "--tasks", "direction", "--out", str(out_dir), "--no-progress"
        )
        assert code == 0, err
        assert (out_dir / produced).exists() and (out_dir / "report.html").exists()
    # the tables hold what the model computes, recomputed here by hand
    model = HookedVideoLLM.from_pretrained("videolens/toy-moving-shapes")
    samples = make_dataset(2, seed=0, tasks=["direction"])
    with torch.no_grad():
        outputs = [(model(p := prompt_for(model, s))[0, -1].softmax(-1), p) for s in samples]
    right = [int(probs.argmax()) == option_token_ids(model, p)[p.answer] for probs, p in outputs]
    summary = pd.read_csv(tmp_path / "pathways" / "pathways_summary.csv").set_index("condition")
    assert summary.loc["full", "accuracy"] == pytest.approx(100 * sum(right) / len(right))
    probs = pd.read_csv(tmp_path / "answer-prob" / "answer_prob.csv")
    last = probs[(probs["layer"] == model.cfg.n_layers - 1) & (probs["sample_id"] == samples[0].id)]
    ids = option_token_ids(model, outputs[0][1])
    assert last["probability"].tolist() == pytest.approx([100 * float(outputs[0][0][i]) for i in ids], rel=1e-4)
    freq = pd.read_csv(tmp_path / "lens" / "vocab_frequency.csv")
    from videolens.data.synthetic import WORD_BAGS

    bag_words = {w for words in WORD_BAGS.values() for w in words}
    words = {w for row in freq["word"] if row not in ("ALL", "ALL_NORM") for w in row.split("/")}
    assert words and words <= bag_words  # the synthetic tasks' bags, not the paper's


def _write_clip(path, n_frames: int = 30) -> None:
    """A short constant-rate clip (10 fps, 32x32) for the command's --video input."""
    from test_video_helpers import coded_frame, write_video

    write_video(
        path, [coded_frame(i) for i in range(n_frames)], [i * 100 for i in range(n_frames)], codec="mpeg4", rate=10
    )


def test_single_video_input(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    _write_clip(clip, n_frames=16)
    code, out, err = run(
        capsys,
        "answer-prob",
        "--video",
        str(clip),
        "--question",
        "Which way is the square moving?",
        "--options",
        "left",
        "right",
        "up",
        "down",
        "--answer",
        "B",
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
    )
    assert code == 0, err
    assert (tmp_path / "o" / "answer_prob.csv").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["flow", "--video", "missing.mp4", "--question", "Q?", "--options", "a", "b", "--answer", "a"], "not found"),
        (["flow", "--model", "no-such-model"], "Unknown model 'no-such-model'"),
        (["flow", "--tasks", "spin"], "Unknown task"),
        (["flow", "--question", "Q?"], "pass --video too"),
        (["pathways", "--spec", "70b", "--n-per-task", "1", "--tasks", "color"], "Unknown pathway spec"),
        (["flow", "--video", "x.mp4", "--question", "Q?", "--options", "a", "b"], "needs the true option"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, argv, message):
    code, out, err = run(capsys, *argv, "--out", str(tmp_path))
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_corrupt_video_and_options_without_answer(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    code, _, err = run(
        capsys,
        "flow",
        "--video",
        str(bad),
        "--question",
        "Q?",
        "--options",
        "a",
        "b",
        "--answer",
        "a",
        "--out",
        str(tmp_path),
    )
    assert code == 2 and "Could not decode" in err and len(err.strip().splitlines()) == 1
    clip = tmp_path / "clip.mp4"
    _write_clip(clip)
    code, _, err = run(
        capsys,
        "flow",
        "--video",
        str(clip),
        "--question",
        "Which way?",
        "--options",
        "left",
        "right",
        "--answer",
        "up",
        "--out",
        str(tmp_path),
    )
    assert code == 2 and "not among the options" in err and len(err.strip().splitlines()) == 1


def test_a_digit_answer_is_an_options_text_before_it_is_an_index():
    from videolens.cli import _cli_answer
    from videolens.core.prompt import resolve_answer

    options = ["1", "2", "3", "4"]
    assert _cli_answer(options, "2") == resolve_answer(options, "2") == 1  # the text "2": option B, as in the API
    assert _cli_answer(["left", "right", "up"], "2") == 2  # no option reads "2": index 2
    assert _cli_answer(["left", "right"], "B") == 1


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the command gets as far as loading a model."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad argument was refused")

    monkeypatch.setattr(videolens.cli, "_load", refuse)


def _other_run(folder):
    folder.mkdir()
    write_manifest(folder, make_manifest(command="pathways", model="m", dataset={}, arguments={}, sample_ids=["x"]))
    return folder


def _bad_contract_cases(tmp_path):
    clip = tmp_path / "clip.mp4"
    _write_clip(clip)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "not-a-model").mkdir()
    broken = tvbench(tmp_path / "TVBench")
    (broken / "json" / "moving_direction.json").write_text("[{")
    video = ["--video", str(clip), "--options", "a", "b", "--answer", "a"]
    (tmp_path / "empty.jsonl").write_text("")
    many = {"video": str(clip), "question": "Which?", "options": [f"o{i}" for i in range(30)], "answer": "o1"}
    (tmp_path / "many.jsonl").write_text(json.dumps(many) + "\n")
    (tmp_path / "inf.jsonl").write_text(json.dumps({**many, "options": ["a", "b"], "answer": "a", "end": "inf"}) + "\n")
    (tmp_path / "holds-a-run").mkdir()
    return [
        (["flow", "--tasks", "color", "color"], "--tasks names a task twice"),
        (["flow", "--num-frames", "4"], "--num-frames applies to --dataset and --video"),
        (["flow", "--video", str(clip), "--question", "Q?", "--options", "a", "a", "--answer", "a"], "distinct"),
        (["flow", "--dataset", "generic", "--data-root", str(tmp_path / "empty.jsonl")], "No samples to analyse"),
        (["flow", "--dataset", "generic", "--data-root", str(tmp_path / "many.jsonl")], "has 30 options"),
        (["flow", "--dataset", "generic", "--data-root", str(tmp_path / "inf.jsonl")], "finite time"),
        (["demo", "--out", str(_other_run(tmp_path / "a-run"))], "holds a run"),
        (["flow", "--seed", "-1"], "--seed -1 must be 0 or more"),
        (["flow", "--model", str(tmp_path / "not-a-model")], "is a folder but not a saved model (no config.json)"),
        (["flow", "--dtype", "int8"], "invalid choice: 'int8'"),
        (["flow", "--device", "foo"], "--device 'foo' is not a device"),
        (["flow", "--device", "cpu", "--device-map", "auto"], "both say where the model goes"),
        (["flow", "--device-map", "everywhere"], "invalid choice: 'everywhere'"),
        (["flow", "--out", str(tmp_path / "a-file")], "is a file; pass a folder"),
        (["flow", "--out", str(tmp_path / "a-file" / "sub")], "a-file is a file, not a folder"),
        (["flow", *video, "--question", "<video> Which way?"], "--question contains '<video>'"),
        (["flow", "--window", "0"], "--window 0 must be 1 or more"),
        (["flow", "--n-per-task", "0"], "--n-per-task 0 must be 1 or more"),
        (["pathways", "--window", "3"], "'--window' does not apply to `videolens pathways`; it is an option of: flow"),
        (["lens", "--resume"], "'--resume' does not apply to `videolens lens`"),
        (["info", "--tasks", "color"], "'--tasks' does not apply to `videolens info`"),
        (["flow", "--resume", "--overwrite"], "not allowed with argument"),
        (["flow", "--dataset", "tvbench"], "--dataset tvbench needs --data-root"),
        (["flow", "--dataset", "tvbench", "--data-root", str(tmp_path / "nowhere")], "does not exist"),
        (["flow", "--data-root", str(tmp_path)], "--data-root goes with --dataset"),
        (["flow", "--dataset", "tvbenchh", "--data-root", str(tmp_path)], "Unknown dataset 'tvbenchh'"),
        (
            ["flow", "--dataset", "tvbench", "--data-root", str(broken), "--tasks", "5"],
            "moving_direction.json is not valid JSON",
        ),
        (["flow", "--dataset", "tvbench", "--data-root", str(broken), "--tasks", "Spin"], "TVBench has no task 'Spin'"),
        (["flow", *video, "--question", "Q?", "--tasks", "color"], "--tasks selects synthetic or benchmark samples"),
        (["flow", "--out", str(_other_run(tmp_path / "other"))], "holds a different run (it differs in command"),
        (["flow", "--resume", "--out", str(tmp_path / "fresh")], "Nothing to resume"),
        (["report", str(tmp_path)], "holds no videolens run"),
    ]


def test_every_bad_argument_is_one_line_and_exit_2_before_the_model_loads(tmp_path, capsys, no_model):
    for argv, message in _bad_contract_cases(tmp_path):
        code, out, err = run(capsys, *argv)
        assert code == 2, (argv, err)
        assert message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)


def test_cuda_without_a_gpu_is_refused(capsys, no_model):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = run(capsys, "flow", "--device", "cuda")
    assert code == 2 and "no CUDA GPU is available" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("offline", [True, False])
def test_a_hub_model_without_network_fails_fast(capsys, monkeypatch, tmp_path, no_model, offline):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    code, _, err = run(capsys, "flow", "--model", "org/x", "--n-per-task", "1")
    assert time.monotonic() - start < 5
    reason = "HF_HUB_OFFLINE is set" if offline else "the model hub cannot be reached"
    assert code == 2 and f"Cannot load model 'org/x': {reason}" in err and len(err.strip().splitlines()) == 1


def test_unwritable_out_is_refused(capsys, no_model):
    if not os.path.isdir("/sys") or os.access("/sys", os.W_OK) and not os.path.ismount("/sys"):
        pytest.skip("no read-only /sys here")
    code, _, err = run(capsys, "flow", "--out", "/sys/videolens-out")
    assert code == 2 and "is not writable" in err and len(err.strip().splitlines()) == 1


def test_an_argument_checked_on_the_loaded_model_leaves_no_run_behind(tmp_path, capsys):
    argv = ["flow", "--target", "cross-frame", "--n-per-task", "1", "--tasks", "color", "--no-progress"]
    code, _, err = run(capsys, *argv, "--layers", "9", "--out", str(tmp_path))
    assert code == 2 and "--layers [9]: the model has layers 0..7" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, *argv, "--layers", "7", "--out", str(tmp_path))  # not refused as another run
    assert code == 0, err
    assert [row["layer"] for row in Run.load(tmp_path).frame("flow_cross-frame").to_dict("records")] == [7]


def test_overwrite_deletes_only_what_the_run_wrote(tmp_path, capsys):
    (tmp_path / "annotations.csv").write_text("video,question\n")  # the user's own files beside the run
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.txt").write_text("mine")
    argv = ["flow", "--target", "cross-frame", "--n-per-task", "1", "--tasks", "color", "--no-progress"]
    assert run(capsys, *argv, "--out", str(tmp_path), "--overwrite")[0] == 0
    assert run(capsys, *argv, "--out", str(tmp_path), "--overwrite", "--window", "2")[0] == 0  # over a run
    assert (tmp_path / "annotations.csv").read_text() == "video,question\n"
    assert (tmp_path / "results" / "notes.txt").read_text() == "mine"
    assert Run.load(tmp_path).manifest["arguments"]["window"] == 2


def test_a_run_that_fails_before_recording_anything_leaves_no_run_behind(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    _write_clip(clip)
    (tmp_path / "corrupt.mp4").write_bytes(b"not a video")
    bad = {"video": "corrupt.mp4", "question": "Which?", "options": ["a", "b"], "answer": "a"}
    (tmp_path / "qa.jsonl").write_text(json.dumps(bad) + "\n")
    argv = ["flow", "--target", "cross-frame", "--dataset", "generic", "--no-progress", "--out", str(tmp_path / "run")]
    code, _, err = run(capsys, *argv, "--data-root", str(tmp_path / "qa.jsonl"))
    assert code == 2 and "Could not decode" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "manifest.json").exists() and not (tmp_path / "run" / "results").exists()
    (tmp_path / "qa.jsonl").write_text(json.dumps({**bad, "video": "clip.mp4"}) + "\n")  # corrected
    code, _, err = run(capsys, *argv, "--data-root", str(tmp_path / "qa.jsonl"))
    assert code == 0, err


def test_the_lens_reads_a_video_without_a_true_option(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    _write_clip(clip)
    argv = ["lens", "--video", str(clip), "--question", "Which way?", "--options", "left", "right", "--no-progress"]
    code, _, err = run(capsys, *argv, "--out", str(tmp_path / "lens"))
    assert code == 0, err
    assert (tmp_path / "lens" / "vocab_frequency.csv").is_file()


def test_the_lens_in_the_paper_setting_reads_what_the_python_api_reads(tmp_path, capsys):
    import pandas as pd

    from videolens import HookedVideoLLM, LogitLens
    from videolens.analyses.common import prompt_for
    from videolens.data.synthetic import make_dataset

    out = tmp_path / "lens"
    code, _, err = run(
        capsys, "lens", "--paper", "--n-per-task", "1", "--tasks", "direction", "--out", str(out), "--no-progress"
    )
    assert code == 0, err
    words = pd.read_csv(out / "video_token_words.csv")
    assert set(words["site"]) == {"paper"}
    model = HookedVideoLLM.from_pretrained("videolens/toy-moving-shapes")
    prompt = prompt_for(model, make_dataset(1, seed=0, tasks=["direction"])[0], needs_answer=False)
    by_hand = LogitLens(model, projection="embed", apply_final_norm=False).video_tokens(prompt, site="paper", top_k=1)
    assert words["token_id"].tolist() == by_hand["token_id"].tolist()
    freq = pd.read_csv(out / "vocab_frequency.csv")
    assert list(dict.fromkeys(freq["bin"])) == ["1-5", "6-8"]  # 5-layer bins of the 8 layers
    totals = freq[~freq["word"].isin(["ALL", "ALL_NORM"])].groupby("word")["count"].sum()
    assert len(totals) and (totals >= 100).all()  # the paper's threshold
