"""Interventions: objects that say what they do to a forward pass.

:class:`EdgeKnockout` blocks attention edges from the key positions of a source group to
the query positions of a destination group in chosen layers (optionally heads). Groups
are layout names (``"video"``, ``"frame(2)"``, ``"last"``), position lists, or callables
on the :class:`~videolens.core.layout.TokenLayout`. Knockouts compose with ``+`` and compile
to one boolean mask per distinct layer configuration, shared by all heads unless heads
are named (never a dense float mask per head).

Conventions follow the paper: "A -/-> B" means queries in B may not attend keys in A.
By default a knockout whose source and destination overlap is an error (it would block
tokens from themselves, usually a mistake); pass ``allow_self=True`` where that is meant,
as in the paper's Last -/-> Last. A knockout that leaves some query with nothing at all
to attend to is always an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch
from jaxtyping import Bool, Int

from videolens.core.layout import TokenLayout, resolve_group
from videolens.errors import InterventionError, LayerRangeError

Group = Union[str, Sequence[int], torch.Tensor, Callable[[TokenLayout], Any]]
EdgeFn = Callable[[TokenLayout], list[tuple[torch.Tensor, torch.Tensor]]]


def check_layers(layers: Iterable[int], n_layers: int) -> tuple[int, ...]:
    """Layers as a sorted tuple, each checked against ``n_layers``."""
    out = sorted(_indices(layers, "layers"))
    bad = [layer for layer in out if not 0 <= layer < n_layers]
    if bad:
        raise LayerRangeError(f"Layers {bad} are outside the model, which has layers 0..{n_layers - 1}.")
    return tuple(out)


@dataclass(frozen=True)
class _Edges:
    """One block of edges: a rule producing (src, dst) position pairs, in some layers and heads."""

    edges: EdgeFn
    layers: tuple[int, ...]
    heads: tuple[int, ...] | None
    label: str
    allow_self: bool = False
    pointwise: bool = False  # edges are (keys, queries) pairs elementwise, not a product
    key: tuple | None = None  # identifies the edges (not the layers) for reuse across knockouts; None: never shared


@dataclass(frozen=True)
class EdgeKnockout:
    """Block attention from ``src`` (keys) to ``dst`` (queries) in ``layers``.

    Args:
        src: the key group (a layout name, positions, or a callable on the layout).
        dst: the query group.
        layers: the layers (0-indexed) in which the edges are blocked.
        heads: query heads to block; ``None`` blocks all heads.
        allow_self: allow ``src`` and ``dst`` to overlap (blocking tokens from themselves).

    Example:
        >>> ko = EdgeKnockout("video", "last", layers=range(8, 17)) + EdgeKnockout.cross_frame(range(0, 9))
        >>> logits = model(prompt, interventions=[ko])  # doctest: +SKIP
    """

    src: Group | None = None
    dst: Group | None = None
    layers: Iterable[int] = ()
    heads: Iterable[int] | None = None
    allow_self: bool = False
    parts: tuple[_Edges, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.parts:
            return
        if self.src is None or self.dst is None:
            raise InterventionError("EdgeKnockout needs both src and dst groups.")
        src, dst = self.src, self.dst

        def edges(layout: TokenLayout) -> list[tuple[torch.Tensor, torch.Tensor]]:
            return [(_nonempty(layout, src, "src"), _nonempty(layout, dst, "dst"))]

        label = f"{_name(src)} -/-> {_name(dst)}"
        key = ("edge", src, dst, self.allow_self) if isinstance(src, str) and isinstance(dst, str) else None
        object.__setattr__(
            self, "parts", (_make_part(edges, self.layers, self.heads, label, self.allow_self, key=key),)
        )

    @classmethod
    def from_edges(
        cls, edges: EdgeFn, layers: Iterable[int], heads: Iterable[int] | None = None, label: str = "custom"
    ) -> EdgeKnockout:
        """A knockout from a function that lists ``(src_positions, dst_positions)`` pairs for a layout."""
        return cls(parts=(_make_part(edges, layers, heads, label),))

    @classmethod
    def from_mask(
        cls,
        blocked: Callable[[TokenLayout], torch.Tensor],
        layers: Iterable[int],
        heads: Iterable[int] | None = None,
        label: str = "mask",
    ) -> EdgeKnockout:
        """A knockout from a function giving a ``(q_pos, k_pos)`` boolean matrix, True = blocked.

        For edge sets with no group structure (e.g. a random baseline). Blocking a token
        from itself is allowed here; rows left with nothing to attend to are still an error.
        """

        def edges(layout: TokenLayout) -> list[tuple[torch.Tensor, torch.Tensor]]:
            q, k = torch.nonzero(blocked(layout), as_tuple=True)
            return [(k, q)] if len(q) else []

        return cls(parts=(_make_part(edges, layers, heads, label, True, pointwise=True),))

    @classmethod
    def cross_frame(
        cls, layers: Iterable[int], heads: Iterable[int] | None = None, *, with_text: bool = False
    ) -> EdgeKnockout:
        """Block every earlier-frame -> later-frame edge (attention within a frame is kept).

        ``with_text=True`` counts each frame's text (``layout.frames[t].text``: InternVL's
        ``FrameN:`` label, Qwen3-VL's and VideoLLaMA3's timestamp) as part of the frame, so
        that frame -> later label -> later frame is blocked too. The default blocks the frame
        tokens only, as the paper's method does (Sec. 4.1); nothing differs for a family
        without frame text.
        """

        def edges(layout: TokenLayout) -> list[tuple[torch.Tensor, torch.Tensor]]:
            if layout.n_frames < 2:
                raise InterventionError("cross_frame needs a video with at least two frames (temporal units).")
            spans = [frame_span(layout, t, with_text) for t in range(layout.n_frames)]
            return [(torch.cat(spans[:t]), spans[t]) for t in range(1, layout.n_frames)]

        label, key = ("cross-frame+text", ("cross-frame+text",)) if with_text else ("cross-frame", ("cross-frame",))
        return cls(parts=(_make_part(edges, layers, heads, label, key=key),))

    def __add__(self, other: EdgeKnockout) -> EdgeKnockout:
        if not isinstance(other, EdgeKnockout):
            return NotImplemented
        return EdgeKnockout(parts=self.parts + other.parts)

    @property
    def all_layers(self) -> tuple[int, ...]:
        return tuple(sorted({layer for part in self.parts for layer in part.layers}))

    def __repr__(self) -> str:
        inner = "; ".join(
            f"{p.label} @ layers {_span(p.layers)}" + (f" heads {list(p.heads)}" if p.heads else "") for p in self.parts
        )
        return f"EdgeKnockout({inner})"


def frame_span(layout: TokenLayout, t: int, with_text: bool = False) -> Int[torch.Tensor, " pos"]:
    """Frame ``t``'s positions, with its text (label, timestamp: ``layout.frames[t].text``) if asked."""
    if not with_text:
        return layout.frame(t)
    unit = layout.frames[t]
    return torch.as_tensor(np.sort(np.concatenate([unit.positions, unit.text])), dtype=torch.long)


