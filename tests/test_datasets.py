"""Benchmark loaders on tiny copies of each download layout: samples, bounds, errors, background decoding."""

from __future__ import annotations

import csv
import json
import threading
import time

import pandas as pd
import pytest
from benchmark_fixtures import FPS, clip, frame_folder, tvbench, write_json
from test_video_helpers import evaluation_code_indices, read_code

from videolens.data import AnnotationError, MissingVideoError, load_dataset
from videolens.data.prefetch import prefetch, prefetch_decoded
from videolens.errors import InputError, VideoLensError


def codes(sample) -> list[int]:
    return [read_code(frame) for frame in sample.decoded().video.frames]


def test_tvbench_questions_options_answers_and_bounds(tmp_path):
    root = tvbench(tmp_path / "TVBench")
    with pytest.warns(UserWarning, match="no annotations for Action Antonym, Action Count, Action Localization"):
        samples = load_dataset("tvbench", root)  # a partial download: the tasks present are read
    assert [s.id for s in samples] == ["Action Sequence/0", "Action Sequence/1", "Moving Direction/0"]
    first, second, third = samples
    assert (first.question, list(first.options), first.answer) == (
        "What did the person do first?",
        ["Sat down.", "Stood up."],
        1,
    )
    assert (second.answer, third.answer, third.task) == (2, 0, "Moving Direction")
    assert (first.start, first.end, second.start, second.end) == (1.0, 2.6, 0.5, 1.3)
    assert third.start is None and third.end is None  # only the bounded tasks carry bounds
    assert all(s.is_lazy and s.num_frames == 8 for s in samples)  # nothing decoded yet
    # the frames the paper's evaluation code reads inside the bounds, read back from the frames' own codes
    assert codes(first) == evaluation_code_indices((1.0, 2.6), FPS, 30, 8)
    assert codes(second) == evaluation_code_indices((0.5, 1.3), FPS, 30, 8)
    assert codes(third) == evaluation_code_indices(None, FPS, 30, 8)  # the whole 3 s clip


def test_tasks_by_paper_id_name_or_file_stem(tmp_path):
    root = tvbench(tmp_path / "TVBench")
    by_id = load_dataset("tvbench", root, tasks=[3])  # the paper's id 3 = Action Sequence
    by_stem = load_dataset("tvbench", root, tasks=["action_sequence"])
    assert [s.id for s in by_id] == [s.id for s in by_stem] == ["Action Sequence/0", "Action Sequence/1"]
    assert [s.id for s in load_dataset("tvbench", root, tasks=["Moving Direction"], n_per_task=1)] == [
        "Moving Direction/0"
    ]
    assert len(load_dataset("tvbench", root, n_per_task=1)) == 2  # first of each task present
    with pytest.raises(InputError, match=r"no task 'Spinning'.*3 'Action Sequence'"):
        load_dataset("tvbench", root, tasks=["Spinning"])
    with pytest.raises(InputError, match="Unknown dataset 'tvbenchh'"):
        load_dataset("tvbenchh", root)


def test_mvbench_frame_folders_at_3_fps_inside_bounds(tmp_path):
    root = tmp_path / "MVBench"
    write_json(
        root / "json" / "episodic_reasoning.json",
        [{"video": "ep1", "question": "Who spoke first?", "candidates": ["Ann", "Bob", "Cat"], "answer": "Bob",
          "start": 1.0, "end": 4.0}],
    )  # fmt: skip
    write_json(
        root / "json" / "action_antonym.json",
        [{"video": "x.mp4", "question": "What is shown?", "candidates": ["opening", "closing"], "answer": "closing"}],
    )
    frame_folder(root / "video" / "tvqa" / "frames_fps3_hq" / "ep1", 24)
    clip(root / "video" / "ssv2_video" / "x.mp4")
    antonym, episodic = load_dataset("mvbench", root, tasks=["Episodic Reasoning", "Action Antonym"], num_frames=8)
    assert (episodic.task, episodic.answer, episodic.fps, episodic.start, episodic.end) == (
        "Episodic Reasoning",
        1,
        3.0,
        1.0,
        4.0,
    )
    assert codes(episodic) == evaluation_code_indices((1, 4), 3, 24, 8)  # frame i of the folder is at i / 3 s
    assert (antonym.task, antonym.answer, antonym.fps) == ("Action Antonym", 1, None)


