"""One module (or small package) per VideoLLM family; importing this package registers them all.

A family module holds everything about the family: its adapter (where the HF modules live
and how the video tokens are laid out, see ``videolens.adapters.VideoLLMAdapter``), its
tiny test model and expected layout (``tiny``) and its row of the support tables
(``support``); ``@register_adapter`` on the adapter is its one line of registration. Every
module of this package whose name does not start with ``_`` is imported here, so adding a
family is adding its module (docs/adapters.md).
"""

from __future__ import annotations

import pkgutil
from importlib import import_module

__all__ = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))

for _name in __all__:
    import_module(f"{__name__}.{_name}")
