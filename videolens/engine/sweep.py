"""The sweep engine: many knockout conditions on one prompt for the cost of what they change.

A knockout whose first blocked layer is ``a`` and whose blocked queries all sit at
positions ``>= q0`` leaves every layer below ``a``, and every position below ``q0`` at every
layer, exactly as in the clean run. :class:`SweepEngine` runs the clean pass once, keeping
the residual stream entering every layer and every layer's keys and values; each condition
then starts at layer ``a`` from the clean residual of positions ``q0..N-1`` only, attending
to the clean keys/values of the prefix. Conditions that recompute the same positions run as
one batched forward, sorted by ``a`` and chunked to a token budget; each joins the batch at
its own first layer, so a chunk does no layer-work below any member's ``a`` (the FLOP floor
of the recomputation). A knockout into the last token alone costs one token per layer.
The distinct masks of a group of conditions are built once, in the kernel's form
(:class:`~videolens.engine.palette.MaskPalette`), and picked per layer.

The results equal full forwards with the same knockouts (tested to 1e-5 in fp32); the
plain path stays available in every analysis (``engine="plain"``).
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float

from videolens.core.attention import KVStore
from videolens.core.hooked import HookedVideoLLM
from videolens.core.prompt import VideoPrompt
from videolens.engine.palette import MaskPalette
from videolens.errors import InputError
from videolens.interventions.knockout import EdgeKnockout, blocked_masks


@dataclass
class Condition:
    """One knockout, compiled: where its recomputation starts and what it blocks."""

    index: int
    first_layer: int
    first_query: int
    blocked: dict[int, torch.Tensor]


class SweepEngine:
    """Last-position logits of one prompt under many knockouts, reusing the clean run.

    Args:
        model: the hooked model.
        prompt: one prompt (a batch of one; the engine sweeps conditions, not prompts).
        max_batch: the most conditions run together in one forward.
        max_tokens: the most recomputed positions (conditions x positions) in one forward.

    Example:
        >>> engine = SweepEngine(model, prompt)  # doctest: +SKIP
        >>> logits = engine.last_logits([EdgeKnockout("video", "last", layers=range(l, l + 9)) for l in range(24)])  # doctest: +SKIP
    """

    def __init__(
        self, model: HookedVideoLLM, prompt: VideoPrompt, max_batch: int = 256, max_tokens: int = 16384
    ) -> None:
        self.model, self.prompt, self.max_batch, self.max_tokens = model, prompt, max_batch, max_tokens
        self._mask_cache: dict = {}
        self._first_row: dict[int, tuple[weakref.ref, int]] = {}
        self._suffixes: dict[int, tuple[tuple[torch.Tensor, torch.Tensor], KVStore]] = {}
        batch = model.batch(prompt)
        if batch.size != 1 or batch.padded:
            raise InputError("SweepEngine takes a single prompt; run one engine per prompt.")
        self.batch = batch
        with torch.no_grad(), model.driving():
            embedded = model.prefill(batch, stop=0)
            resid = embedded.resid
            self.extra = embedded.extra  # e.g. DeepStack features, applied after layers by the adapter
            self.position_embeddings = embedded.position_embeddings
            self.kv = KVStore.empty()
            self.resid_pre: list[torch.Tensor] = []
            for layer in range(model.cfg.n_layers):
                self.resid_pre.append(resid)
                resid = model.run_layers(
                    resid, self.position_embeddings, layer, layer + 1, None, {}, None, self.kv, self.extra
                )
            self.clean_last_logits = model.resid_to_logits(resid[:, -1])[0]

    @property
    def seq_len(self) -> int:
        return self.batch.seq_len

    def compile(self, knockouts: Sequence[EdgeKnockout | None]) -> list[Condition | None]:
        """Blocked masks and the ``(first layer, first query)`` of each knockout (None: clean)."""
        model, n = self.model, self.seq_len
        out: list[Condition | None] = []
        for i, ko in enumerate(knockouts):
            if ko is None:
                out.append(None)
                continue
            blocked = blocked_masks(
                [ko], self.batch.layouts, n, model.cfg.n_layers, model.cfg.n_heads, model.cfg.device, self._mask_cache
            )
            rows = {layer: self._first_blocked_row(m) for layer, m in blocked.items()}
            blocked = {layer: m for layer, m in blocked.items() if rows[layer] < n}
            if not blocked:
                out.append(None)
                continue
            out.append(Condition(i, min(blocked), min(rows[layer] for layer in blocked), blocked))
        return out

    def _first_blocked_row(self, mask: torch.Tensor) -> int:
        """The first query row ``mask`` blocks anything in (``seq_len``: none), computed once per mask.

        Masks shared across a layer sweep live in the mask cache and are looked up many
        times; knockout-specific masks die after their call, and a new tensor may then get
        the same ``id``. Entries hold a weak reference and count only while it still points
        at this very tensor, and are dropped when it dies.
        """
        key = id(mask)
        entry = self._first_row.get(key)
        if entry is not None and entry[0]() is mask:
            return entry[1]
        any_row = mask.any(-1).any(0).any(0).nonzero()
        row = int(any_row[0]) if len(any_row) else self.seq_len
        self._first_row[key] = (weakref.ref(mask, _forgetter(self._first_row, key)), row)
        return row

    @torch.no_grad()
    def last_logits(self, knockouts: Sequence[EdgeKnockout | None]) -> Float[torch.Tensor, "condition d_vocab"]:
        """Logits at the last position under each knockout (None: the clean run)."""
        conditions = self.compile(knockouts)
        out = self.clean_last_logits.expand(len(knockouts), -1).clone()
        by_query: dict[int, list[Condition]] = defaultdict(list)
        for cond in conditions:
            if cond is not None:
                by_query[cond.first_query].append(cond)
        # Results are scattered once at the end: building an index tensor per chunk would
        # wait for the GPU to finish each chunk before the next one is launched.
        indices: list[int] = []
        results: list[torch.Tensor] = []
        with self.model.driving():
            for q0, members in by_query.items():
                members.sort(key=lambda c: c.first_layer)
                palette = MaskPalette(self, q0, members)
                size = max(1, min(self.max_batch, self.max_tokens // (self.seq_len - q0)))
                for start in range(0, len(members), size):
                    chunk = members[start : start + size]
                    results.append(self._run(q0, chunk, palette, start).to(out.dtype))
                    indices.extend(cond.index for cond in chunk)
        if results:
            out.index_copy_(0, torch.tensor(indices, device=out.device), torch.cat(results))
        return out

    def _run(
        self, q0: int, chunk: list[Condition], palette: MaskPalette, offset: int
    ) -> Float[torch.Tensor, "batch d_vocab"]:
        """One chunk (sorted by first layer), each condition joining the batch at its own first layer.

        Starting every member at the chunk's smallest first layer would also be exact, but
        costs the layer-work between that layer and each member's own (about a quarter more
        than the floor in the paper's cross-frame sweep); joining late costs nothing.
        """
        model, n = self.model, self.seq_len
        pe, past = self._suffix_inputs(q0)
        resid: torch.Tensor | None = None
        joined = 0
        for layer in range(chunk[0].first_layer, model.cfg.n_layers):
            new = joined
            while new < len(chunk) and chunk[new].first_layer == layer:
                new += 1
            if new > joined:
                rows = self.resid_pre[layer][:, q0:].expand(new - joined, -1, -1)
                resid = rows.contiguous() if resid is None else torch.cat([resid, rows.to(resid.device)])
                joined = new
            allowed = palette.layer_mask(layer, offset, offset + joined)
            resid = model.run_layers(
                resid, pe, layer, layer + 1, None, {layer: allowed}, past, None, self.extra, slice(q0, n)
            )
        return model.resid_to_logits(resid[:, -1])

    def _suffix_inputs(self, q0: int) -> tuple[tuple[torch.Tensor, torch.Tensor], KVStore]:
        """Rotary embeddings of positions ``q0..N-1`` and the clean keys/values before ``q0`` (views, kept per ``q0``).

        The same view objects serve every sweep of this prompt, so what layers derive from
        them once (the rotary matrix of a one-token step) is derived once per prompt.
        """
        suffix = self._suffixes.get(q0)
        if suffix is None:
            cos, sin = self.position_embeddings
            pe = (cos[..., q0:, :], sin[..., q0:, :])
            past = KVStore(  # batch 1: shared by all rows of the batch
                {layer: k[..., :q0, :] for layer, k in self.kv.keys.items()},
                {layer: v[..., :q0, :] for layer, v in self.kv.values.items()},
            )
            suffix = self._suffixes[q0] = (pe, past)
        return suffix

    def continue_from(
        self,
        first_layer: int,
        q0: int,
        resid: Float[torch.Tensor, "batch suffix d_model"],
        per_layer: dict[int, torch.Tensor] | None = None,
    ) -> Float[torch.Tensor, "batch d_vocab"]:
        """Last-position logits when positions ``q0..N-1`` enter layer ``first_layer`` as ``resid``.

        Positions before ``q0`` keep the clean run's keys and values (shared by the batch,
        not copied). ``per_layer`` holds allowed masks ``(batch, heads, N - q0, N)`` for
        layers with knockouts. Run it inside ``model.driving()``; hooks on the model fire
        on the recomputed positions only (activation patching uses that).
        """
        model, n = self.model, self.seq_len
        pe, past = self._suffix_inputs(q0)
        resid = model.run_layers(
            resid, pe, first_layer, model.cfg.n_layers, None, per_layer or {}, past, None, self.extra, slice(q0, n)
        )
        return model.resid_to_logits(resid[:, -1])


def _forgetter(table: dict, key: int):
    """A weak-reference callback dropping ``table[key]`` when its tensor dies.

    It holds the table, not the engine: a callback bound to the engine would put the
    engine in a reference cycle, and its clean-run store (a gigabyte on a 7B model) would
    outlive ``del engine`` until the garbage collector ran.
    """

    def forget(ref: weakref.ref) -> None:
        entry = table.get(key)
        if entry is not None and entry[0] is ref:
            del table[key]

    return forget
