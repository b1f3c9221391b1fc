"""The videolens command: runs on the toy model, writes tables and a report, fails cleanly."""

from __future__ import annotations

import json

import pytest

from videolens.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_flow_on_synthetic_data_writes_tables_and_report(tmp_path, capsys):
    code, out, err = run(
        capsys,
        "flow",
        "--target",
        "cross-frame",
        "--n-per-task",
        "1",
        "--tasks",
        "after",
        "color",
        "--out",
        str(tmp_path),
        "--no-progress",
    )
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "flow_cross-frame.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 8 and {r["task"] for r in rows} == {"after", "color"}
    assert (tmp_path / "flow_cross-frame_accuracy.csv").exists()
    html = (tmp_path / "report.html").read_text()
    assert "plotly" in html and '<script src="http' not in html  # plotly.js is inlined


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
    assert set(freq["word"]) and set(freq["word"]) <= bag_words  # the synthetic tasks' bags, not the paper's


def _write_clip(path, n_frames: int = 30) -> None:
    """A short constant-rate clip (10 fps, 32x32) for the command's --video input."""
    from test_video_helpers import coded_frame, write_video

    write_video(path, [coded_frame(i) for i in range(n_frames)], [i * 100 for i in range(n_frames)], codec="mpeg4", rate=10)


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
        (["pathways", "--spec", "70b", "--n-per-task", "1", "--tasks", "color"], "Unknown spec"),
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