def _indices(values: object, name: str) -> set[int]:
    """Whole-number indices from an iterable; a bare int is refused (``layers=5`` could mean 5 or 0..4)."""
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        raise InterventionError(
            f"{name}={values} is a single number; pass a list or range: {name}=[{values}] for that one, "
            f"or {name}=range({values}) for 0..{int(values) - 1}."
        )
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InterventionError(f"{name} must be a list or range of indices; got {type(values).__name__}.")
    out = set()
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise InterventionError(f"{name} must hold whole numbers; got {v!r}.")
        out.add(int(v))
    return out


def check_interventions(interventions: object) -> list[EdgeKnockout]:
    """Interventions as a list of :class:`EdgeKnockout`; anything else is refused by name."""
    if interventions is None:
        return []
    if isinstance(interventions, EdgeKnockout):
        return [interventions]
    if isinstance(interventions, (str, bytes)) or not isinstance(interventions, Iterable):
        raise InterventionError(
            f"interventions must be an EdgeKnockout or a list of them; got {type(interventions).__name__}."
        )
    items = list(interventions)
    for item in items:
        if not isinstance(item, EdgeKnockout):
            raise InterventionError(
                f"interventions holds {type(item).__name__} {item!r}; each must be an EdgeKnockout "
                "(e.g. EdgeKnockout('video', 'last', layers=range(8, 17))). Use fwd_hooks for hook functions."
            )
    return items


