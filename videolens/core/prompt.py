"""Building prompts: the paper's multiple-choice format, the processor call, the layout.

:func:`build_prompt` writes the prompt text, runs the processor on the text and the frames,
and builds the prompt's :class:`TokenLayout` from what the processor produced: the run of
video placeholder tokens it expanded, the frame structure the adapter reads from the
processor outputs, and the tokenizer's offset mapping of the text (never a search of
decoded text).

The text comes from the model's own chat template (``prompt_format="chat"``), written in
the first form the template renders correctly: content as a list of items or as one string
(templates that concatenate ``message['content']``), the system text in its own turn or
folded into the first user turn (templates without a system role). ``prompt_format="paper"``
writes the exact conversation string of the paper's LLaVA-NeXT-Video / PLLaVA evaluation
instead. Which group each token joins, whitespace and separators included, follows the rule
of docs/layout.md ("Whitespace and separators at group boundaries").
"""

from __future__ import annotations

import math
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from jaxtyping import Float, Int
from jinja2 import TemplateError

from videolens.adapters.protocol import VideoLLMAdapter
from videolens.core.layout import LETTERS, FrameUnit, TokenLayout
from videolens.errors import InputError, LayoutError
from videolens.io.video import Video, as_frames, check_rate

#: The system prompt of the paper's multiple-choice evaluation (MVBench-style).
PAPER_SYSTEM = (
    "Carefully watch the video and pay attention to the cause and sequence of events, the detail and "
    "movement of objects, and the action and pose of persons. Based on your observations, select the best "
    "option that accurately addresses the question."
)
#: The instruction after the options, and the answer prefix, of the paper's prompt.
PAPER_INSTRUCTION = "Only give the best option."
PAPER_ANSWER_PREFIX = "Best option:("
#: Families whose checkpoints the paper evaluated with its Vicuna conversation (LLaVA-NeXT-Video-FT
#: through the PLLaVA code): the ones ``prompt_format="paper"`` writes for.
PAPER_FAMILIES = ("llava_next_video", "pllava")
#: ``"chat"``: the model's chat template; ``"paper"``: the paper's exact conversation string.
PromptFormat = Literal["chat", "paper"]
PROMPT_FORMATS: tuple[str, ...] = ("chat", "paper")
#: How option lines are written: ``"(A)"`` gives ``(A) text`` (the paper's default), ``"A."`` gives
#: ``A. text`` (the paper's Video-MME prompts, as the benchmark writes its options).
OptionStyle = Literal["(A)", "A."]
OPTION_STYLES: tuple[str, ...] = ("(A)", "A.")

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
        fps: the frames' rate: ``fps=`` as given, else the video's own (``Video.fps``, from
            its timestamps), else the family's assumed default (None when nothing says one).
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
    def shape(self) -> torch.Size:
        """The token ids' shape ``(1, pos)``, so code written for token tensors (TransformerLens' patching) can size its grids."""
        return self.inputs["input_ids"].shape

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


class QuestionBlock(NamedTuple):
    """The question block of the user turn, and where its parts are.

    Attributes:
        text: ``"Question: {q}\\nOptions:\\n(A) ...\\n(B) ..."`` (``"Question: {q}"`` without options).
        question: the character span of the question sentence itself (the paper's
            "non-option question") in ``text``.
        options: the character span of each option, ``"(B) ..."``, in ``text``.
    """

    text: str
    question: tuple[int, int]
    options: list[tuple[int, int]]


def question_block(question: str, options: Sequence[str] | None, option_style: OptionStyle = "(A)") -> QuestionBlock:
    """The question text with its options, and the spans of the question sentence and of each option."""
    if option_style not in OPTION_STYLES:
        raise LayoutError(f"option_style={option_style!r} is not one of {', '.join(map(repr, OPTION_STYLES))}.")
    label = "Question: "
    text = label + question
    spans: list[tuple[int, int]] = []
    if options:
        text += "\nOptions:"
        for k, option in enumerate(options):
            text += "\n"
            start = len(text)
            text += f"({LETTERS[k]}) {option}" if option_style == "(A)" else f"{LETTERS[k]}. {option}"
            spans.append((start, len(text)))
    return QuestionBlock(text, (len(label), len(label) + len(question)), spans)


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
            raise LayoutError(
                f"Answer index {answer} is not one of the {len(options)} options (0..{len(options) - 1})."
            )
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
    return check_rate(fps, LayoutError, "the frames' sampling rate")


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


