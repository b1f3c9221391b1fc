"""Benchmarks by name: what each one's download layout holds and how to list its samples.

Each benchmark module (``tvbench``, ``mvbench``, ``tomato``, ``videomme``,
``longvideobench``, ``nextqa``, ``generic``) registers one :class:`Benchmark`.
:func:`load_dataset` lists the samples of a local copy: annotations are read at once (they
are small), videos are only checked to exist and are decoded later, when each sample is
used. Task ids follow the paper's convention of numbering a benchmark's tasks in
alphabetical order (TVBench 0 = Action Antonym ... 9 = Unexpected Action).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import import_module
from pathlib import Path

from videolens.data.annotations import MissingVideoError, check_sample_text
from videolens.data.sample import PAPER_NUM_FRAMES, Sample
from videolens.errors import InputError

#: Reads the samples of the selected tasks (None: every task) from a data root.
Reader = Callable[[Path, "tuple[str, ...] | None"], list[Sample]]

_MODULES = ("tvbench", "mvbench", "tomato", "videomme", "longvideobench", "nextqa", "generic")


@dataclass(frozen=True)
class Benchmark:
    """A benchmark's name, tasks and reader.

    Attributes:
        name: the registry key (``--dataset`` on the command line).
        title: the benchmark's own name.
        tasks: its task names, in id order (empty when the data defines them, as in the generic format).
        read: lists the samples of a data root; receives the selected task names or None.
        layout: the download layout ``--data-root`` points at, in one line.
        paper_tasks: the tasks "Map the Flow" plots.
        note: what videolens does differently from the benchmark's own harness, if anything.
    """

    name: str
    title: str
    tasks: tuple[str, ...]
    read: Reader
    layout: str
    paper_tasks: tuple[str, ...] = ()
    note: str = ""

    def resolve_tasks(self, requested: Sequence[str | int] | None) -> tuple[str, ...] | None:
        """Task names for names, file stems or ids (``"Action Sequence"``, ``"action_sequence"``, ``3``), in id order."""
        if not requested:
            return None
        if not self.tasks:
            return tuple(str(t) for t in requested)
        by_key = {_key(t): t for t in self.tasks}
        out = []
        for item in requested:
            text = str(item).strip()
            if text.isdigit() and int(text) < len(self.tasks):
                out.append(self.tasks[int(text)])
            elif _key(text) in by_key:
                out.append(by_key[_key(text)])
            else:
                known = ", ".join(f"{k} {t!r}" for k, t in enumerate(self.tasks))
                raise InputError(f"{self.title} has no task {item!r}; its tasks (id, name) are: {known}.")
        return tuple(sorted(set(out), key=self.tasks.index))  # the benchmark's own order, whatever the request's


def _key(name: str) -> str:
    """A task name without case, spaces or punctuation (``"Shape&Trend"`` and ``"shape_trend"`` match)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


BENCHMARKS: dict[str, Benchmark] = {}


def register(benchmark: Benchmark) -> Benchmark:
    """Add a benchmark to the registry (its module calls this at import)."""
    BENCHMARKS[benchmark.name] = benchmark
    return benchmark


def benchmarks() -> dict[str, Benchmark]:
    """Every registered benchmark by name (the built-in modules are imported on first use)."""
    for module in _MODULES:
        import_module(f"videolens.data.{module}")
    return BENCHMARKS


def get_benchmark(name: str) -> Benchmark:
    """The benchmark registered as ``name`` (case-insensitive)."""
    known = benchmarks()
    found = known.get(str(name).strip().lower())
    if found is None:
        raise InputError(f"Unknown dataset {name!r}; use one of {', '.join(sorted(known))} (see docs/datasets.md).")
    return found


