"""Run folders: the record format under torn writes, manifests and resume, analyses writing into a run."""

from __future__ import annotations

import json

import pytest
from benchmark_fixtures import one_thread  # noqa: F401 (a fixture, used below)

from videolens.runs.errors import RunError
from videolens.runs.manifest import make_manifest, read_manifest
from videolens.runs.records import RecordLog, decode, encode
from videolens.runs.run import Run

pytestmark = pytest.mark.usefixtures("one_thread")


def records(n: int) -> list[dict]:
    return [
        {"key": f"s{i}", "index": i, "rows": [{"x": i + 0.1, "text": "a\nb \u00e9", "flag": i % 2 == 0}]}
        for i in range(n)
    ]


def test_a_record_reads_back_exactly_and_damage_is_detected():
    for record in records(3):
        line = encode(record)
        assert line.endswith(b"\n") and line.count(b"\n") == 1  # one line, whatever the text holds
        assert decode(line) == record and json.loads(line)["record"] == record  # also plain JSON-lines
        flipped = bytearray(line)
        flipped[len(line) // 2] ^= 0x01
        assert decode(bytes(flipped)) is None  # a changed byte fails the checksum


def test_every_torn_length_reads_as_the_records_completed_before_it(tmp_path):
    lines = [encode(r) for r in records(4)]
    data = b"".join(lines)
    ends = [sum(len(x) for x in lines[: k + 1]) for k in range(len(lines))]
    path = tmp_path / "shard-0.jsonl"
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        complete = sum(end <= cut for end in ends)  # records whose whole line is on disk
        assert RecordLog(path).read() == records(4)[:complete]


def test_appending_after_a_torn_write_cuts_it_off_and_keeps_every_saved_record(tmp_path):
    path = tmp_path / "shard-0.jsonl"
    log = RecordLog(path)
    for record in records(2):
        log.append(record)
    log.close()
    whole = path.read_bytes()
    path.write_bytes(whole + encode(records(3)[2])[:25])  # a writer killed mid-line
    log = RecordLog(path).open()
    assert path.read_bytes() == whole  # the torn bytes are gone, nothing before them
    log.append({"key": "next", "index": 9, "rows": []})
    log.close()
    assert RecordLog(path).read() == [*records(2), {"key": "next", "index": 9, "rows": []}]


def test_a_damaged_line_in_the_middle_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "shard-0.jsonl"
    lines = [encode(r) for r in records(3)]
    lines[1] = lines[1].replace(b'"x":1.1', b'"x":9.9')
    path.write_bytes(b"".join(lines))
    with pytest.warns(UserWarning, match="skipped 1 damaged record"):
        assert RecordLog(path).read() == [records(3)[0], records(3)[2]]


def manifest(**arguments):
    return make_manifest(
        command="flow",
        model="toy",
        dataset={"name": "synthetic"},
        arguments=arguments or {"window": 2},
        sample_ids=["a", "b"],
    )


def test_the_same_run_resumes_another_is_refused_overwrite_restarts(tmp_path):
    folder = tmp_path / "run"
    run = Run.open(folder, manifest())
    run.table("t").append({"key": "a", "index": 0, "rows": [{"v": 1}]})
    again = Run.open(folder, manifest())  # same identity: resumed, the record is still there
    assert [r["key"] for r in again.records("t")] == ["a"]
    with pytest.raises(RunError, match=r"holds a different run \(it differs in arguments\.window\)"):
        Run.open(folder, manifest(window=3))
    (folder / "t.csv").write_text("old output")
    fresh = Run.open(folder, manifest(window=3), mode="overwrite")
    assert (
        fresh.records("t") == []
        and not (folder / "t.csv").exists()
        and read_manifest(folder)["arguments"] == {"window": 3}
    )
    with pytest.raises(RunError, match="Nothing to resume"):
        Run.open(tmp_path / "empty", manifest(), mode="resume")
    (tmp_path / "orphan" / "results" / "t").mkdir(parents=True)
    (tmp_path / "orphan" / "results" / "t" / "shard-0.jsonl").write_text('{"key": "a"}\n')  # a run's records
    with pytest.raises(RunError, match="holds results but no manifest"):
        Run.open(tmp_path / "orphan", manifest())
    (tmp_path / "mine" / "results").mkdir(parents=True)  # a folder of the user's that happens to be named so
    (tmp_path / "mine" / "results" / "notes.txt").write_text("mine")
    assert Run.open(tmp_path / "mine", manifest()).created
    assert (tmp_path / "mine" / "results" / "notes.txt").read_text() == "mine"


def test_shards_merge_in_sample_order_whatever_world_size_wrote_them(tmp_path):
    folder = tmp_path / "run"
    Run.open(folder, manifest())
    rank0, rank1 = (
        Run.open(folder, manifest(), rank=0, world_size=2),
        Run.open(folder, manifest(), rank=1, world_size=2),
    )
    assert [i for i in range(5) if rank0.owns(i)] == [0, 2, 4] and [i for i in range(5) if rank1.owns(i)] == [1, 3]
    rank1.table("t").append({"key": "s1", "index": 1, "rows": [{"v": 1}]})
    rank0.table("t").append({"key": "s0", "index": 0, "rows": [{"v": 0}]})
    rank0.table("t").append({"key": "s2", "index": 2, "rows": [{"v": 2}]})
    alone = Run.open(folder, manifest())  # resumed by one process: it sees both shards
    assert alone.frame("t")["v"].tolist() == [0, 1, 2]
    assert not alone.table("t").wants(1, "s1") and alone.table("t").wants(3, "s3")


def test_an_interrupted_analysis_resumes_to_the_rows_of_an_uninterrupted_one(tmp_path):
    from videolens import HookedVideoLLM
    from videolens.analyses import information_flow
    from videolens.data.sample import Sample
    from videolens.data.synthetic import make_dataset

    model = HookedVideoLLM.from_pretrained("videolens/toy-moving-shapes")
    samples = make_dataset(1, seed=3, tasks=["direction", "color", "order"])
    kw = dict(window=2, layers=[1, 5], sample_mode="correct", progress=False)
    whole = information_flow(model, samples, "cross-frame", **kw)

    spec = make_manifest(command="flow", model="toy", dataset={}, arguments=kw, sample_ids=[s.id for s in samples])
    run = Run.open(tmp_path / "run", spec)
    broken = [*samples[:2], Sample("missing.mp4", "Q?", ["a", "b"], 0, id=samples[2].id)]  # the third cannot be decoded
    with pytest.raises(Exception, match="missing.mp4"):
        information_flow(model, broken, "cross-frame", out=run, **kw)
    assert [r["key"] for r in run.records("flow_cross-frame")] == [s.id for s in samples[:2]]  # saved before the crash
    resumed = information_flow(model, samples, "cross-frame", out=Run.open(tmp_path / "run", spec), **kw)
    assert len(run.shard("flow_cross-frame").read()) == 3  # the first two were not computed again
    assert resumed.to_dict("records") == whole.to_dict("records")
    assert resumed.attrs == whole.attrs  # base accuracy covers the samples of both sessions


def test_report_rebuilds_of_one_folder_take_turns(tmp_path):
    import fcntl
    import threading

    from videolens.runs.report import build_report

    folder = tmp_path / "run"
    Run.open(folder, make_manifest(command="flow", model="m", dataset={}, arguments={}, sample_ids=["a"]))
    done = threading.Event()
    with open(folder / ".report.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another rebuild in progress
        worker = threading.Thread(target=lambda: (build_report(folder), done.set()))
        worker.start()
        worker.join(timeout=1.0)
        assert not done.is_set() and not (folder / "report.html").exists()  # it waits its turn
        fcntl.flock(lock, fcntl.LOCK_UN)
    worker.join(timeout=60)
    assert done.is_set() and (folder / "report.html").exists()
