"""Building prompts: the paper's multiple-choice format, the processor call, the layout.

:func:`build_prompt` renders a chat with the processor's own chat template, runs the
processor on the text and the frames, and builds the prompt's :class:`TokenLayout` from
what the processor produced: the run of video placeholder tokens it expanded, the frame
structure the adapter reads from the processor outputs, and the tokenizer's offset
mapping of the text (never a search of decoded text).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Int

from videolens.adapters.protocol import VideoLLMAdapter
from videolens.core.layout import LETTERS, FrameUnit, TokenLayout
from videolens.errors import LayoutError
from videolens.io.video import Video, as_frames

#: The system prompt of the paper's multiple-choice evaluation (MVBench-style).
PAPER_SYSTEM = (
    "Carefully watch the video and pay attention to the cause and sequence of events, the detail and "
    "movement of objects, and the action and pose of persons. Based on your observations, select the best "
    "option that accurately addresses the question."
)
#: The instruction after the options, and the answer prefix, of the paper's prompt.
PAPER_INSTRUCTION = "Only give the best option."
PAPER_ANSWER_PREFIX = "Best option:("

_SYS = "\u27e6VLSYS\u27e7"
_USER = "\u27e6VLUSER\u27e7"


@dataclass
class VideoPrompt:
    """One prepared prompt: what the HF model takes, the text, and the token layout.

    Attributes:
        inputs: the processor's output for this prompt (batch of one).
        text: the prompt text before the processor expanded the video placeholder.
        layout: the :class:`TokenLayout` of the expanded sequence.
        question, options, answer: the multiple-choice content (``answer`` is an index).
        frames: the ``(T, H, W, 3)`` frames given to the processor.
        timestamps: the frames' times in seconds, if known.
        fps: the frame rate the processor was told (None if the family ignores time).
        made_for: the model it was prepared for (architecture, video token id, vocabulary
            size); another model refuses it.
    """

    inputs: dict[str, Any]
    text: str
    layout: TokenLayout
    question: str
    options: list[str] | None = None
    answer: int | None = None
    frames: np.ndarray | None = field(default=None, repr=False)
    timestamps: np.ndarray | None = None
    fps: float | None = None
    made_for: tuple[str, int, int] | None = None

    @property
    def input_ids(self) -> Int[torch.Tensor, "1 pos"]:
        return self.inputs["input_ids"]

    @property
    def seq_len(self) -> int:
        return int(self.inputs["input_ids"].shape[1])

    @property
    def answer_letter(self) -> str | None:
        return None if self.answer is None else LETTERS[self.answer]

    def __repr__(self) -> str:
        return f"VideoPrompt(seq_len={self.seq_len}, question={self.question!r}, options={self.options}, answer={self.answer_letter})"


@dataclass
class PromptBatch:
    """Several prompts collated into one left-padded batch, each with its shifted layout."""

    inputs: dict[str, Any]
    layouts: list[TokenLayout]
    prompts: list[VideoPrompt]

    @property
    def seq_len(self) -> int:
        return int(self.inputs["input_ids"].shape[1])

    @property
    def size(self) -> int:
        return len(self.prompts)

    @property
    def padded(self) -> bool:
        mask = self.inputs.get("attention_mask")
        return mask is not None and not bool(mask.all())


def collate(prompts: Sequence[VideoPrompt], pad_token_id: int, token_keys: Sequence[str]) -> PromptBatch:
    """Left-pad the per-token inputs (``token_keys``, from the adapter) and concatenate the rest along dim 0."""
    if len(prompts) == 1:
        p = prompts[0]
        return PromptBatch(dict(p.inputs), [p.layout], [p])
    seq_len = max(p.seq_len for p in prompts)
    inputs: dict[str, Any] = {}
    for key in prompts[0].inputs:
        values = [p.inputs[key] for p in prompts]
        if not all(isinstance(v, torch.Tensor) for v in values):
            inputs[key] = values
            continue
        if key in token_keys:
            fill = pad_token_id if key == "input_ids" else 0
            inputs[key] = torch.cat([torch.nn.functional.pad(v, (seq_len - v.shape[1], 0), value=fill) for v in values])
        else:
            shapes = {tuple(v.shape[1:]) for v in values}
            if len(shapes) > 1:
                raise LayoutError(
                    f"Cannot batch {key} of shapes {sorted(shapes)}: use the same number of frames "
                    "(and frame size) for every prompt in a batch, or run them one by one."
                )
            inputs[key] = torch.cat(values)
    if "attention_mask" not in inputs:
        inputs["attention_mask"] = torch.cat(
            [torch.nn.functional.pad(torch.ones_like(p.input_ids), (seq_len - p.seq_len, 0)) for p in prompts]
        )
    layouts = [p.layout.shifted(seq_len - p.seq_len, seq_len) for p in prompts]
    return PromptBatch(inputs, layouts, list(prompts))


def question_block(question: str, options: Sequence[str] | None) -> tuple[str, list[tuple[int, int]]]:
    """The question text with its options, and each option's character span in it."""
    text = f"Question: {question}"
    spans: list[tuple[int, int]] = []
    if options:
        text += "\nOptions:"
        for k, option in enumerate(options):
            text += "\n"
            start = len(text)
            text += f"({LETTERS[k]}) {option}"
            spans.append((start, len(text)))
    return text, spans