def load_dataset(
    name: str,
    root: str | Path,
    *,
    tasks: Sequence[str | int] | None = None,
    n_per_task: int | None = None,
    num_frames: int = PAPER_NUM_FRAMES,
    skip_missing: bool = False,
) -> list[Sample]:
    """The samples of a benchmark's local copy, in the benchmark's order, videos not yet decoded.

    Args:
        name: a registered benchmark (``"tvbench"``, ``"mvbench"``, ``"tomato"``, ``"videomme"``,
            ``"longvideobench"``, ``"nextqa"``, ``"generic"``).
        root: the folder the benchmark was downloaded to (for ``generic``: the JSONL/CSV file).
        tasks: task names, file stems or ids (default: every task).
        n_per_task: keep the first ``n`` samples of each task (default: all).
        num_frames: frames per video for samples that do not say (the paper: 8).
        skip_missing: skip samples whose video is missing, with a warning, instead of failing.

    Raises:
        InputError: unknown dataset or task, a root that does not exist, a bad ``n_per_task``.
        AnnotationError: an annotation file that is missing or malformed (naming file and entry).
        MissingVideoError: a video that is missing (unless ``skip_missing``), naming file and sample.
    """
    bench = get_benchmark(name)
    root = Path(root).expanduser()
    if not root.exists():
        raise InputError(
            f"Data root {root} does not exist; pass the folder {bench.title} was downloaded to ({bench.layout})."
        )
    if n_per_task is not None and (isinstance(n_per_task, bool) or int(n_per_task) < 1):
        raise InputError(f"n_per_task={n_per_task!r} must be 1 or more (or None for every sample).")
    selected = bench.resolve_tasks(tasks)
    samples = _check_selection(bench, root, bench.read(root, selected), selected)
    if n_per_task is not None:
        samples = _first_per_task(samples, int(n_per_task))
    samples = [s if s.num_frames else replace(s, num_frames=num_frames) for s in samples]
    _check_unique_ids(bench, samples)
    for s in samples:
        check_sample_text(str(s.id), s.question, s.options)
    return _present(samples, skip_missing)


def _check_selection(
    bench: Benchmark, root: Path, samples: list[Sample], selected: tuple[str, ...] | None
) -> list[Sample]:
    """Only the selected tasks; a requested task with no samples is an error naming the tasks present."""
    if selected is None:
        return samples
    wanted = {_key(t) for t in selected}
    kept = [s for s in samples if _key(s.task) in wanted]
    present = {_key(s.task) for s in kept}
    for task in selected:
        if _key(task) not in present:
            found = sorted({s.task for s in samples})
            raise InputError(
                f"{bench.title} at {root} has no samples of task {task!r}; tasks found: {', '.join(found)}."
            )
    return kept


def _first_per_task(samples: list[Sample], n: int) -> list[Sample]:
    counts: dict[str, int] = {}
    out = []
    for s in samples:
        counts[s.task] = counts.get(s.task, 0) + 1
        if counts[s.task] <= n:
            out.append(s)
    return out


def _check_unique_ids(bench: Benchmark, samples: list[Sample]) -> None:
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise InputError(f"{bench.title}: two samples have the id {s.id!r}; give every sample a unique id.")
        seen.add(str(s.id))


def _present(samples: list[Sample], skip_missing: bool) -> list[Sample]:
    """The samples whose video exists; missing ones are skipped with a warning, or refused."""
    missing = [s for s in samples if s.is_lazy and not Path(s.video).exists()]
    if not missing:
        return samples
    first = missing[0]
    summary = f"{len(missing)} of {len(samples)} videos are missing, e.g. {first.video} (sample {first.id!r})"
    if not skip_missing:
        raise MissingVideoError(f"{summary}; pass skip_missing=True (--skip-missing) to run without them.")
    listed = ", ".join(repr(s.id) for s in missing[:5]) + (", ..." if len(missing) > 5 else "")
    warnings.warn(f"{summary}; skipping samples {listed}.", stacklevel=3)
    gone = {id(s) for s in missing}
    return [s for s in samples if id(s) not in gone]
