"""The support tables of README.md and docs/adapters.md, generated from the adapter registry.

Each family's adapter carries its row (``support = SupportRow(...)``,
:mod:`videolens.testing.spec`); this module renders the rows as markdown. A test checks
that the tables in the docs equal the generated text, so they cannot drift from the code;
after adding or changing a family run ``python -m videolens.testing.support`` to rewrite them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from videolens.adapters.protocol import VideoLLMAdapter, registered_adapters
from videolens.errors import InputError
from videolens.testing.spec import SupportRow

__all__ = ["DOCUMENTS", "VIEWS", "find_table", "support_table", "update_tables"]

#: view -> column headers. "models": README's "Supported models"; "adapters": docs/adapters.md.
VIEWS: dict[str, tuple[str, ...]] = {
    "models": ("family", "HF class", "frames in the layout"),
    "adapters": ("family", "module", "tokens per temporal unit", "notes"),
}
#: The documents holding the tables (relative to the repository root) and the view each holds.
DOCUMENTS: dict[str, str] = {"README.md": "models", "docs/adapters.md": "adapters"}


def _module_file(cls: type[VideoLLMAdapter]) -> str:
    """The adapter's file relative to ``model_adapters`` (``qwen2_vl.py``, ``pllava/adapter.py``)."""
    return cls.__module__.removeprefix("model_adapters.").replace(".", "/") + ".py"


def _cells(view: str, cls: type[VideoLLMAdapter], row: SupportRow) -> tuple[str, ...]:
    if view == "models":
        hf_class = f"`{cls.architectures[0]}` {row.hf_class_note}".strip()
        return row.name, hf_class, row.frames
    return row.name, f"`{_module_file(cls)}`", row.tokens_per_unit, row.notes


def support_table(view: str = "models") -> str:
    """The markdown table of every registered family with a support row, sorted by family.

    ``view`` picks the columns (:data:`VIEWS`). Rows come from the adapters' own ``support``
    attributes (not inherited ones), so a family appears once, from its own module.
    """
    if view not in VIEWS:
        raise InputError(f"Unknown support-table view {view!r}; views: {', '.join(VIEWS)}")
    adapters = sorted(
        (cls for cls in registered_adapters() if vars(cls).get("support") is not None), key=lambda c: c.family
    )
    lines = ["| " + " | ".join(VIEWS[view]) + " |", "|" + "---|" * len(VIEWS[view])]
    lines += ["| " + " | ".join(_cells(view, cls, vars(cls)["support"])) + " |" for cls in adapters]
    return "\n".join(lines)


def find_table(text: str, view: str) -> tuple[int, int]:
    """``(start, end)`` character offsets of the ``view`` table in a markdown ``text``.

    The table is found by its header line and runs to the last consecutive ``|`` line.
    """
    header = "| " + " | ".join(VIEWS[view]) + " |"
    start = text.find("\n" + header + "\n")
    if start < 0:
        raise InputError(f"No table headed {header!r} in the text.")
    start += 1
    end = start
    for line in text[start:].splitlines(keepends=True):
        if not line.startswith("|"):
            break
        end += len(line)
    return start, end - (text[end - 1 : end] == "\n")


def update_tables(root: str | Path = ".") -> list[Path]:
    """Rewrite the tables of :data:`DOCUMENTS` under ``root``; returns the files that changed."""
    changed = []
    for name, view in DOCUMENTS.items():
        path = Path(root) / name
        text = path.read_text()
        start, end = find_table(text, view)
        new = text[:start] + support_table(view) + text[end:]
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in update_tables(sys.argv[1] if len(sys.argv) > 1 else "."):
        print(f"updated {path}")
