"""Layer-wise answer probability ("Map the Flow", Fig. 9): when does the right option win?

The residual stream at the last position after each layer is projected through the
unembedding; the final layer's entry is the model's own output (final norm applied).
``apply_final_norm`` says whether the final norm is applied to the other layers too.
One prefill forward per sample (the reference generated up to 100 tokens for this).

The paper's settings: its LLaVA and InternVL scripts project the raw state
(``apply_final_norm=False``), its VideoLLaMA3 script normalises (``True``, the default here,
the usual logit lens); it kept the top 10 tokens per layer (``top_k=10``; default 5).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
from videolens.analyses.correctness import is_correct
from videolens.core.hooked import HookedVideoLLM
from videolens.core.layout import LETTERS
from videolens.errors import InputError


@torch.no_grad()
def answer_probability(
    model: HookedVideoLLM,
    samples: Iterable[Any],
    *,
    apply_final_norm: bool = True,
    sample_mode: SampleMode = "correct",
    top_k: int = 5,
    out: str | Path | None = None,
    progress: bool = True,
    **prepare_kwargs: Any,
) -> pd.DataFrame:
    """Probability of every option letter read from each layer's output at the last position.

    Returns:
        One row per (sample, layer, option): ``sample_id, task, layer, option, is_true,
        probability`` (percent), ``top_tokens`` (the layer's top-k tokens). ``df.attrs``
        has ``n_samples``, ``n_analysed`` and ``base_accuracy`` (clean accuracy over every
        sample seen, see :mod:`videolens.analyses.correctness`).
    """
    vocab = model.cfg.d_vocab_out
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= vocab:
        raise InputError(
            f"top_k={top_k!r} top tokens per layer: use a whole number from 1 to {vocab} (the vocabulary)."
        )
    keep_sample(sample_mode, True)  # refuse an unknown mode before any forward
    n_layers = model.cfg.n_layers
    names = [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]
    writer = ResultWriter(out, table="answer_prob")
    counter = writer.counter
    for index, sample in iterate(samples, "answer probability", progress, writer=writer):
        prompt = prompt_for(model, sample, **prepare_kwargs)
        option_ids = option_token_ids(model, prompt)
        cache: dict[str, torch.Tensor] = {}
        hooks = [(name, lambda x, hook, cache=cache: cache.__setitem__(hook.name, x[:, -1].detach())) for name in names]
        logits = model.run_with_hooks(prompt, fwd_hooks=hooks)[0, -1]
        correct = is_correct(model.tokenizer, int(logits.argmax()), prompt.answer_letter)
        keep = keep_sample(sample_mode, correct)
        counter.add(correct, keep)
        if not keep:
            continue
        rows = []
        for layer, name in enumerate(names):
            final = layer == n_layers - 1
            probs = model.resid_to_logits(cache[name], apply_ln=apply_final_norm or final)[0].float().softmax(-1)
            top = probs.topk(top_k)
            top_tokens = [model.tokenizer.decode([int(i)]) for i in top.indices]
            for k, token_id in enumerate(option_ids):
                rows.append(
                    {
                        "sample_id": sample_id(sample, index),
                        "task": sample_task(sample),
                        "layer": layer,
                        "option": LETTERS[k],
                        "is_true": k == prompt.answer,
                        "probability": 100 * float(probs[token_id]),
                        "top_tokens": top_tokens,
                    }
                )
        writer.add(rows)
    df = writer.frame()
    df.attrs.update(counter.attrs())
    return df
