"""A run folder: a manifest, crash-safe result shards, and the tables merged from them.

Layout::

    <folder>/manifest.json                         what the run computes (see manifest.py)
    <folder>/results/<table>/shard-<rank>.jsonl    one record per sample (see records.py)
    <folder>/*.csv, <folder>/report.html           rebuilt from the results (see report.py)

Opening a folder resumes it when it holds the same run (same manifest identity): samples
with a record are skipped. A folder holding a different run is refused unless
``mode="overwrite"``. Under ``torch.distributed`` rank ``r`` of ``w`` takes the samples
whose index is ``r`` modulo ``w`` and appends to its own shard; tables merge every shard,
whatever world size wrote it, ordered by sample index, so a resumed or sharded run reads
back exactly as one uninterrupted process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from videolens.runs import distributed
from videolens.runs.errors import RunError
from videolens.runs.manifest import MANIFEST, differences, read_manifest, warn_on_version_change, write_manifest
from videolens.runs.records import RecordLog

RESULTS = "results"
Mode = Literal["auto", "resume", "overwrite"]
MODES = ("auto", "resume", "overwrite")
_SHARD = re.compile(r"shard-(\d+)\.jsonl$")
#: Files a run writes next to its results, removed by ``mode="overwrite"``.
#: The files a run writes beside its results besides each table's own CSV files
#: (:data:`TABLE_OUTPUTS`): what --overwrite may delete.
OUTPUT_PATTERNS = (
    "discover_summary.csv",
    "discover_curve.csv",
    "report.html",
    "discovery.html",
    "pathway.json",
    ".report.lock",
)
#: The CSV files of a result table ``{}`` (the table itself, its accuracy and summary tables).
TABLE_OUTPUTS = ("{}.csv", "{}_accuracy.csv", "{}_summary.csv")


class Run:
    """A run folder opened by one process (rank ``rank`` of ``world_size``).

    Use :meth:`open` to start or resume a run and :meth:`load` to read one; pass the run
    as ``out=`` to an analysis to have its results written here, one record per sample.
    """

    def __init__(
        self, folder: Path, manifest: dict[str, Any], rank: int = 0, world_size: int = 1, created: bool = False
    ) -> None:
        self.folder, self.manifest, self.rank, self.world_size = Path(folder), manifest, rank, world_size
        self.created = created  # this process started the run (wrote its manifest) rather than resuming it

    def __repr__(self) -> str:
        return (
            f"Run({str(self.folder)!r}, command={self.manifest.get('command')!r}, rank={self.rank}/{self.world_size})"
        )

    # ---- opening -----------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        folder: str | Path,
        manifest: Mapping[str, Any],
        *,
        mode: Mode = "auto",
        rank: int | None = None,
        world_size: int | None = None,
    ) -> Run:
        """Start, resume or restart the run ``manifest`` describes in ``folder``.

        Args:
            folder: the output folder (created if needed).
            manifest: from :func:`~videolens.runs.manifest.make_manifest`.
            mode: ``"auto"``: resume the same run, start a new one in an empty folder, refuse
                another run's folder; ``"resume"``: the folder must hold this run;
                ``"overwrite"``: delete a previous run's results and start again.
            rank, world_size: this process' place among the processes sharing the run
                (default: from ``torch.distributed``, or ``0, 1``).

        Raises:
            RunError: the folder holds another run (the message lists what differs), there is
                nothing to resume, or the folder cannot be written.
        """
        if mode not in MODES:
            raise RunError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
        found_rank, found_world = distributed.rank_and_world()
        rank = found_rank if rank is None else rank
        world_size = found_world if world_size is None else world_size
        folder = Path(folder)
        problem, created = None, False
        if rank == 0:
            try:
                created = _prepare(folder, dict(manifest), mode)
            except RunError as exc:
                problem = str(exc)
        problem = distributed.broadcast_from_first(problem)
        if problem:
            raise RunError(problem)
        stored = read_manifest(folder)
        if stored is None or differences(stored, manifest):
            raise RunError(f"{folder} does not hold the run rank 0 prepared; give every process the same arguments.")
        return cls(folder, stored, rank, world_size, created)

    def discard_if_unused(self) -> None:
        """Remove the manifest of a run this process just started and that wrote nothing yet.

        For a command that fails after opening its run (say, an argument only the loaded
        model can check): the folder is left as it was, so the corrected command is not
        refused as "a different run".
        """
        if not (self.created and self.rank == 0):
            return
        shards = list((self.folder / RESULTS).glob("*/shard-*.jsonl"))
        if any(shard.stat().st_size for shard in shards):
            return  # records were written: the run stays, to be resumed
        for shard in shards:  # opened for writing, still empty
            shard.unlink(missing_ok=True)
            _remove_if_empty(shard.parent)
        _remove_if_empty(self.folder / RESULTS)
        (self.folder / MANIFEST).unlink(missing_ok=True)

    @classmethod
    def load(cls, folder: str | Path) -> Run:
        """An existing run, to read its tables (e.g. to rebuild the report)."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest is None:
            raise RunError(f"{folder} holds no videolens run (no {MANIFEST}); pass the --out folder of a run.")
        return cls(folder, manifest)

    # ---- tables ------------------------------------------------------------------------
    def owns(self, index: int) -> bool:
        """Whether sample ``index`` is this process' to compute."""
        return index % self.world_size == self.rank

    def shard(self, table: str, rank: int | None = None) -> RecordLog:
        return RecordLog(self.folder / RESULTS / table / f"shard-{self.rank if rank is None else rank}.jsonl")

    def tables(self) -> list[str]:
        """The tables with results: the manifest's order first, then any other found."""
        found = sorted(p.name for p in (self.folder / RESULTS).glob("*") if p.is_dir() and any(p.glob("shard-*.jsonl")))
        listed = [t for t in self.manifest.get("tables", []) if t in found]
        return listed + [t for t in found if t not in listed]

    def records(self, table: str) -> list[dict[str, Any]]:
        """Every sample's record of ``table``, from every shard, once each, in sample order."""
        shards = sorted(
            (int(m.group(1)), p)
            for p in (self.folder / RESULTS / table).glob("shard-*.jsonl")
            if (m := _SHARD.search(p.name))
        )
        by_key: dict[str, dict[str, Any]] = {}
        for _, path in shards:
            for record in RecordLog(path).read():
                by_key.setdefault(str(record.get("key")), record)
        return sorted(by_key.values(), key=lambda r: (int(r.get("index", 0)), str(r.get("key"))))

    def frame(self, table: str, records: list[dict[str, Any]] | None = None) -> pd.DataFrame:
        """The rows of ``table`` (of ``records`` if given) as a DataFrame, with the accuracy counts in ``attrs``."""
        records = self.records(table) if records is None else records
        df = pd.DataFrame([row for record in records for row in record.get("rows", [])])
        df.attrs.update(accuracy_attrs(records))
        return df

    def table(self, name: str) -> RunTable:
        """This process' writer for table ``name``."""
        return RunTable(self, name)


