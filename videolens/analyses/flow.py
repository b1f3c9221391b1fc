"""Information-flow analysis of "Map the Flow": which attention pathways carry the answer.

For every sample, every blocked pathway of a target and every sweep layer ``l``, one
forward with the pathway blocked in the window's layers; record how the probability of
the clean answer and of the true answer change, and the new answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from videolens.analyses.common import (
    ResultWriter,
    SampleMode,
    iterate,
    keep_sample,
    option_token_ids,
    prompt_for,
    sample_id,
    sample_task,
)
from videolens.analyses.correctness import decoded_letter, is_correct
from videolens.analyses.windows import WindowStyle, window_layers
from videolens.core.hooked import HookedVideoLLM
from videolens.engine.sweep import SweepEngine
from videolens.errors import InputError, VideoLensError
from videolens.interventions.knockout import EdgeKnockout

KnockoutFactory = Callable[[Sequence[int]], EdgeKnockout]


def _edge(src: str, dst: str, allow_self: bool = False) -> KnockoutFactory:
    return lambda layers: EdgeKnockout(src, dst, layers=layers, allow_self=allow_self)


#: The paper's four targets: pathway label -> knockout for a list of layers.
TARGETS: dict[str, dict[str, KnockoutFactory]] = {
    "cross-frame": {"No cross-frame interactions": lambda layers: EdgeKnockout.cross_frame(layers)},
    "vql-to-ql": {
        "Video -/-> Question": _edge("video", "question"),
        "Video -/-> Last": _edge("video", "last"),
        "Question -/-> Last": _edge("question", "last"),
        "Last -/-> Last": _edge("last", "last", allow_self=True),
    },
    "question-and-options-to-last": {
        "Non-option question -/-> Last": _edge("question_text", "last"),
        "True option -/-> Last": _edge("true_option", "last"),
        "False options -/-> Last": _edge("false_options", "last"),
    },
    "vq-to-true-opt": {
        "Video -/-> Non-option question": _edge("video", "question_text"),
        "Non-option question -/-> True option": _edge("question_text", "true_option"),
        "Video -/-> True option": _edge("video", "true_option"),
    },
}


@torch.no_grad()
def information_flow(
    model: HookedVideoLLM,
    samples: Iterable[Any],
    target: str | dict[str, KnockoutFactory] = "vql-to-ql",
    *,
    window: int = 9,
    window_style: WindowStyle = "center",
    sample_mode: SampleMode = "correct",
    layers: Iterable[int] | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    engine: Literal["sweep", "plain"] = "sweep",
    **prepare_kwargs: Any,
) -> pd.DataFrame:
    """Sweep attention knockouts over layers for each pathway of a target.

    Args:
        model: the hooked model.
        samples: :class:`~videolens.analyses.Sample` objects (or dicts, or prepared prompts
            with an answer).
        target: one of :data:`TARGETS` (``"cross-frame"``, ``"vql-to-ql"``,
            ``"question-and-options-to-last"``, ``"vq-to-true-opt"``) or your own
            ``{label: layers -> EdgeKnockout}``.
        window, window_style: the layers blocked at sweep position ``l``
            (:mod:`videolens.analyses.windows`).
        sample_mode: analyse samples the model gets ``"correct"``, ``"wrong"`` or ``"all"``.
        layers: sweep positions (default: every layer).
        out: where rows go as they are computed: a JSONL file, or a :class:`~videolens.runs.Run`
            (table ``flow_<target>``: crash-safe, resumed, sharded over ``torch.distributed``).
        engine: ``"sweep"`` (default: :class:`~videolens.engine.sweep.SweepEngine`, reusing the clean
            run) or ``"plain"`` (one full forward per condition); the results are equal.

    Returns:
        One row per (sample, pathway, layer): ``sample_id, task, target, pathway, layer,
        layers_blocked, p_base, p_new, relative_diff, p_gt_base, p_gt_new,
        relative_diff_gt, answer_base, new_answer, gt, correct_base, correct_new``.
        ``df.attrs`` holds ``n_samples``, ``n_analysed`` and ``base_accuracy`` (clean accuracy over
        every sample seen, see :mod:`videolens.analyses.correctness`). Probabilities are in
        [0, 1]; relative diffs in percent.
    """
    pathways = TARGETS.get(target) if isinstance(target, str) else target
    if pathways is None:
        raise VideoLensError(f"Unknown target {target!r}; use one of {', '.join(TARGETS)} or a dict of knockouts.")
    target_name = target if isinstance(target, str) else "custom"
    n_layers = model.cfg.n_layers
    sweep = list(range(n_layers)) if layers is None else list(layers)
    if engine not in ("sweep", "plain"):
        raise InputError(f"engine={engine!r} is not a sweep engine; use 'sweep' (the default) or 'plain'.")
    keep_sample(sample_mode, True)  # the arguments alone show these mistakes: refuse them before any forward
    for layer in sweep:
        window_layers(window_style, layer, window, n_layers)
    writer = ResultWriter(out, table=f"flow_{target_name}")
    counter = writer.counter
    tok = model.tokenizer
    for index, sample in iterate(samples, f"information flow ({target_name})", progress, writer=writer):
        prompt = prompt_for(model, sample, **prepare_kwargs)
        option_ids = option_token_ids(model, prompt)
        gt_id = option_ids[prompt.answer]
        sweeper = SweepEngine(model, prompt) if engine == "sweep" else None
        clean = sweeper.clean_last_logits if sweeper is not None else model(prompt)[0, -1]
        probs = clean.float().softmax(-1)
        answer_t = int(probs.argmax())
        gt = prompt.answer_letter
        correct = is_correct(tok, answer_t, gt)
        keep = keep_sample(sample_mode, correct)
        counter.add(correct, keep)
        if not keep:
            continue
        p_base, p_gt_base = float(probs[answer_t]), float(probs[gt_id])
        conditions = [
            (label, layer, blocked, make(blocked))
            for label, make in pathways.items()
            for layer in sweep
            if (blocked := window_layers(window_style, layer, window, n_layers))
        ]
        knockouts = [ko for *_, ko in conditions]
        if sweeper is not None:
            all_logits = sweeper.last_logits(knockouts)
        else:
            all_logits = (
                torch.stack([model(prompt, interventions=[ko])[0, -1] for ko in knockouts]) if knockouts else []
            )
        rows = []
        for (label, layer, blocked, _), logits in zip(conditions, all_logits):
            new = logits.float().softmax(-1)
            new_answer = int(new.argmax())
            rows.append(
                {
                    "sample_id": sample_id(sample, index),
                    "task": sample_task(sample),
                    "target": target_name,
                    "pathway": label,
                    "layer": layer,
                    "layers_blocked": blocked,
                    "p_base": p_base,
                    "p_new": float(new[answer_t]),
                    "relative_diff": (float(new[answer_t]) - p_base) / p_base * 100,
                    "p_gt_base": p_gt_base,
                    "p_gt_new": float(new[gt_id]),
                    "relative_diff_gt": (float(new[gt_id]) - p_gt_base) / max(p_gt_base, 1e-12) * 100,
                    "answer_base": decoded_letter(tok, answer_t),
                    "new_answer": decoded_letter(tok, new_answer),
                    "gt": gt,
                    "correct_base": correct,
                    "correct_new": is_correct(tok, new_answer, gt),
                }
            )
        writer.add(rows)
    df = writer.frame()
    df.attrs.update(counter.attrs())
    return df


def flow_accuracy(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (percent) per task, pathway and layer over the analysed samples.

    The denominator is the number of samples analysed (after ``sample_mode``), not all
    samples of the task (the reference's inconsistency).
    """
    grouped = df.groupby(["task", "pathway", "layer"], sort=False)
    return grouped.agg(accuracy=("correct_new", lambda s: 100 * s.mean()), n=("correct_new", "size")).reset_index()
