"""Models shipped inside the package, loadable by name with no network."""

from __future__ import annotations

from pathlib import Path

#: Shipped model names -> folders inside the installed package.
SHIPPED: dict[str, Path] = {}


def resolve_model_name(name: str) -> str:
    """A shipped model's folder for its name; any other name is returned unchanged."""
    folder = SHIPPED.get(name)
    return str(folder) if folder is not None else name
