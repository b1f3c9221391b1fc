"""Where a module's weights live and run: models spread over devices or offloaded by accelerate.

A model loaded with ``device_map="auto"`` (or any device map) is dispatched by accelerate:
each decoder layer may sit on its own GPU, and offloaded modules keep their weights on the
``meta`` device between calls, loaded by a hook just before their own ``forward``. videolens
composes each block from HF's submodules itself (to place its hook points), and reads norm
weights directly, so it must do what accelerate's hooks would: put the inputs on the
layer's execution device, and load offloaded weights around the reads. These helpers do
that, and cost nothing on a model that sits on one device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from videolens.errors import InputError

META = torch.device("meta")


def _hook_device(module: nn.Module) -> torch.device | None:
    """The execution device of accelerate's hook on ``module`` (None: no hook, or none set)."""
    hook = getattr(module, "_hf_hook", None)
    for part in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
        device = getattr(part, "execution_device", None)
        if device is not None:
            return torch.device(f"cuda:{device}" if isinstance(device, int) else device)
    return None


def execution_device(module: nn.Module) -> torch.device | None:
    """Where ``module`` computes: its accelerate hook's device, else its first weight's (None: no weights).

    Weights of offloaded submodules live on ``meta``; their hooks name the device they run on.
    """
    if getattr(module, "_hf_hook", None) is None:  # the common case, kept cheap: it runs once per layer call
        first = next(module.parameters(), None)
        if first is not None and first.device != META:
            return first.device
    for sub in module.modules():
        device = _hook_device(sub)
        if device is not None:
            return device
        for tensor in sub.parameters(recurse=False):
            if tensor.device != META:
                return tensor.device
    return None


def main_device(model: nn.Module) -> torch.device:
    """The device inputs go to: the first computing device of a dispatched model, else its parameters'."""
    return execution_device(model) or torch.device("cpu")


def is_dispatched(model: nn.Module) -> bool:
    """True when accelerate placed ``model`` (a device map: several devices, or offloaded weights)."""
    return bool(getattr(model, "hf_device_map", None)) or any(hasattr(m, "_hf_hook") for m in model.modules())


def devices_of(model: nn.Module) -> set[torch.device]:
    """Every device ``model`` computes on (offloaded modules count at their execution device)."""
    found = {t.device for t in model.parameters() if t.device != META}
    found |= {d for m in model.modules() if (d := _hook_device(m)) is not None}
    return found


@contextmanager
def onloaded(module: nn.Module) -> Iterator[None]:
    """``module``'s own offloaded weights in memory for the duration, as its accelerate hook would do.

    For a module accelerate does not offload this does nothing.
    """
    hook = getattr(module, "_hf_hook", None)
    if hook is None or not _offloads(hook):
        yield
        return
    hook.pre_forward(module)
    try:
        yield
    finally:
        hook.post_forward(module, None)


def _offloads(hook: object) -> bool:
    return any(getattr(part, "offload", False) for part in (getattr(hook, "hooks", None) or [hook]))


def to_device(x: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """``x`` on ``device`` (no copy when it is there already)."""
    return x if x is None or x.device == device else x.to(device)


def layer_device_map(
    hf_model: nn.Module,
    layers_path: str,
    layer_devices: Sequence[str | int],
    default: str | int = "cpu",
    overrides: dict[str, str | int] | None = None,
) -> dict[str, str | int]:
    """A device map for HF's loader that puts decoder layer ``i`` on ``layer_devices[i]``.

    Every other module (vision tower, projector, embeddings, final norm, head) goes to
    ``default`` unless ``overrides`` names it. Devices are what accelerate takes: ``0``,
    ``"cuda:1"``, ``"cpu"`` (offloaded to CPU memory when a GPU computes) or ``"disk"``.

    Example:
        >>> split = layer_device_map(hf, "model.language_model.layers", [0] * 16 + [1] * 16, default=0)  # doctest: +SKIP
        >>> model = HookedVideoLLM.from_pretrained(name, device_map=split)  # doctest: +SKIP
    """
    layers = hf_model.get_submodule(layers_path)
    if len(layer_devices) != len(layers):
        raise InputError(f"layer_devices names {len(layer_devices)} devices; the model has {len(layers)} layers.")
    out: dict[str, str | int] = {}

    def walk(prefix: str, module: nn.Module) -> None:
        for name, _ in module.named_parameters(recurse=False):
            out[prefix + name] = default
        for name, child in module.named_children():
            full = prefix + name
            if full == layers_path:
                out.update({f"{full}.{i}": device for i, device in enumerate(layer_devices)})
            elif layers_path.startswith(full + "."):
                walk(full + ".", child)
            else:
                out[full] = default

    walk("", hf_model)
    out.update(overrides or {})
    return out
