"""A run's manifest: what was computed, on what, with which code, so a folder says what it holds.

``manifest.json`` records the command, the model, the dataset, the analysis arguments,
the seed, the samples (their count and a digest of their ids in order), the package
versions and when the run started. Two manifests describe *the same run* when the
fields in :data:`IDENTITY` agree: only then are a folder's results resumed. Versions,
device and times are recorded but not compared (a different version is warned about).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from videolens.runs.records import write_atomic

MANIFEST = "manifest.json"
FORMAT = 1
#: The fields that must agree for a folder's results to be resumed.
IDENTITY = ("format", "command", "model", "dtype", "dataset", "arguments", "seed", "samples")
_PACKAGES = ("videolens", "torch", "transformers", "transformer_lens", "av", "numpy", "pandas")


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages whose code decides the results."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def samples_digest(sample_ids: Sequence[str]) -> dict[str, Any]:
    """The samples a run covers: how many, and a digest of their ids in order."""
    digest = hashlib.sha256("\n".join(map(str, sample_ids)).encode()).hexdigest()
    return {"count": len(sample_ids), "sha256": digest}


def make_manifest(
    *,
    command: str,
    model: str,
    dataset: Mapping[str, Any],
    arguments: Mapping[str, Any],
    sample_ids: Sequence[str],
    seed: int | None = None,
    dtype: str | None = None,
    device: str | None = None,
    tables: Sequence[str] = (),
) -> dict[str, Any]:
    """A manifest for a run (plain JSON values only, so it compares equal after a round trip).

    Args:
        command: what computes the results (``"flow"``, ``"pathways"``, ``"answer-prob"``, or your own name).
        model: the model's name or folder.
        dataset: where the samples come from (name, root, tasks, ...).
        arguments: the analysis arguments that change the results.
        sample_ids: the ids of every sample of the run, in order.
        seed, dtype, device: as used; ``device`` is recorded, not compared.
        tables: the result tables the run writes, in report order.
    """
    manifest = {
        "format": FORMAT,
        "command": command,
        "model": model,
        "dtype": dtype,
        "device": device,
        "dataset": dict(dataset),
        "arguments": dict(arguments),
        "seed": seed,
        "samples": samples_digest(sample_ids),
        "tables": list(tables),
        "versions": package_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": list(sys.argv),
    }
    return json.loads(json.dumps(manifest, default=str))


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The identity fields (dotted, e.g. ``arguments.window``) in which two manifests disagree."""
    out: list[str] = []
    for key in IDENTITY:
        _diff(old.get(key), new.get(key), key, out)
    return out


def _diff(a: Any, b: Any, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _diff(a.get(key), b.get(key), f"{where}.{key}", out)
    elif a != b:
        out.append(where)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest in ``folder``, or None when there is none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    from videolens.runs.errors import RunError

    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(
            f"{path} is not a readable run manifest ({exc}); pass --overwrite to start the run again."
        ) from exc
    if not isinstance(data, dict) or "command" not in data:
        raise RunError(f"{path} is not a videolens run manifest; choose another output folder or pass --overwrite.")
    return data


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> Path:
    return write_atomic(Path(folder) / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def warn_on_version_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    before, now = old.get("versions") or {}, new.get("versions") or {}
    changed = [f"{k} {before.get(k)} -> {now.get(k)}" for k in sorted(now) if before.get(k) != now.get(k)]
    if changed:
        warnings.warn(f"Resuming a run started with other package versions ({', '.join(changed)}).", stacklevel=3)