# ---- the chat template ------------------------------------------------------------------
#: How videolens writes its chat for a template, tried in order until one renders the system
#: text, the user text and the video placeholder exactly once, system first: (content, fold).
#: ``content`` "items" is a list of ``{"type": ...}`` items, "string" one string holding the
#: video placeholder (templates that concatenate ``message['content']``); ``fold`` puts the
#: system text at the start of the first user turn (templates without a system role, which
#: raise on one or drop it).
_CHAT_FORMS: tuple[tuple[str, bool], ...] = (("items", False), ("items", True), ("string", False), ("string", True))
#: Between system text folded into the user turn and the rest of that turn: a blank line.
_FOLD = "\n\n"
#: What a template raises on a chat it cannot write: jinja's own errors (``raise_exception``
#: of role checks included), a list concatenated to a string, a missing key.
_TEMPLATE_ERRORS = (TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError)


def _chat(content: str, fold: bool, system: bool, video: str) -> list[dict[str, Any]]:
    """The chat to render, with sentinels where the system and user text go (see :data:`_CHAT_FORMS`)."""
    head = _SYS + _FOLD if fold else ""
    user: Any = f"{head}{video}\n{_USER}"
    system_turn: Any = _SYS
    if content == "items":
        user = [{"type": "text", "text": head}] if fold else []
        user += [{"type": "video"}, {"type": "text", "text": _USER}]
        system_turn = [{"type": "text", "text": _SYS}]
    messages = [{"role": "user", "content": user}]
    if system and not fold:
        messages.insert(0, {"role": "system", "content": system_turn})
    return messages


def _misplaced(rendered: str, system: bool, video: str) -> str | None:
    """What is wrong with a rendering (None: nothing): each part must appear once, the system first."""
    counts = {"the system text": rendered.count(_SYS) if system else 1, "the user text": rendered.count(_USER)}
    counts[f"the video placeholder {video!r}"] = rendered.count(video)
    wrong = [f"{name} {n} times" for name, n in counts.items() if n != 1]
    if wrong:
        return "it renders " + " and ".join(wrong)
    if system and rendered.index(_SYS) > rendered.index(_USER):
        return "it puts the user text before the system text"
    return None


def _render(processor: Any, system: bool, video: str, chat_template: str | None = None) -> str:
    """The chat template rendered around sentinels, in the first of :data:`_CHAT_FORMS` it writes correctly.

    ``video`` is the family's placeholder (``adapter.video_placeholder``): what a video item
    must render to, and what string content carries. The template's own exceptions never
    reach the caller: a template no form works for raises a :class:`LayoutError` that says
    why (e.g. it renders no video) and how to pass a working one.
    """
    template = chat_template or getattr(processor, "chat_template", None)
    if not template:
        raise LayoutError(
            "The processor has no chat template, so the prompt format is unknown; pass "
            "chat_template='...' (a Jinja template, e.g. the checkpoint's chat_template.jinja) to prepare(), "
            "or prompt_format='paper' for the paper's own conversation (LLaVA-NeXT-Video, PLLaVA)."
        )
    tried, videoless = [], False
    for content, fold in _CHAT_FORMS:
        if fold and not system:
            continue
        form = f"{content} content with the system text {'in the user turn' if fold else 'as its own turn'}"
        try:
            rendered = processor.apply_chat_template(
                _chat(content, fold, system, video), chat_template=template, add_generation_prompt=True, tokenize=False
            )
        except _TEMPLATE_ERRORS as exc:
            tried.append(f"{form}: {type(exc).__name__}: {exc}")
            continue
        problem = _misplaced(rendered, system, video)
        if problem is None:
            return rendered
        videoless = videoless or (rendered.count(_USER) == 1 and video not in rendered)
        tried.append(f"{form}: {problem}")
    raise _unrenderable(tried, videoless, video)


def _unrenderable(tried: list[str], videoless: bool, video: str) -> LayoutError:
    """The error for a chat template that renders no form of the chat correctly."""
    fix = (
        "Pass a template that renders video with prepare(..., chat_template=...): one in which a "
        f"{{'type': 'video'}} content item becomes {video!r} (e.g. followed by a newline)."
    )
    if videoless:
        return LayoutError(
            f"The chat template never renders the video: a {{'type': 'video'}} item becomes no {video!r} "
            "placeholder (it renders images only, like the templates of llava-hf's conversion scripts), "
            f"so the model would get no video. {fix}"
        )
    return LayoutError(
        f"The chat template cannot write a video chat in any form videolens tries ({'; '.join(tried)}). {fix}"
    )