def check_options(options: object) -> list[str] | None:
    """The options as a list of distinct, non-empty strings (None stays None); refuse anything else.

    A single string is refused rather than read as its characters (``"left"`` is not the
    four options ``l, e, f, t``); duplicates are refused because the true option would be
    ambiguous.
    """
    if options is None:
        return None
    if isinstance(options, (str, bytes)):
        raise LayoutError(
            f"options={options!r} is one string; pass a list of option texts, e.g. options=['left', 'right']."
        )
    if not isinstance(options, (Sequence, np.ndarray)) or isinstance(options, dict):
        raise LayoutError(f"options must be a list of strings; got {type(options).__name__}.")
    if any(not isinstance(o, str) for o in options):
        kinds = sorted({type(o).__name__ for o in options if not isinstance(o, str)})
        raise LayoutError(f"Options must be strings; got {', '.join(kinds)}. Convert them with str() first.")
    out = list(options)
    if not out or any(not o.strip() for o in out):
        raise LayoutError("Options must be a non-empty list of non-empty strings.")
    if len(out) > len(LETTERS):
        raise LayoutError(f"At most {len(LETTERS)} options are supported; got {len(out)}.")
    seen: dict[str, int] = {}
    for k, option in enumerate(out):
        key = option.strip()
        if key in seen:
            raise LayoutError(
                f"Options {LETTERS[seen[key]]} and {LETTERS[k]} are both {option!r}; options must be distinct."
            )
        seen[key] = k
    return out


def resolve_answer(options: Sequence[str] | None, answer: int | str | None) -> int | None:
    """The index of the true option, from an index, a letter, ``"(B)"``, or the option text.

    An option's text is matched first, so with options ``["1", "2", "3"]`` the answer
    ``"2"`` is option B; a string is never read as an index.
    """
    if answer is None:
        return None
    if isinstance(answer, (bool, np.bool_)):
        raise LayoutError(f"answer={answer!r} is a boolean; pass the true option's index, letter or text.")
    if not options:
        raise LayoutError("An answer was given but no options; pass options=[...] with the true answer among them.")
    if isinstance(answer, (int, np.integer)):
        if not 0 <= int(answer) < len(options):
            raise LayoutError(f"Answer index {answer} is not one of the {len(options)} options (0..{len(options) - 1}).")
        return int(answer)
    if not isinstance(answer, str):
        raise LayoutError(f"answer must be an index, a letter or an option's text; got {type(answer).__name__}.")
    stripped = answer.strip()
    texts = [o.strip() for o in options]
    if stripped in texts:
        return texts.index(stripped)
    letter = stripped.strip("()").upper()
    if len(letter) == 1 and letter in LETTERS[: len(options)]:
        return LETTERS.index(letter)
    raise LayoutError(
        f"The answer {answer!r} is not among the options {list(options)}; include the true answer "
        "in options (or give its index or letter)."
    )


def check_fps(fps: object) -> float | None:
    """A frame rate that is a finite positive number (None stays None)."""
    if fps is None:
        return None
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        raise LayoutError(f"fps={fps!r} is not a number; pass the frames' sampling rate in frames per second.")
    if not math.isfinite(float(fps)) or float(fps) <= 0:
        raise LayoutError(f"fps={fps!r} must be a finite number above 0 (frames per second).")
    return float(fps)