def accuracy_attrs(records: list[dict[str, Any]]) -> dict[str, Any]:
    """``n_samples``, ``n_analysed`` and ``base_accuracy`` over the records that carry a clean answer."""
    infos = [r["info"] for r in records if isinstance(r.get("info"), dict) and "correct" in r["info"]]
    if not infos:
        return {}
    correct = sum(bool(i["correct"]) for i in infos)
    return {
        "n_samples": len(infos),
        "n_analysed": sum(bool(i.get("analysed", True)) for i in infos),
        "base_accuracy": 100 * correct / len(infos),
    }


class RunTable:
    """One process' view of one table: which samples are done, and its own shard to append to."""

    def __init__(self, run: Run, name: str) -> None:
        self.run, self.name = run, name
        self.log = run.shard(name).open()  # cuts off a write a killed process left half done
        self.done = {str(r["key"]) for r in run.records(name)}

    def wants(self, index: int, key: str) -> bool:
        return self.run.owns(index) and key not in self.done

    def append(self, record: dict[str, Any]) -> None:
        self.log.append(record)
        self.done.add(str(record["key"]))

    def mine(self) -> list[dict[str, Any]]:
        """The records of the samples this process owns, from whichever shard holds them."""
        return [r for r in self.run.records(self.name) if self.run.owns(int(r["index"]))]

    def close(self) -> None:
        self.log.close()


def _prepare(folder: Path, manifest: dict[str, Any], mode: Mode) -> bool:
    """Check what ``folder`` holds against ``manifest``; clear it or write the manifest as the mode says.

    Returns whether a new run was started (False: the same run is resumed).
    """
    try:
        return _prepare_folder(folder, manifest, mode)
    except OSError as exc:
        raise RunError(f"Cannot write the run to {folder}: {exc.strerror or exc}; choose a writable --out.") from exc


def _prepare_folder(folder: Path, manifest: dict[str, Any], mode: Mode) -> bool:
    if folder.exists() and not folder.is_dir():
        raise RunError(f"--out {folder} is a file; pass a folder for the run's results.")
    old = read_manifest(folder) if folder.is_dir() else None
    orphan = old is None and any((folder / RESULTS).glob("*/shard-*.jsonl"))  # a run's records, its manifest lost
    if mode == "overwrite" and (old is not None or orphan):
        _clear(folder, (old or {}).get("tables") or [])
        old = None
    elif mode == "resume" and old is None:
        raise RunError(f"Nothing to resume in {folder}: it holds no run manifest. Drop --resume to start the run.")
    elif orphan:
        raise RunError(f"{folder} holds results but no manifest; pass --overwrite to start again there.")
    if old is None:
        folder.mkdir(parents=True, exist_ok=True)
        write_manifest(folder, manifest)
        return True
    changed = differences(old, manifest)
    if changed:
        raise RunError(
            f"{folder} holds a different run (it differs in {', '.join(changed)}); pass --overwrite to replace it, "
            "or choose another --out."
        )
    warn_on_version_change(old, manifest)
    return False


def _clear(folder: Path, tables: Sequence[str]) -> None:
    """Remove a previous run's manifest, record files and outputs, and nothing else in the folder.

    The folder may hold the user's own files (a dataset's annotations, notes): only the
    files a run writes go (its tables' CSV files, :data:`OUTPUT_PATTERNS`,
    ``results/<table>/shard-*.jsonl`` and their temporary files), and folders left empty by that.
    """
    results = folder / RESULTS
    found = [p for p in results.iterdir() if p.is_dir()] if results.is_dir() else []
    for name in {*tables, *(p.name for p in found)}:
        for pattern in TABLE_OUTPUTS:
            (folder / pattern.format(name)).unlink(missing_ok=True)
    if results.is_dir():
        for table in found:
            for path in table.iterdir():
                if path.is_file() and (_SHARD.search(path.name) or path.name.endswith(".tmp")):
                    path.unlink(missing_ok=True)
            _remove_if_empty(table)
        _remove_if_empty(results)
    (folder / MANIFEST).unlink(missing_ok=True)
    for pattern in OUTPUT_PATTERNS:
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty: the user's files stay
        pass