def test_tomato_reasoning_types_index_answers_and_demonstration_folders(tmp_path):
    root = tmp_path / "TOMATO"
    write_json(
        root / "data" / "count.json",
        {"0": {"question": "How many circles?", "options": ["2", "1", "3"], "answer": 2, "key": "0209-03",
               "demonstration_type": "human", "motion_type": "count"}},
    )  # fmt: skip
    write_json(
        root / "data" / "shape&trend.json",
        {
            "7": {
                "question": "What shape?",
                "options": ["circle", "line"],
                "answer": 0,
                "key": "s1",
                "demonstration_type": "object",
            }
        },
    )
    clip(root / "videos" / "human" / "0209-03.mp4")
    clip(root / "videos" / "object" / "s1.mp4")
    count, shape = load_dataset("tomato", root, tasks=["0", "ShapeTrend"])
    assert (count.id, count.task, list(count.options), count.answer) == ("Count/0", "Count", ["2", "1", "3"], 2)
    assert count.video == root / "videos" / "human" / "0209-03.mp4" and count.meta["demonstration_type"] == "human"
    assert (shape.id, shape.task, shape.answer) == ("ShapeTrend/7", "ShapeTrend", 0)


def test_videomme_parquet_letters_prefix_and_video_suffixes(tmp_path):
    root = tmp_path / "Video-MME"
    rows = [
        {"videoID": "fFjv93ACGo8", "question_id": "001-1", "task_type": "Action Recognition", "duration": "short",
         "domain": "Knowledge", "sub_category": "Astronomy", "question": "What is the astronaut doing?",
         "options": ["A. Floating.", "B. Running.", "C. Eating.", "D. Sleeping."], "answer": "C"},
        {"videoID": "zz", "question_id": "002-3", "task_type": "Spatial Perception", "duration": "long",
         "domain": "Sports", "sub_category": "Football", "question": "Where is the ball?",
         "options": ["A. Left.", "B. Right.", "C. Up.", "D. Down."], "answer": "A"},
    ]  # fmt: skip
    (root / "videomme").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(root / "videomme" / "test-00000-of-00001.parquet")
    clip(root / "data" / "fFjv93ACGo8.mp4")
    clip(root / "data" / "zz.MP4")  # some downloads use upper-case suffixes
    first, second = load_dataset("videomme", root)
    assert list(first.options) == ["Floating.", "Running.", "Eating.", "Sleeping."] and first.answer == 2
    assert (first.id, first.task, first.answer_prefix, first.meta["duration"]) == (
        "001-1",
        "Action Recognition",
        "Best option:",
        "short",
    )
    assert second.video.name == "zz.MP4" and second.answer == 0
    assert [s.id for s in load_dataset("videomme", root, tasks=[8])] == ["002-3"]  # id 8 = Spatial Perception


def test_longvideobench_candidates_or_option_columns(tmp_path):
    root = tmp_path / "LongVideoBench"
    write_json(
        root / "lvb_val.json",
        [
            {"video_path": "v1.mp4", "question": "What appears after the dog?", "candidates": ["a cat", "a car", "a bus"],
             "correct_choice": 1, "question_category": "O2E", "duration_group": 15, "id": "86CxyhFV9MI_0"},
            {"video_path": "v1.mp4", "question": "Which scene comes first?", "option0": "beach", "option1": "city",
             "option2": "N/A", "option3": "N/A", "option4": "N/A", "correct_choice": 0, "question_category": "SOS",
             "duration_group": 60, "id": "x_1"},
        ],
    )  # fmt: skip
    clip(root / "videos" / "v1.mp4")
    o2e, sos = load_dataset("longvideobench", root)
    assert (o2e.id, o2e.task, o2e.answer, o2e.meta["duration_group"]) == ("86CxyhFV9MI_0", "O2E", 1, 15)
    assert (list(sos.options), sos.answer, sos.task) == (["beach", "city"], 0, "SOS")
    assert [s.id for s in load_dataset("longvideobench", root, tasks=[2])] == ["86CxyhFV9MI_0"]  # id 2 = O2E
    gap = {"video_path": "v1.mp4", "question": "Which?", "option0": "beach", "option1": "N/A", "option2": "city",
           "correct_choice": 2, "question_category": "SOS"}  # fmt: skip
    write_json(root / "lvb_val.json", [gap])  # closing the gap up would make "city" option 1, not 2
    with pytest.raises(AnnotationError, match="option1 is unused but a later option is not"):
        load_dataset("longvideobench", root)


def test_longvideobench_strides_frames_over_the_annotated_duration_like_its_loader(tmp_path):
    root = tmp_path / "LongVideoBench"
    write_json(
        root / "lvb_val.json",
        [{"video_path": "v.mp4", "question": "What comes next?", "candidates": ["a", "b"], "correct_choice": 0,
          "question_category": "O2E", "duration": 2.9, "id": "v_0"}],
    )  # fmt: skip
    clip(root / "videos" / "v.mp4", n_frames=40)  # 4 s at 10 fps; the annotation covers the first 2.9 s
    (sample,) = load_dataset("longvideobench", root)
    assert (sample.sampling, sample.end) == ("strided", 2.9)
    frames = sample.decoded().video.frames
    # LongVideoBench's loader: valid = int(duration * fps) frames, index = int(valid / n) * i.
    valid = int(2.9 * FPS)
    expected = [int(valid / 8) * i for i in range(8)]
    assert [read_code(f) for f in frames] == expected == [0, 3, 6, 9, 12, 15, 18, 21]