def _assemble(rendered: str, system: str | None, user: str) -> tuple[str, dict[str, tuple[int, int]]]:
    """Substitute the sentinels (each there once, the system first), recording where the system and user text land."""
    spans: dict[str, tuple[int, int]] = {}
    out = rendered
    for name, sentinel, value in (("system", _SYS, system), ("user", _USER, user)):
        if value is None:
            continue
        at = out.index(sentinel)
        out = out[:at] + value + out[at + len(sentinel) :]
        spans[name] = (at, at + len(value))
    return out, spans


# ---- the prompt text --------------------------------------------------------------------
class PromptText(NamedTuple):
    """The prompt text (before the processor expands the video) and where its parts are.

    Attributes:
        text: the whole prompt, answer prefix included.
        spans: character spans of the ``"system"`` and ``"user"`` text in ``text``.
        block: the question block (the start of the user text) and its spans.
    """

    text: str
    spans: dict[str, tuple[int, int]]
    block: QuestionBlock


def paper_text(adapter: VideoLLMAdapter, block: QuestionBlock, system: str, instruction: str) -> PromptText:
    """The paper's MVBench conversation (its conv ``eval_mvbench``, answer prefix not included).

    Exactly ``"{system}\\n USER: <video>\\n USER: {question block} \\n{instruction} ASSISTANT:"``,
    the string the paper's LLaVA-NeXT-Video-FT models were evaluated on, with the family's own
    placeholder (``<image>`` for PLLaVA, ``<video>`` for llava-hf's LLaVA-NeXT-Video).
    """
    head = f"{system}\n USER: {adapter.video_placeholder}\n USER: "
    user = f"{block.text} \n{instruction}"
    return PromptText(
        f"{head}{user} ASSISTANT:", {"system": (0, len(system)), "user": (len(head), len(head) + len(user))}, block
    )


def check_paper_format(adapter: VideoLLMAdapter, options: Sequence[str] | None, chat_template: str | None) -> None:
    """Refuse ``prompt_format="paper"`` where the paper's conversation does not apply."""
    if adapter.family not in PAPER_FAMILIES:
        raise LayoutError(
            f"prompt_format='paper' writes the paper's Vicuna conversation for the families it evaluated "
            f"({', '.join(PAPER_FAMILIES)}); {adapter.family or type(adapter).__name__} checkpoints expect "
            "their own chat template. Use prompt_format='chat' (the default)."
        )
    if chat_template is not None:
        raise LayoutError(
            "prompt_format='paper' writes the paper's conversation itself, through no chat template; "
            "drop chat_template= or use prompt_format='chat'."
        )
    if not options:
        raise LayoutError("prompt_format='paper' is the paper's multiple-choice format; pass options=[...].")


def prompt_text(
    processor: Any,
    adapter: VideoLLMAdapter,
    question: str,
    options: Sequence[str] | None = None,
    answer_prefix: str | None = None,
    system: str | None = None,
    instruction: str | None = None,
    chat_template: str | None = None,
    prompt_format: PromptFormat = "chat",
    option_style: OptionStyle = "(A)",
) -> PromptText:
    """The prompt text (before the processor expands the video) and where its parts are.

    With ``prompt_format="paper"`` the system text, the instruction and the answer prefix
    default to the paper's (:data:`PAPER_SYSTEM`, :data:`PAPER_INSTRUCTION`,
    :data:`PAPER_ANSWER_PREFIX`); with ``"chat"`` only the instruction does, when there are options.
    """
    if prompt_format not in PROMPT_FORMATS:
        raise LayoutError(f"prompt_format={prompt_format!r} is not one of {', '.join(map(repr, PROMPT_FORMATS))}.")
    block = question_block(question, options, option_style)
    if instruction is None and (options or prompt_format == "paper"):
        instruction = PAPER_INSTRUCTION
    if prompt_format == "paper":
        check_paper_format(adapter, options, chat_template)
        prefix = PAPER_ANSWER_PREFIX if answer_prefix is None else answer_prefix
        paper = paper_text(adapter, block, PAPER_SYSTEM if system is None else system, instruction or "")
        return PromptText(paper.text + prefix, paper.spans, block)
    user = block.text + (f"\n{instruction}" if instruction else "")
    rendered = _render(processor, system is not None, adapter.video_placeholder, chat_template)
    text, spans = _assemble(rendered, system, user)
    if system is None:
        default = _default_system_span(processor, rendered, adapter.video_placeholder, chat_template)
        if default is not None:
            spans["system"] = default
    return PromptText(text + (answer_prefix or ""), spans, block)


