"""TokenLayout: which positions of a prompt hold what.

Every analysis talks about groups of positions: the system prompt, the video, frame ``t``,
the patch at ``(t, h, w)``, the question, each option, the answer prefix ("tail") and the
last position. A :class:`TokenLayout` holds them for one prompt. It is built by
:mod:`videolens.core.prompt` from the processor's own outputs (placeholder token runs, frame
grids) and the tokenizer's offset mapping, never by searching decoded text.

Leaf groups partition the sequence: every position is in exactly one of

- ``template``: chat-template tokens (BOS, role markers, separators, vision start/end),
- ``system``: the system prompt,
- ``frame(t)``: the video tokens of the model's t-th temporal unit (its patch grid, plus
  any per-frame prefix token such as Video-LLaVA's CLS, which belongs to no patch),
- ``video_extra``: video tokens that belong to no frame (LLaVA-OneVision's newline),
- ``video_text``: text the processor put between the frames (InternVL's ``Frame3: <img>``
  labels); each frame's share is ``layout.frames[t].text``,
- ``question_text``: the question sentence alone, the paper's "non-option question",
- ``question_labels``: the rest of the question block: ``Question:``, ``Options:`` and the
  line breaks before the options,
- ``option(k)``: the k-th option, e.g. ``"(B) Took the box."``,
- ``tail``: text after the question up to the last position (instruction, assistant
  marker, answer prefix),
- ``last``: the last position (where the answer is read).

Composite groups: ``video`` (all frames plus ``video_extra``: exactly the video tokens),
``video_span`` (``video`` plus ``video_text``), ``video_block`` (the run from the first
video token on of video, ``video_text`` and template tokens: the video with its labels,
timestamps and vision start/end tokens, which read the frames), ``frames`` (all frames only),
``question_body`` (``question_labels`` plus ``question_text``: the question block without
its options), ``question`` (``question_body`` plus options), ``options``, ``text`` (all but
the video), ``all``, and, when the prompt knows its answer, ``true_option`` and
``false_options``.

A token joins the group of its first non-whitespace character; a token of whitespace only
joins the group its characters are in; so every non-whitespace character is in the same
group on every tokenizer (docs/layout.md, "Whitespace and separators at group boundaries").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Int

from videolens.errors import GroupError, LayoutError

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_INDEXED = re.compile(r"^(frame|option)\s*[\(\[_ ]\s*([A-Za-z]|\d+)\s*[\)\]]?$")


@dataclass
class FrameUnit:
    """One temporal unit of the video as the model sees it.

    Attributes:
        grid: ``(h, w)`` array of sequence positions of this unit's patch tokens.
        input_frames: indices of the input frames this unit covers (Qwen-VL merges two). A unit
            of a family that merges two covering one frame is the processor repeating that
            frame (the last of an odd count, or a single frame).
        timestamp: the unit's time in seconds, if known: the midpoint of its first and last
            input frames' absolute times (a one-frame unit: that frame's time). It is the
            time Qwen3-VL writes before the unit and VideoLLaMA3 before the frame.
        prefix: positions of the unit's tokens before its grid that are no patch (e.g.
            Video-LLaVA's per-frame CLS token); empty for most families.
        text: positions of text the processor put with this frame (InternVL's
            ``Frame3: <img>`` label and ``</img>``); in the ``video_text`` group, not in
            ``frame(t)``; empty for most families.
    """

    grid: np.ndarray
    input_frames: tuple[int, ...]
    timestamp: float | None = None
    prefix: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    text: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def positions(self) -> np.ndarray:
        """All of the unit's positions: the prefix tokens, then the grid row-major."""
        return np.concatenate([self.prefix, self.grid.reshape(-1)])


