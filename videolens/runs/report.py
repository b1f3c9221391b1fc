"""Tables and the HTML report of a run, rebuilt from its results at the end of a run and on demand.

Each kind of result table has one output builder that writes its CSV files and returns
its figures; the command line uses the same builders for results held in memory (the
demo) and for a run folder (``videolens report runs/x``, which may be called while a run
is still going: the report then says how many samples are in). Every file is replaced in
one step, so a report being rebuilt is never seen half written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from videolens.runs.records import write_atomic
from videolens.runs.run import Run

#: (table, rows, output folder, notes) -> figures; each builder writes its own CSV files.
OutputBuilder = Callable[[str, pd.DataFrame, Path, list], list]


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    return write_atomic(path, df.to_csv(index=False))


def write_html(figures: list, path: Path, title: str, notes: list[str]) -> Path:
    """The self-contained report (plotly inlined), written to a temporary file and renamed into place."""
    from videolens.viz.plots import write_report

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_report(figures, tmp, title=title, notes=notes)
    os.replace(tmp, path)
    return path


def flow_outputs(table: str, df: pd.DataFrame, out: Path, notes: list) -> list:
    """``<table>.csv``, ``<table>_accuracy.csv``; the information-flow curves and accuracy under knockout."""
    from videolens.analyses import flow_accuracy
    from videolens.viz.plots import plot_flow_accuracy, plot_information_flow

    target = table.removeprefix("flow_")
    if df.empty:
        notes.append(f"{target}: no samples analysed (none left after the sample mode, or none computed yet)")
        return []
    write_csv(df.drop(columns=["layers_blocked"], errors="ignore"), out / f"{table}.csv")
    acc = flow_accuracy(df)
    write_csv(acc, out / f"{table}_accuracy.csv")
    by_task = df["pathway"].nunique() == 1 and df["task"].nunique() > 1
    title = f"Accuracy under knockout: {target}" + (" (per task)" if by_task else "")
    hue = "task" if by_task else "pathway"
    return [plot_information_flow(df), plot_flow_accuracy(acc, df.attrs.get("base_accuracy"), hue=hue, title=title)]


def pathways_outputs(table: str, df: pd.DataFrame, out: Path, notes: list) -> list:
    """``pathways.csv``, ``pathways_summary.csv``; accuracy with only the effective pathways open."""
    from videolens.analyses import pathway_summary
    from videolens.viz.plots import plot_effective_pathways

    if df.empty:
        notes.append("pathways: no samples computed yet")
        return []
    write_csv(df, out / f"{table}.csv")
    summary = pathway_summary(df)
    write_csv(summary, out / f"{table}_summary.csv")
    return [plot_effective_pathways(summary)]


def answer_prob_outputs(table: str, df: pd.DataFrame, out: Path, notes: list) -> list:
    """``answer_prob.csv``; the layer-wise probability of the true and false options."""
    from videolens.viz.plots import plot_answer_probability

    if df.empty:
        notes.append("answer-prob: no samples analysed (none left after the sample mode, or none computed yet)")
        return []
    write_csv(df.drop(columns=["top_tokens"], errors="ignore"), out / f"{table}.csv")
    return [plot_answer_probability(df)]


def discover_outputs(table: str, df: pd.DataFrame, out: Path, notes: list) -> list:
    """``discover_curve.csv``, ``discover_summary.csv``; the discovered pathway's map and its sparsity curve.

    Built from the search table (``df``: every condition the search confirmed), the run's
    evaluation table and ``pathway.json``, which the search writes once it has finished; a
    run stopped before then gets its curve so far.
    """
    import json

    from videolens.analyses import pathway_summary
    from videolens.discovery.search import EVAL_TABLE
    from videolens.discovery.spec import GroupPathway
    from videolens.viz.discovery import plot_pathway_map, plot_sparsity_curve

    run = Run.load(out)
    rounds = run.records(table)
    finished = bool(rounds) and bool(rounds[-1]["info"].get("finished"))
    notes.append(f"pathway search, rounds recorded: {len(rounds)}{'' if finished else ' (not finished)'}")
    write_csv(df, out / "discover_curve.csv")
    evaluated = run.frame(EVAL_TABLE) if EVAL_TABLE in run.tables() else pd.DataFrame()
    summary = None
    if not evaluated.empty:
        summary = pathway_summary(evaluated)
        write_csv(summary, out / "discover_summary.csv")
    figures = []
    saved = out / "pathway.json"
    if saved.is_file():
        data = json.loads(saved.read_text())
        pathway = GroupPathway.from_json(data)
        paper_share = {(pair, int(layer)): float(share) for pair, layer, share in data.get("paper_share", [])}
        notes.append(repr(pathway))
        figures.append(plot_pathway_map(pathway, paper_share or None))
    else:
        notes.append("no pathway.json yet: the search has not finished")
    return figures + [plot_sparsity_curve(df, summary)]


OUTPUTS: dict[str, OutputBuilder] = {
    "flow": flow_outputs,
    "pathways": pathways_outputs,
    "answer_prob": answer_prob_outputs,
    "discover_search": discover_outputs,
}
#: Tables whose records are not one per sample, and what they are.
RECORD_UNITS = {"discover_search": "search rounds"}


def builder_for(table: str) -> OutputBuilder | None:
    return OUTPUTS.get("flow" if table.startswith("flow_") else table)


def describe(manifest: dict[str, Any]) -> list[str]:
    """The report's header lines: model, data, arguments."""
    data = manifest.get("dataset") or {}
    source = ", ".join(f"{k}={v}" for k, v in data.items() if v not in (None, [], ""))
    args = ", ".join(f"{k}={v}" for k, v in (manifest.get("arguments") or {}).items())
    return [f"model: {manifest.get('model')}", f"data: {source}", f"arguments: {args}"]


@contextmanager
def _one_build_at_a_time(folder: Path) -> Iterator[None]:
    """Hold the run folder's report lock: builds of one folder run one after another.

    A report rebuilt while the run goes on reads fewer records than the run's own final
    rebuild; were the two to overlap, the older one could finish last and leave stale
    tables. In turn, the build that starts last reads the most records and writes last.
    (Where file locks are not available, builds are not serialised.)
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(folder / ".report.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_report(folder: str | Path) -> Path:
    """Rebuild the CSV tables and ``report.html`` of the run in ``folder`` from its results."""
    Run.load(folder)  # a folder that holds no run is refused before anything is written there
    with _one_build_at_a_time(Path(folder)):
        return _build_report(folder)


def _build_report(folder: str | Path) -> Path:
    run = Run.load(folder)
    expected = (run.manifest.get("samples") or {}).get("count")
    notes = describe(run.manifest)
    figures: list = []
    for table in run.tables():
        records = run.records(table)
        unit = RECORD_UNITS.get(table)
        notes.append(f"{table}: {unit}: {len(records)}" if unit else f"{table}: {len(records)} of {expected} samples")
        build = builder_for(table)
        if build is not None:
            figures += build(table, run.frame(table, records), run.folder, notes)
    title = f"videolens {run.manifest.get('command')}"
    return write_html(figures, run.folder / "report.html", title, notes)