def _default_system_span(
    processor: Any, rendered: str, video: str, chat_template: str | None
) -> tuple[int, int] | None:
    """Where a template's own default system text (Qwen's "You are a helpful assistant.") lies, if it writes one.

    The chat rendered without a system turn is compared with the chat rendered with a
    sentinel system text: where the template puts the sentinel, a template with a default
    writes its default instead. That text is the ``system`` group, as a user's system text
    would be. Both renderings come before the user text is substituted, so the span holds.
    """
    try:
        with_system = _render(processor, True, video, chat_template)
    except LayoutError:
        return None
    at = with_system.index(_SYS)
    head, tail = with_system[:at], with_system[at + len(_SYS) :]
    if _FOLD and _FOLD in tail[: len(_FOLD)]:  # the template folded the system text into the user turn
        return None
    if not (rendered.startswith(head) and rendered.endswith(tail)) or len(rendered) <= len(head) + len(tail):
        return None
    default = rendered[len(head) : len(rendered) - len(tail)]
    if not default.strip() or _USER in default:
        return None
    return (len(head), len(head) + len(default))


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
    prompt_format: PromptFormat = "chat",
    option_style: OptionStyle = "(A)",
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

    written = prompt_text(
        processor,
        adapter,
        question,
        options,
        answer_prefix,
        system,
        instruction,
        chat_template,
        prompt_format,
        option_style,
    )
    text = written.text
    given, given_times = adapter.frames_for_processor(frames, timestamps)
    kwargs = adapter.processor_kwargs(fps, len(given), given_times)
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos):  # the template wrote the BOS: the tokenizer must not add a second (as HF)
        kwargs = {**kwargs, "add_special_tokens": False}
    inputs = dict(processor(text=[text], videos=[given], return_tensors="pt", **kwargs))
    final_ids = inputs["input_ids"][0].tolist()
    enc, mapping, (v_start, v_end) = _align_text(
        tokenizer, text, final_ids, adapter.placeholder_token_id(processor, config)
    )
    video_id = adapter.video_token_id(config)
    feature = np.asarray([p for p in range(v_start, v_end) if final_ids[p] == video_id], dtype=np.int64)
    if not feature.size:
        raise LayoutError("The processor produced no video tokens for the video placeholder.")
    closing = {int(i) for i in tokenizer.convert_tokens_to_ids(list(adapter.unit_closing_tokens))}
    mapping, v_end = _claim_folded_closing(mapping, v_end, int(feature[-1]), final_ids, closing)

    leaves, chars = _text_leaves(text, enc, mapping, _part_of(written.spans, written.block))
    structure = adapter.video_structure(config, inputs, 0, len(feature))
    if structure.n_tokens != len(feature):
        raise LayoutError(
            f"The adapter lays out {structure.n_tokens} video tokens but the processor produced {len(feature)}."
        )
    _check_every_frame_kept(structure, len(frames))
    units = _frame_units(structure, feature, _input_times(timestamps, fps, len(frames)), len(frames))
    for t, unit in enumerate(units):
        leaves[f"frame({t})"] = unit.positions.tolist()
    leaves["video_extra"] = feature[sum(u.positions.size for u in units) :].tolist()
    leaves["video_text"] = _attach_video_text(units, feature, v_start, v_end, final_ids, closing).tolist()

    seq_len = len(final_ids)
    ordered = _ordered_leaves(leaves, seq_len, len(units), len(written.block.options))
    layout = TokenLayout(seq_len, units, ordered, answer_index)
    layout.texts.update(_group_texts(text, layout, chars))
    return VideoPrompt(inputs, text, layout, question, options, answer_index, frames, timestamps, fps, made_for)