@dataclass
class TokenLayout:
    """The groups of positions of one prompt; see the module docstring for the names.

    Positions index the model's final (expanded) sequence. Look groups up by name::

        layout["video"], layout["question"], layout["last"], layout.frame(3), layout.option(1)

    Attributes:
        seq_len: length of the sequence the layout describes.
        frames: one :class:`FrameUnit` per temporal unit of the model.
        leaves: every leaf group (name -> sorted positions); together they partition
            ``range(seq_len)``.
        answer_index: index of the true option, when the prompt knows its answer.
        texts: each text group's text (``system``, ``question_text``, ``question_labels``,
            ``question_body``, ``option(k)``, ``tail``, ``last``): the prompt's characters its
            tokens cover (with the gaps between neighbouring tokens), without whitespace at
            the ends: ``tokenizer.decode(ids).strip()`` of the group's tokens on tokenizers
            that decode to the text (SentencePiece, byte-level BPE).
    """

    seq_len: int
    frames: list[FrameUnit]
    leaves: dict[str, np.ndarray]
    answer_index: int | None = None
    texts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        counts = np.zeros(self.seq_len, dtype=np.int64)
        for pos in self.leaves.values():
            np.add.at(counts, pos, 1)
        if not (counts == 1).all():
            bad = np.nonzero(counts != 1)[0][:10].tolist()
            raise LayoutError(f"Leaf groups do not partition the sequence (positions {bad} are off).")

    # ---- lookup -------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        """Number of temporal units of the video (the model's frames)."""
        return len(self.frames)

    @property
    def n_options(self) -> int:
        return sum(1 for name in self.leaves if name.startswith("option("))

    def frame(self, t: int) -> Int[torch.Tensor, " pos"]:
        """Positions of the model's t-th temporal unit (negative t counts from the end)."""
        if not -self.n_frames <= t < self.n_frames:
            raise GroupError(
                f"frame({t}) does not exist: the video has {self.n_frames} frames (0..{self.n_frames - 1})."
            )
        return torch.as_tensor(self.frames[t].positions, dtype=torch.long)

    def option(self, k: int | str) -> Int[torch.Tensor, " pos"]:
        """Positions of option k (an index or a letter)."""
        if isinstance(k, str):
            if len(k) != 1 or k.upper() not in LETTERS:
                raise GroupError(f"Option {k!r} is not a letter.")
            k = LETTERS.index(k.upper())
        if not 0 <= k < self.n_options:
            raise GroupError(f"option({k}) does not exist: the prompt has {self.n_options} options.")
        return self[f"option({k})"]

    def patch(self, t: int, h: int, w: int) -> int:
        """Sequence position of the video token at temporal unit t, row h, column w."""
        grid = self.frames[t].grid
        if not (0 <= h < grid.shape[0] and 0 <= w < grid.shape[1]):
            raise GroupError(f"patch ({t}, {h}, {w}) is outside frame {t}'s grid {tuple(grid.shape)}.")
        return int(grid[h, w])

    def grid(self, t: int) -> Int[torch.Tensor, "h w"]:
        """``(h, w)`` tensor of the positions of frame t's patches."""
        return torch.as_tensor(self.frames[t].grid, dtype=torch.long)

    def video_coords(self) -> dict[int, tuple[int, int, int]]:
        """Map every patch token position to its ``(t, h, w)`` (frame prefix tokens have none)."""
        out: dict[int, tuple[int, int, int]] = {}
        for t, unit in enumerate(self.frames):
            for (h, w), pos in np.ndenumerate(unit.grid):
                out[int(pos)] = (t, h, w)
        return out

    def names(self) -> list[str]:
        """All group names this layout answers to."""
        composite = [
            "video",
            "video_span",
            "video_block",
            "frames",
            "question_body",
            "question",
            "options",
            "text",
            "all",
        ]
        if self.answer_index is not None:
            composite += ["true_option", "false_options"]
        return list(self.leaves) + composite

    def _composite(self, name: str) -> np.ndarray | None:
        leaves = self.leaves
        frame_names = [n for n in leaves if n.startswith("frame(")]
        option_names = [n for n in leaves if n.startswith("option(")]
        table: dict[str, Iterable[str]] = {
            "video": frame_names + ["video_extra"],
            "video_span": frame_names + ["video_extra", "video_text"],
            "frames": frame_names,
            "question_body": ["question_labels", "question_text"],
            "question": ["question_labels", "question_text", *option_names],
            "options": option_names,
            "text": [n for n in leaves if n not in frame_names and n != "video_extra"],
            "all": list(leaves),
        }
        if self.answer_index is not None:
            table["true_option"] = [f"option({self.answer_index})"]
            table["false_options"] = [n for n in option_names if n != f"option({self.answer_index})"]
        if name == "video_block":
            return self._video_block(table["video"], table["video_span"])
        if name not in table:
            return None
        parts = [leaves[n] for n in table[name] if n in leaves]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def _video_block(self, video: Iterable[str], span: Iterable[str]) -> np.ndarray:
        """From the first video token, the run of video, video_text and template positions."""
        video_pos = [self.leaves[n] for n in video if n in self.leaves]
        first = min((int(p.min()) for p in video_pos if len(p)), default=None)
        if first is None:
            return np.zeros(0, dtype=np.int64)
        inside = np.zeros(self.seq_len, dtype=bool)
        for n in [*span, "template"]:
            if n in self.leaves:
                inside[self.leaves[n]] = True
        outside = np.flatnonzero(~inside[first:])
        stop = first + int(outside[0]) if len(outside) else self.seq_len
        return np.arange(first, stop, dtype=np.int64)

    def _normalise(self, name: str) -> str:
        m = _INDEXED.match(name.strip())
        if not m:
            return name.strip()
        kind, idx = m.groups()
        if kind == "option" and idx.isalpha():
            idx = str(LETTERS.index(idx.upper()))
        if kind == "frame" and int(idx) < 0:
            idx = str(self.n_frames + int(idx))
        return f"{kind}({int(idx)})"

    def __getitem__(self, name: str) -> Int[torch.Tensor, " pos"]:
        """Sorted positions of a group (``"video"``, ``"frame(2)"``, ``"option(B)"``, ...)."""
        key = self._normalise(name)
        if key in self.leaves:
            return torch.as_tensor(self.leaves[key], dtype=torch.long)
        found = self._composite(key)
        if found is None:
            raise GroupError(
                f"Unknown group {name!r}. Known groups: {', '.join(self.names())}; "
                "also frame(t) for t < n_frames and option(k)/option(A)."
            )
        return torch.as_tensor(found, dtype=torch.long)

    def __contains__(self, name: str) -> bool:
        try:
            self[name]
        except GroupError:
            return False
        return True

    def leaf_of(self, pos: int) -> str:
        """The leaf group holding a position."""
        if not 0 <= pos < self.seq_len:
            raise GroupError(f"Position {pos} is outside the sequence of length {self.seq_len}.")
        if "_leaf_names" not in self.__dict__:
            names = np.empty(self.seq_len, dtype=object)
            for name, positions in self.leaves.items():
                names[positions] = name
            self.__dict__["_leaf_names"] = names
        return str(self.__dict__["_leaf_names"][pos])

    def frame_of(self) -> np.ndarray:
        """``(seq_len,)`` array: the frame index of each position, -1 for non-frame positions."""
        out = np.full(self.seq_len, -1, dtype=np.int64)
        for t, unit in enumerate(self.frames):
            out[unit.positions] = t
        return out

    # ---- transforms ---------------------------------------------------------------------
    def shifted(self, offset: int, seq_len: int) -> TokenLayout:
        """The same layout placed at ``offset`` inside a longer (padded) sequence.

        Positions before ``offset`` (left padding) and after the prompt (right padding)
        join a ``padding`` leaf.
        """
        leaves = {k: v + offset for k, v in self.leaves.items()}
        pad = np.setdiff1d(np.arange(seq_len), np.arange(offset, offset + self.seq_len))
        if pad.size:
            leaves["padding"] = pad
        frames = [
            FrameUnit(f.grid + offset, f.input_frames, f.timestamp, f.prefix + offset, f.text + offset)
            for f in self.frames
        ]
        return TokenLayout(seq_len, frames, leaves, self.answer_index, dict(self.texts))

    def with_answer(self, answer_index: int | None) -> TokenLayout:
        if answer_index is not None and not 0 <= answer_index < self.n_options:
            raise LayoutError(f"Answer index {answer_index} is not one of the {self.n_options} options.")
        return TokenLayout(self.seq_len, self.frames, self.leaves, answer_index, self.texts)

    def summary(self) -> str:
        """One line per leaf group: name, count and span."""
        rows = []
        for name, pos in self.leaves.items():
            span = f"{pos.min()}..{pos.max()}" if pos.size else "-"
            rows.append(f"{name:<16} {pos.size:>6}  {span}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return (
            f"TokenLayout(seq_len={self.seq_len}, n_frames={self.n_frames}, "
            f"video={len(self['video'])} tokens, n_options={self.n_options})"
        )


def resolve_group(layout: TokenLayout, group: object) -> Int[torch.Tensor, " pos"]:
    """Positions of a group given as a name, a list of positions, or a callable on the layout."""
    if isinstance(group, str):
        return layout[group]
    if callable(group):
        return resolve_group(layout, group(layout))
    if isinstance(group, torch.Tensor):
        pos = group.to(torch.long).flatten()
    elif isinstance(group, (Sequence, np.ndarray, range)):
        pos = torch.as_tensor(np.asarray(group, dtype=np.int64)).flatten()
    else:
        raise GroupError(f"Cannot read a group from {type(group).__name__}; use a name, positions or a callable.")
    if pos.numel() and (pos.min() < 0 or pos.max() >= layout.seq_len):
        raise GroupError(f"Positions {pos.tolist()[:8]}... fall outside the sequence of length {layout.seq_len}.")
    return torch.unique(pos)
