"""Models shipped inside the package, loadable by name with no network."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

#: Shipped model names -> folders inside the installed package.
SHIPPED: dict[str, Path] = {
    "videolens/toy-moving-shapes": _HERE / "toy_moving_shapes",
}
#: The model the command line and the examples use by default.
DEFAULT_MODEL = "videolens/toy-moving-shapes"


def resolve_model_name(name: str) -> str:
    """A shipped model's folder for its name; any other name is returned unchanged."""
    folder = SHIPPED.get(name)
    return str(folder) if folder is not None else name
