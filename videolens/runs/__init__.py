"""Runs that survive crashes: a manifest, one checksummed record per sample, resume, shards, reports.

>>> from videolens.runs import Run, make_manifest, build_report
>>> manifest = make_manifest(command="flow", model=name, dataset={"name": "tvbench"},
...                          arguments={"target": "cross-frame"}, sample_ids=[s.id for s in samples])  # doctest: +SKIP
>>> run = Run.open("runs/x", manifest)                                    # resumes the same run  # doctest: +SKIP
>>> df = information_flow(model, samples, "cross-frame", out=run)        # doctest: +SKIP
>>> build_report("runs/x")                                                # CSVs + report.html  # doctest: +SKIP

See ``records.py`` for the on-disk format and why a killed process cannot leave a torn row.
"""

from videolens.runs.errors import RunError
from videolens.runs.manifest import make_manifest
from videolens.runs.records import RecordLog
from videolens.runs.report import build_report
from videolens.runs.run import Run, RunTable

__all__ = ["RecordLog", "Run", "RunError", "RunTable", "build_report", "make_manifest"]