def check_user_text(tokenizer: Any, placeholder: str | None, **texts: str | None) -> None:
    """Refuse user text that holds control tokens or the video placeholder.

    A ``<|im_end|>`` or ``</s>`` inside a question would end the turn early, and a
    ``<video>`` would be expanded into a second video: the prompt would not be what the
    text says. The tokenizer's special tokens are what is checked.
    """
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    specials |= {str(tok) for tok in decoder.values() if getattr(tok, "special", False)}
    if placeholder:
        specials.add(placeholder)
    for name, value in texts.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise LayoutError(f"{name} must be a string; got {type(value).__name__}.")
        found = sorted(tok for tok in specials if tok and tok in value)
        if found:
            raise LayoutError(
                f"The {name} text contains {', '.join(map(repr, found))}, a control token of this model's "
                "tokenizer; it would change the prompt's structure. Remove it from the text."
            )


def _render(processor: Any, system: str | None, chat_template: str | None = None) -> str:
    """The chat template rendered around sentinels for the system and user text."""
    messages: list[dict[str, Any]] = []
    if system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": _SYS}]})
    messages.append({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": _USER}]})
    template = chat_template or getattr(processor, "chat_template", None)
    if not template:
        raise LayoutError(
            "The processor has no chat template, so the prompt format is unknown; pass "
            "chat_template='...' (a Jinja template, e.g. the checkpoint's chat_template.jinja) to prepare()."
        )
    return processor.apply_chat_template(messages, chat_template=template, add_generation_prompt=True, tokenize=False)


def _assemble(rendered: str, system: str | None, user: str) -> tuple[str, dict[str, tuple[int, int]]]:
    """Substitute the sentinels, recording where the system and user text land."""
    spans: dict[str, tuple[int, int]] = {}
    for sentinel in ([_SYS] if system is not None else []) + [_USER]:
        if rendered.count(sentinel) != 1:
            raise LayoutError("The chat template did not place the system/user text exactly once.")
    out = rendered
    for name, sentinel, value in (("system", _SYS, system), ("user", _USER, user)):
        if value is None:
            continue
        at = out.index(sentinel)
        out = out[:at] + value + out[at + len(sentinel) :]
        spans[name] = (at, at + len(value))
        if name == "user" and "system" in spans and spans["system"][0] > at:
            raise LayoutError("The chat template put the user text before the system text.")
    return out, spans


def _align(text_ids: list[int], final_ids: list[int], placeholder_id: int) -> tuple[list[int], tuple[int, int]]:
    """Map each text token to its final position; return the video span ``(start, end)``.

    The processor replaces the single video placeholder of the text by a span of tokens:
    a run of video tokens for most families, or frames interleaved with text (frame labels,
    image start/end tokens, timestamps) for others. Tokens before and after the span must
    be unchanged; text tokens the expansion merged into the span are left unmapped (-1).
    """
    where = [i for i, tid in enumerate(text_ids) if tid == placeholder_id]
    if len(where) != 1:
        raise LayoutError(f"Expected one video placeholder in the prompt, found {len(where)}.")
    head, tail = where[0], len(text_ids) - where[0] - 1
    if len(final_ids) < head + tail:
        raise LayoutError("The processor's sequence is shorter than the tokenized prompt text.")
    prefix = 0
    while prefix < head and text_ids[prefix] == final_ids[prefix]:
        prefix += 1
    suffix = 0
    while suffix < tail and text_ids[-1 - suffix] == final_ids[-1 - suffix]:
        suffix += 1
    if head - prefix > 2 or tail - suffix > 2:
        raise LayoutError(
            "The processor's token ids differ from the tokenizer's away from the video; "
            "the processor changed the text in a way this adapter does not model."
        )
    start, end = prefix, len(final_ids) - suffix
    shift = len(final_ids) - len(text_ids)
    mapping = [i if i < prefix else (i + shift if i >= len(text_ids) - suffix else -1) for i in range(len(text_ids))]
    return mapping, (start, end)


def _anchor(text: str, start: int, end: int) -> int:
    for i in range(start, end):
        if not text[i].isspace():
            return i
    return start


def prompt_text(
    processor: Any,
    adapter: VideoLLMAdapter,
    question: str,
    options: Sequence[str] | None = None,
    answer_prefix: str | None = None,
    system: str | None = None,
    instruction: str | None = None,
    chat_template: str | None = None,
) -> tuple[str, dict[str, tuple[int, int]], str, list[tuple[int, int]]]:
    """The prompt text (before the processor expands the video) and where its parts are.

    Returns the text, the character spans of the system and user text, the question
    block, and each option's span inside the question block.
    """
    qtext, option_spans = question_block(question, options)
    if instruction is None and options:
        instruction = PAPER_INSTRUCTION
    user = qtext + (f"\n{instruction}" if instruction else "")
    text, spans = _assemble(_render(processor, system, chat_template), system, user)
    return text + (answer_prefix or ""), spans, qtext, option_spans


def build_prompt(
    processor: Any,
    adapter: VideoLLMAdapter,
    config: Any,
    video: object,
    question: str,
    options: Sequence[str] | None = None,
    *,
    answer: int | str | None = None,
    answer_prefix: str | None = None,
    system: str | None = None,
    instruction: str | None = None,
    fps: float | None = None,
    chat_template: str | None = None,
    made_for: tuple[str, int, int] | None = None,
) -> VideoPrompt:
    """Render, process and lay out one prompt. See :meth:`HookedVideoLLM.prepare`."""
    if not isinstance(question, str) or not question.strip():
        raise LayoutError("The question is empty; pass the question text, e.g. question='What happened first?'.")
    options = check_options(options)
    answer_index = resolve_answer(options, answer)
    tokenizer = getattr(processor, "tokenizer", processor)
    check_user_text(
        tokenizer,
        adapter.video_placeholder,
        question=question,
        system=system,
        instruction=instruction,
        answer_prefix=answer_prefix,
        **{f"option {LETTERS[k]}": o for k, o in enumerate(options or [])},
    )
    frames = as_frames(video)
    timestamps = video.timestamps if isinstance(video, Video) else None
    fps = _frame_rate(video, check_fps(fps), adapter)

    text, spans, qtext, option_spans = prompt_text(
        processor, adapter, question, options, answer_prefix, system, instruction, chat_template
    )
    inputs = processor(text=[text], videos=[frames], return_tensors="pt", **adapter.processor_kwargs(fps, len(frames)))
    inputs = dict(inputs)
    final_ids = inputs["input_ids"][0].tolist()
    enc, mapping, (v_start, v_end) = _align_text(tokenizer, text, final_ids, adapter.placeholder_token_id(processor, config))
    video_id = adapter.video_token_id(config)
    feature = np.asarray([p for p in range(v_start, v_end) if final_ids[p] == video_id], dtype=np.int64)
    if not feature.size:
        raise LayoutError("The processor produced no video tokens for the video placeholder.")

    leaves = _text_leaves(text, enc, mapping, spans, qtext, option_spans)
    structure = adapter.video_structure(config, inputs, 0, len(feature))
    if structure.n_tokens != len(feature):
        raise LayoutError(
            f"The adapter lays out {structure.n_tokens} video tokens but the processor produced {len(feature)}."
        )
    units = _frame_units(structure, feature, timestamps, fps, len(frames))
    for t, unit in enumerate(units):
        leaves[f"frame({t})"] = unit.positions.tolist()
    leaves["video_extra"] = feature[sum(u.positions.size for u in units) :].tolist()
    leaves["video_text"] = _attach_video_text(units, feature, v_start, v_end).tolist()

    seq_len = len(final_ids)
    layout = TokenLayout(
        seq_len,
        units,
        _ordered_leaves(leaves, seq_len, len(units), len(option_spans)),
        answer_index,
        _group_texts(text, spans, qtext, option_spans, system),
    )
    return VideoPrompt(inputs, text, layout, question, options, answer_index, frames, timestamps, fps, made_for)


def _frame_rate(video: object, fps: float | None, adapter: VideoLLMAdapter) -> float | None:
    """The frame rate to tell the processor: given, implied by the video's timestamps, or assumed (warned)."""
    if fps is None and isinstance(video, Video):
        fps = video.fps
    if fps is None and adapter.uses_time:
        fps = adapter.default_fps
        warnings.warn(
            f"No frame times known: assuming the frames were sampled at {fps} fps for {adapter.family}'s "
            "temporal positions. Pass fps= to prepare() or decode with videolens.load_video().",
            stacklevel=4,
        )
    return fps


def _align_text(
    tokenizer: Any, text: str, final_ids: list[int], placeholder_id: int
) -> tuple[Any, list[int], tuple[int, int]]:
    """Tokenize the prompt text with offsets and map it onto the processor's sequence.

    Tried with and without the tokenizer's special tokens (BOS): whichever aligns with
    fewer unmapped tokens is what the processor did.
    """
    aligned, errors = [], []
    for add_special in (True, False):
        enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=add_special)
        try:
            mapping, span = _align(enc["input_ids"], final_ids, placeholder_id)
        except LayoutError as exc:
            errors.append(exc)
            continue
        aligned.append((enc, mapping, span))
    if not aligned:
        raise errors[0]
    return min(aligned, key=lambda c: sum(m < 0 for m in c[1]))


def _text_leaves(
    text: str,
    enc: Any,
    mapping: list[int],
    spans: dict[str, tuple[int, int]],
    qtext: str,
    option_spans: list[tuple[int, int]],
) -> dict[str, list[int]]:
    """Assign every text token to its group by the character its offset mapping starts at."""
    u0 = spans["user"][0]
    q0, q1 = u0, u0 + len(qtext)
    opt_abs = [(u0 + a, u0 + b) for a, b in option_spans]
    sys_span = spans.get("system")

    def group_of(char: int) -> str:
        for k, (a, b) in enumerate(opt_abs):
            if a <= char < b:
                return f"option({k})"
        if q0 <= char < q1:
            return "question_body"
        if char >= q1:
            return "tail"
        if sys_span and sys_span[0] <= char < sys_span[1]:
            return "system"
        return "template"

    leaves: dict[str, list[int]] = {"template": [], "system": []}
    for (start, end), pos in zip(enc["offset_mapping"], mapping):
        if pos < 0:
            continue
        name = "template" if end <= start else group_of(_anchor(text, start, end))
        leaves.setdefault(name, []).append(pos)
    return leaves


def _frame_units(
    structure: Any, feature: np.ndarray, timestamps: np.ndarray | None, fps: float | None, n_inputs: int
) -> list[FrameUnit]:
    """Cut the video tokens into the adapter's temporal units, each with its start time.

    A unit covers only input frames that exist: with an odd number of frames, Qwen-style
    processors pad the last pair by repeating the last frame, so that unit covers one.
    """
    units: list[FrameUnit] = []
    cursor = 0
    for (h, w), covered in zip(structure.frame_grids, structure.frame_inputs):
        covered = tuple(i for i in covered if i < n_inputs) or (n_inputs - 1,)
        prefix = feature[cursor : cursor + structure.frame_prefix]
        cursor += structure.frame_prefix
        grid = feature[cursor : cursor + h * w].reshape(h, w)
        cursor += h * w
        stamp = float(timestamps[covered[0]]) if timestamps is not None and covered[0] < len(timestamps) else None
        if stamp is None and fps:
            stamp = covered[0] / fps
        units.append(FrameUnit(grid, tuple(covered), stamp, prefix))
    return units


def _attach_video_text(units: list[FrameUnit], feature: np.ndarray, v_start: int, v_end: int) -> np.ndarray:
    """Text inside the video span (frame labels, image start/end, timestamps), given to its frames.

    Each piece belongs to the frame whose tokens follow it; the last frame keeps what
    trails it. Returns every such position (the ``video_text`` leaf).
    """
    in_span = np.setdiff1d(np.arange(v_start, v_end), feature)
    ends = [int(u.positions.max()) for u in units]
    for t, unit in enumerate(units):
        lo = ends[t - 1] if t else v_start - 1
        hi = v_end if t == len(units) - 1 else int(unit.positions.min())
        unit.text = in_span[(in_span > lo) & (in_span < hi) & ~np.isin(in_span, unit.positions)]
    return in_span


def _ordered_leaves(
    leaves: dict[str, list[int]], seq_len: int, n_frames: int, n_options: int
) -> dict[str, np.ndarray]:
    """The leaf groups in sequence-reading order, with the last position as its own leaf."""
    last = seq_len - 1
    for positions in leaves.values():
        if last in positions:
            positions.remove(last)
    leaves["last"] = [last]
    ordered = [
        "template",
        "system",
        *[f"frame({t})" for t in range(n_frames)],
        "video_extra",
        "video_text",
        "question_body",
        *[f"option({k})" for k in range(n_options)],
        "tail",
        "last",
    ]
    return {name: np.asarray(sorted(leaves.get(name, [])), dtype=np.int64) for name in ordered}


def _group_texts(
    text: str,
    spans: dict[str, tuple[int, int]],
    qtext: str,
    option_spans: list[tuple[int, int]],
    system: str | None,
) -> dict[str, str]:
    """The text each text group was built from (``layout.texts``)."""
    q1 = spans["user"][0] + len(qtext)
    texts = {"question_body": qtext[: option_spans[0][0]].rstrip() if option_spans else qtext}
    if system is not None:
        texts["system"] = system
    for k, (a, b) in enumerate(option_spans):
        texts[f"option({k})"] = qtext[a:b]
    texts["tail"] = text[q1:]
    return texts