def _frame_rate(video: object, fps: float | None, adapter: VideoLLMAdapter) -> float | None:
    """The frame rate to tell the processor: given, implied by the video's timestamps, or assumed (warned).

    A rate given for a :class:`Video` whose timestamps imply another is refused: the
    processor is told the timestamps' times, so the given rate would be dropped unseen.
    """
    own = video.fps if isinstance(video, Video) else None
    if fps is not None and own is not None and not math.isclose(fps, own, rel_tol=1e-3):
        raise InputError(
            f"fps={fps:g} was given, but the video's timestamps put its frames {1 / own:.4g} s apart "
            f"({own:.4g} fps, Video.fps: the rate of the sampled frames, not the file's). The model is told "
            "the timestamps' times: drop fps=, or pass the frames alone (video.frames) to impose a rate."
        )
    if fps is None:
        fps = own
    if fps is None and adapter.uses_time:
        fps = adapter.default_fps
        warnings.warn(
            f"No frame times known: assuming the frames were sampled at {fps} fps for {adapter.family}'s "
            "temporal positions. Pass fps= to prepare() or decode with videolens.load_video().",
            stacklevel=4,
        )
    return fps


def _input_times(timestamps: np.ndarray | None, fps: float | None, n_inputs: int) -> Float[np.ndarray, " frame"] | None:
    """Each input frame's time in seconds: the video's timestamps, else ``index / fps`` (as the adapters
    compute it, so that the layout's times are the very floats the processor writes), else None."""
    if timestamps is not None:
        return np.asarray(timestamps, dtype=np.float64)
    return np.arange(n_inputs) / fps if fps else None


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


# ---- which group each token is in -------------------------------------------------------
def _anchor(text: str, start: int, end: int) -> int:
    """The character that decides a token's group: its first non-whitespace one (its first if it has none)."""
    for i in range(start, end):
        if not text[i].isspace():
            return i
    return start


def _part_of(spans: dict[str, tuple[int, int]], block: QuestionBlock) -> Callable[[int], str]:
    """The leaf group of each character of the prompt text.

    The question sentence is ``question_text``, each ``"(B) ..."`` its ``option(k)``, the
    rest of the question block (``"Question: "``, ``"\\nOptions:"``, the line breaks before
    the options) ``question_labels``, the system text ``system``, everything after the
    question block ``tail``, and everything else (role markers, BOS, a folded system's
    blank line) ``template``.
    """
    u0 = spans["user"][0]
    parts = [(u0 + a, u0 + b, f"option({k})") for k, (a, b) in enumerate(block.options)]
    parts.append((u0 + block.question[0], u0 + block.question[1], "question_text"))
    q1 = u0 + len(block.text)
    parts.append((u0, q1, "question_labels"))
    if "system" in spans:
        parts.append((*spans["system"], "system"))

    def part(char: int) -> str:
        for a, b, name in parts:
            if a <= char < b:
                return name
        return "tail" if char >= q1 else "template"

    return part


def _text_leaves(
    text: str, enc: Any, mapping: list[int], part: Callable[[int], str]
) -> tuple[dict[str, list[int]], dict[int, tuple[int, int]]]:
    """Each text token's leaf group, and the characters each final position covers.

    A token joins the group of its first non-whitespace character; a token of whitespace
    only joins the group its characters are in (docs/layout.md, "Whitespace and separators
    at group boundaries"). Tokens without characters (added BOS) are ``template``.
    """
    leaves: dict[str, list[int]] = {"template": [], "system": []}
    chars: dict[int, tuple[int, int]] = {}
    for (start, end), pos in zip(enc["offset_mapping"], mapping):
        if pos < 0:
            continue
        name = "template" if end <= start else part(_anchor(text, start, end))
        leaves.setdefault(name, []).append(pos)
        chars[pos] = (start, end)
    return leaves, chars


def _check_every_frame_kept(structure: Any, n_inputs: int) -> None:
    """Refuse a processor that sampled the given frames again: the layout would name frames it never saw."""
    seen = {i for covered in structure.frame_inputs for i in covered}
    if {i for i in seen if i < n_inputs} != set(range(n_inputs)):
        raise LayoutError(
            f"The processor kept {min(len(seen), n_inputs)} of the {n_inputs} frames given: its video processor "
            "samples frames itself (do_sample_frames, num_frames or fps in its config). Sample the frames "
            "yourself (load_video(..., num_frames=N)) and set processor.video_processor.do_sample_frames = False."
        )