def test_nextqa_csv_with_video_id_map(tmp_path):
    root = tmp_path / "nextqa"
    root.mkdir()
    header = [
        "video",
        "frame_count",
        "width",
        "height",
        "question",
        "answer",
        "qid",
        "type",
        "a0",
        "a1",
        "a2",
        "a3",
        "a4",
    ]
    with (root / "val.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerow(["2440175990", "300", "640", "480", "why did the boy fall", "3", "4", "CW", "slipped", "jumped",
                         "sat", "tripped over the dog", "ran"])  # fmt: skip
    write_json(root / "map_vid_vidorID.json", {"2440175990": "0000/2440175990"})
    clip(root / "NExTVideo" / "0000" / "2440175990.mp4")
    (sample,) = load_dataset("nextqa", root)
    assert (sample.id, sample.task, sample.answer) == ("2440175990/4", "CW", 3)
    assert (
        sample.options[3] == "tripped over the dog" and sample.video == root / "NExTVideo" / "0000" / "2440175990.mp4"
    )


def test_generic_jsonl_and_csv(tmp_path):
    clip(tmp_path / "clips" / "a.mp4")
    lines = [
        {"video": "clips/a.mp4", "question": "Which way?", "options": ["left", "right"], "answer": "right", "task": "dir",
         "start": 0.5, "end": 2.1, "num_frames": 4},
        {"video": "clips/a.mp4", "question": "How many?", "options": ["1", "2", "3"], "answer": "2", "id": "count-1"},
    ]  # fmt: skip
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    first, second = load_dataset("generic", tmp_path / "qa.jsonl")
    assert (first.id, first.task, first.answer, first.num_frames) == ("dir/0", "dir", 1, 4)
    assert codes(first) == evaluation_code_indices((0.5, 2.1), FPS, 30, 4)
    assert (second.id, second.task, second.answer) == ("count-1", "default", 1)  # the text "2" before index 2
    with (tmp_path / "qa.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["video", "question", "options", "answer", "task"])
        writer.writeheader()
        writer.writerow(
            {
                "video": "clips/a.mp4",
                "question": "Which way?",
                "options": '["left", "right"]',
                "answer": "B",
                "task": "dir",
            }
        )
    (row,) = load_dataset("generic", tmp_path / "qa.csv")
    assert (list(row.options), row.answer, row.start) == (["left", "right"], 1, None)


def _tvbench_with(tmp_path, entries):
    root = tvbench(tmp_path / "TVBench")
    write_json(root / "json" / "moving_direction.json", entries)
    return root


@pytest.mark.parametrize(
    "entries, message",
    [
        (
            [{"video": "c.mp4", "question": "Q?", "answer": "left"}],
            r"moving_direction.json, entry 0: field 'candidates' is missing",
        ),
        (
            [{"video": "c.mp4", "question": "Q?", "candidates": ["left", "right"], "answer": "up"}],
            r"entry 0: The answer 'up' is not among",
        ),
        (
            [{"video": "c.mp4", "question": "Q?", "candidates": "left", "answer": "left"}],
            r"entry 0: field 'candidates' should be a list of options",
        ),
        ({"video": "c.mp4"}, r"key 'video': expected an object with video, question, candidates and answer"),
        (
            [{"video": "c.mp4", "question": "<video> Q?", "candidates": ["a", "b"], "answer": "a"}],
            r"Moving Direction/0.*'<video>'",
        ),
        (
            [{"video": "c.mp4", "question": "Q?", "candidates": ["a", "a"], "answer": "a"}],
            r"Moving Direction/0.*must be distinct",
        ),
    ],
)
def test_malformed_entries_name_file_entry_and_field(tmp_path, entries, message):
    root = _tvbench_with(tmp_path, entries)
    with pytest.raises(AnnotationError, match=message):
        load_dataset("tvbench", root)


def test_malformed_files_are_named(tmp_path):
    root = tvbench(tmp_path / "TVBench")
    (root / "json" / "action_sequence.json").write_text('[{"video": "a.mp4", "question": ')
    with pytest.raises(AnnotationError, match=r"action_sequence.json is not valid JSON \(line 1"):
        load_dataset("tvbench", root, tasks=["Action Sequence"])
    write_json(
        root / "json" / "action_sequence.json",
        [{"video": "a.mp4", "question": "Q?", "candidates": ["x", "y"], "answer": "x"}],
    )
    with pytest.raises(AnnotationError, match=r"entry 0: field 'start' is missing"):  # a bounded task needs its bounds
        load_dataset("tvbench", root, tasks=["Action Sequence"])
    with pytest.raises(AnnotationError, match=r"annotations of task 'Object Count' not found: .*object_count.json"):
        load_dataset("tvbench", root, tasks=["Object Count"])
    (tmp_path / "bad.csv").write_text('video,question,options,answer\nv.mp4,Q?,"not a list",a\n')
    with pytest.raises(AnnotationError, match=r"bad.csv, row 1: field 'options' should be a list"):
        load_dataset("generic", tmp_path / "bad.csv")
    write_json(
        tmp_path / "TOMATO" / "data" / "count.json",
        {"5": {"question": "Q?", "options": ["1", "2"], "answer": 2, "key": "k", "demonstration_type": "human"}},
    )
    with pytest.raises(
        AnnotationError, match=r"count.json, key '5': field 'answer' = 2 is not an index of the 2 options"
    ):
        load_dataset("tomato", tmp_path / "TOMATO", tasks=["Count"])


def test_a_missing_video_is_refused_or_skipped_with_a_warning(tmp_path):
    root = tvbench(tmp_path / "TVBench")
    (root / "video" / "action_sequence" / "b.mp4").unlink()
    with pytest.raises(
        MissingVideoError,
        match=r"1 of 3 videos are missing, e\.g\. .*b\.mp4 \(sample 'Action Sequence/1'\).*--skip-missing",
    ):
        load_dataset("tvbench", root)
    with pytest.warns(UserWarning, match=r"skipping samples 'Action Sequence/1'"):
        kept = load_dataset("tvbench", root, skip_missing=True)
    assert [s.id for s in kept] == ["Action Sequence/0", "Moving Direction/0"]


def test_prefetch_keeps_order_runs_in_threads_and_stays_bounded():
    started: list[int] = []
    threads: set[str] = set()

    def load(x: int) -> int:
        started.append(x)
        threads.add(threading.current_thread().name)
        time.sleep(0.002)
        return x * 10

    seen = []
    for k, value in enumerate(prefetch(range(20), load, workers=2, ahead=3)):
        assert len(started) <= k + 1 + 3  # never more than `ahead` loads beyond the one handed out
        seen.append(value)
    assert seen == [10 * x for x in range(20)]
    assert threads and all(name.startswith("videolens-decode") for name in threads)


def test_prefetch_raises_a_decode_error_at_its_sample(tmp_path):
    root = tvbench(tmp_path / "TVBench")
    samples = load_dataset("tvbench", root)
    (root / "video" / "action_sequence" / "b.mp4").write_bytes(b"not a video" * 20)
    out = prefetch_decoded(samples)
    first = next(out)
    assert first.id == "Action Sequence/0" and first.video.frames.shape[0] == 8
    with pytest.raises(VideoLensError, match=r"Sample 'Action Sequence/1' \(task 'Action Sequence'\).*b\.mp4"):
        next(out)


def test_videomme_prompts_end_with_its_answer_prefix(tmp_path):
    from videolens import HookedVideoLLM
    from videolens.analyses.common import option_token_ids, prompt_for

    root = tmp_path / "Video-MME"
    write_json(
        root / "videomme.json",
        [{"videoID": "v", "question_id": "1-1", "task_type": "Action Recognition", "question": "Which way?",
          "options": ["A. left", "B. right"], "answer": "B"}],
    )  # fmt: skip
    clip(root / "data" / "v.mp4")
    (sample,) = load_dataset("videomme", root)
    model = HookedVideoLLM.from_pretrained("videolens/toy-moving-shapes")
    prompt = prompt_for(model, sample)
    assert prompt.text.endswith("ASSISTANT:Best option:")
    assert "\nA. left\nB. right\n" in prompt.text and "(B)" not in prompt.text  # the benchmark's own style
    assert prompt.answer == 1 and len(set(option_token_ids(model, prompt))) == 2
    spans = [model.to_string(prompt.input_ids[0, prompt.layout[f"option({k})"]]) for k in range(2)]
    assert [span.strip() for span in spans] == ["A. left", "B. right"]  # each option group is its own line
    default = prompt_for(model, sample, option_style="(A)")  # the caller's choice wins over the benchmark's
    assert "(B) right" in default.text


def test_videomme_answers_are_letters_even_where_an_option_reads_as_one(tmp_path):
    root = tmp_path / "Video-MME"
    write_json(
        root / "videomme.json",
        [{"videoID": "v", "question_id": "1-1", "task_type": "Counting Problem", "question": "Which label?",
          "options": ["A. C", "B. D", "C. A", "D. B"], "answer": "B"}],
    )  # fmt: skip
    clip(root / "data" / "v.mp4")
    (sample,) = load_dataset("videomme", root)
    assert sample.answer == 1  # the letter B, not the option whose text is "B" (index 3)