def _make_part(
    edges: EdgeFn,
    layers: Iterable[int],
    heads: Iterable[int] | None,
    label: str,
    allow_self: bool = False,
    pointwise: bool = False,
    key: tuple | None = None,
) -> _Edges:
    layer_tuple = tuple(sorted(_indices(layers, "layers")))
    if not layer_tuple:
        raise InterventionError(f"Knockout {label!r} names no layers.")
    head_tuple = None if heads is None else tuple(sorted(_indices(heads, "heads")))
    if head_tuple == ():
        raise InterventionError(f"Knockout {label!r} names no heads; pass heads=None to block all heads.")
    return _Edges(edges, layer_tuple, head_tuple, label, allow_self, pointwise, key)


def _name(group: Group) -> str:
    if isinstance(group, str):
        return group
    return getattr(group, "__name__", type(group).__name__)


def _span(layers: tuple[int, ...]) -> str:
    if layers and layers == tuple(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return str(list(layers))


def _nonempty(layout: TokenLayout, group: Group, role: str) -> torch.Tensor:
    pos = resolve_group(layout, group)
    if pos.numel() == 0:
        raise InterventionError(f"The {role} group {_name(group)!r} is empty for this prompt; nothing to block.")
    return pos


def _part_mask(part: _Edges, layouts: Sequence[TokenLayout], seq_len: int, n_heads: int, device) -> torch.Tensor:
    """``(batch, heads or 1, q_pos, k_pos)``: True where this part blocks (in any of its layers)."""
    mask = torch.zeros(
        len(layouts), 1 if part.heads is None else n_heads, seq_len, seq_len, dtype=torch.bool, device=device
    )
    heads = range(mask.shape[1]) if part.heads is None else part.heads
    for b, layout in enumerate(layouts):
        for src, dst in part.edges(layout):
            both = set() if part.allow_self else set(src.tolist()) & set(dst.tolist())
            if both:
                raise InterventionError(
                    f"Knockout {part.label!r} would block positions {sorted(both)[:8]} from themselves: "
                    "src and dst overlap. Use disjoint groups."
                )
            if part.pointwise:
                rows, cols = dst.to(device), src.to(device)
            else:
                rows, cols = dst.to(device)[:, None], src.to(device)[None, :]
            for h in heads:
                mask[b, h, rows, cols] = True
    return mask


def blocked_masks(
    interventions: Sequence[EdgeKnockout],
    layouts: Sequence[TokenLayout],
    seq_len: int,
    n_layers: int,
    n_heads: int,
    device: torch.device | str = "cpu",
    cache: dict | None = None,
    valid: Bool[torch.Tensor, "batch k_pos"] | None = None,
) -> dict[int, Bool[torch.Tensor, "batch head_or_1 q_pos k_pos"]]:
    """Compile knockouts to one boolean "blocked" mask per affected layer.

    Layers with the same set of edge blocks share one tensor. The head axis is 1 unless
    some block names heads. ``cache`` (a dict kept by the caller for one set of layouts
    and one padding) lets many knockouts that block the same groups in different layers,
    as in a layer sweep, share their masks and checks. ``valid`` marks the real (not
    padding) positions of a left-padded batch: a query must keep at least one real key,
    so padding keys never count as something left to attend to.
    """
    cache = {} if cache is None else cache
    parts = [part for ko in interventions for part in ko.parts]
    for part in parts:
        check_layers(part.layers, n_layers)
        if part.heads is not None:
            bad = [h for h in part.heads if not 0 <= h < n_heads]
            if bad:
                raise InterventionError(f"Heads {bad} are outside the model, which has heads 0..{n_heads - 1}.")
    part_keys = [("part", p.key, p.heads) if p.key is not None else ("local", id(p)) for p in parts]
    for part, key in zip(parts, part_keys):
        if key not in cache:
            cache[key] = _part_mask(part, layouts, seq_len, n_heads, device)
            if not part.pointwise:
                _check_blocks_something(part, cache[key], _attendable(cache, seq_len, device, None))
    keys_by_layer: dict[int, set] = {}
    for part, key in zip(parts, part_keys):
        for layer in part.layers:
            keys_by_layer.setdefault(layer, set()).add(key)
    out: dict[int, torch.Tensor] = {}
    for layer in sorted(keys_by_layer):
        keys = keys_by_layer[layer]
        combo = tuple(keys) if len(keys) == 1 else tuple(sorted(keys, key=repr))
        if ("combo", combo) not in cache:
            masks = [cache[k] for k in combo]
            mask = masks[0]
            for other in masks[1:]:
                mask = mask | other
            empty = ((_attendable(cache, seq_len, device, valid) & ~mask).sum(-1) == 0).nonzero()
            if len(empty):
                b, h, q = empty[0].tolist()
                raise InterventionError(
                    f"The knockouts in layer {layer} leave query position {q} (item {b}, head {h}) nothing to "
                    "attend to; keep at least one key per query (e.g. the system prompt)."
                )
            cache[("combo", combo)] = mask
        out[layer] = cache[("combo", combo)]
    if not any(k[0] == "local" for k in part_keys):
        return out
    for key in [k for k in cache if (k[0] == "local") or (k[0] == "combo" and any(c[0] == "local" for c in k[1]))]:
        del cache[key]  # knockout-specific masks are not reusable
    return out


def _check_blocks_something(part: _Edges, mask: torch.Tensor, causal: torch.Tensor) -> None:
    """A group knockout that blocks no edge any query could use is a mistake, not a no-op.

    Attention only looks back, so ``EdgeKnockout("last", "video")`` (keys after every
    query) blocks nothing; the user almost always meant the reverse direction.
    """
    live = (mask & causal).flatten(1).any(-1)
    if not bool(live.all()):
        item = int((~live).nonzero()[0])
        raise InterventionError(
            f"Knockout {part.label!r} blocks no edge (item {item}): every key of its source comes after every "
            "query of its destination, and attention only looks back. Did you swap src and dst? "
            "EdgeKnockout(src, dst) blocks queries in dst from attending keys in src."
        )


def _attendable(
    cache: dict, seq_len: int, device: torch.device | str, valid: torch.Tensor | None
) -> Bool[torch.Tensor, "batch_or_1 1 q_pos k_pos"]:
    """Keys each query may attend before any knockout (the causal triangle, cached; see :func:`attendable_keys`)."""
    causal = cache.setdefault("causal", torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril())
    return causal if valid is None else attendable_keys(causal, valid)


def attendable_keys(
    causal: Bool[torch.Tensor, "q_pos k_pos"], valid: Bool[torch.Tensor, "batch k_pos"]
) -> Bool[torch.Tensor, "batch 1 q_pos k_pos"]:
    """The keys each query of a padded batch may attend: causal and real; a padding query keeps itself.

    The forward's base mask for a padded batch, and what "a query has something left to
    attend to" is checked against (padding keys never count).
    """
    valid = valid.to(device=causal.device, dtype=torch.bool)
    eye = torch.eye(causal.shape[-1], dtype=torch.bool, device=causal.device)
    return (causal & valid[:, None, None, :]) | (~valid[:, None, :, None] & eye)