def _frame_units(structure: Any, feature: np.ndarray, times: np.ndarray | None, n_inputs: int) -> list[FrameUnit]:
    """Cut the video tokens into the adapter's temporal units, each with its time.

    A unit covers only input frames that exist: with an odd number of frames (or one),
    Qwen-style processors fill the last pair by repeating the last frame, so that unit
    covers one. Its time is the midpoint of its first and last input frames' times: the
    time Qwen3-VL writes before a pair, computed as the processor computes it.
    """
    units: list[FrameUnit] = []
    cursor = 0
    for (h, w), covered in zip(structure.frame_grids, structure.frame_inputs):
        covered = tuple(i for i in covered if i < n_inputs) or (n_inputs - 1,)
        prefix = feature[cursor : cursor + structure.frame_prefix]
        cursor += structure.frame_prefix
        grid = feature[cursor : cursor + h * w].reshape(h, w)
        cursor += h * w
        stamp = None if times is None else float((times[covered[0]] + times[covered[-1]]) / 2)
        units.append(FrameUnit(grid, tuple(covered), stamp, prefix))
    return units


def _claim_folded_closing(
    mapping: list[int], v_end: int, last_video: int, ids: list[int], closing: set[int]
) -> tuple[list[int], int]:
    """Give the last frame its closing token when the processor folded the template's wrapper into the frames.

    Some processors (Qwen3-VL from transformers 5.25) drop the chat template's own
    ``<|vision_start|>``/``<|vision_end|>`` around the video and wrap each frame instead, so
    the template's closing token and the last frame's are one token. Aligned from the end,
    it would be read as template text; it closes the last frame, so it joins the video span.
    """
    if closing and v_end == last_video + 1 and v_end < len(ids) and ids[v_end] in closing:
        return [-1 if m == v_end else m for m in mapping], v_end + 1
    return mapping, v_end


def _attach_video_text(
    units: list[FrameUnit], feature: np.ndarray, v_start: int, v_end: int, ids: list[int], closing: set[int]
) -> np.ndarray:
    """Text inside the video span (frame labels, image start/end, timestamps), given to its frames.

    Each piece belongs to the frame whose tokens follow it, except the tokens that close a
    frame (the adapter's ``unit_closing_tokens``, e.g. Qwen3-VL's ``<|vision_end|>``), which
    belong to the frame they close; the last frame keeps what trails it. Returns every such
    position (the ``video_text`` leaf).
    """
    in_span = np.setdiff1d(np.arange(v_start, v_end), feature)
    bounds = [(int(u.positions.min()), int(u.positions.max())) for u in units]
    owner = {}
    for pos in in_span.tolist():
        after = [t for t, (_, end) in enumerate(bounds) if end < pos]  # units that end before this token
        before = [t for t, (start, _) in enumerate(bounds) if start > pos]  # units that start after it
        closes = after and ids[pos] in closing and all(ids[q] in closing for q in range(bounds[after[-1]][1] + 1, pos))
        owner[pos] = after[-1] if closes or not before else before[0]
    for t, unit in enumerate(units):
        unit.text = np.asarray([pos for pos, o in owner.items() if o == t], dtype=np.int64)
    return in_span


def _ordered_leaves(leaves: dict[str, list[int]], seq_len: int, n_frames: int, n_options: int) -> dict[str, np.ndarray]:
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
        "question_labels",
        "question_text",
        *[f"option({k})" for k in range(n_options)],
        "tail",
        "last",
    ]
    return {name: np.asarray(sorted(leaves.get(name, [])), dtype=np.int64) for name in ordered}


#: The groups made of prompt text, whose text ``layout.texts`` holds (plus every ``option(k)``).
TEXT_GROUPS = ("system", "question_labels", "question_text", "question_body", "tail", "last")


def _group_texts(text: str, layout: TokenLayout, chars: dict[int, tuple[int, int]]) -> dict[str, str]:
    """Each text group's text: the characters its tokens cover, in order, without whitespace at its ends.

    That is what the tokenizer decodes the group's tokens to, up to the whitespace at the
    ends, which is where tokenizers differ (docs/layout.md); so it is the same text on
    every tokenizer. Characters between two neighbouring tokens of the group that no
    token's offsets cover (spaces a tokenizer leaves out of its offsets; a combining accent
    an NFC tokenizer folds into the character before it) are the group's text too.
    """
    names = [*TEXT_GROUPS, *(f"option({k})" for k in range(layout.n_options))]
    out: dict[str, str] = {}
    for name in names:
        covered: set[int] = set()
        positions = layout[name].tolist()
        members = set(positions)
        for pos in positions:
            if pos in chars:
                start, end = chars[pos]
                if pos - 1 in members and pos - 1 in chars:  # the gap after the group's previous token
                    start = min(start, chars[pos - 1][1])
                while end < len(text) and unicodedata.combining(text[end]):
                    end += 1
                covered.update(range(start, end))
        out[name] = "".join(text[i] for i in sorted(covered)).strip()
    return out
