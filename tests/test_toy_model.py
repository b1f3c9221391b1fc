"""The shipped toy model: it loads offline, solves its tasks, and has the mechanism we document.

Numbers measured on 40 held-out videos per task (seed 2024), see docs/toy_model.md.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from videolens import EdgeKnockout, HookedVideoLLM
from videolens.analyses.common import option_token_ids, prompt_for
from videolens.data.synthetic import STATIC_TASKS, TASKS, make_dataset, make_sample
from videolens.errors import InputError
from videolens.models import SHIPPED

ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def toy() -> HookedVideoLLM:
    return HookedVideoLLM.from_pretrained("videolens/toy-moving-shapes")


@functools.lru_cache(maxsize=1)
def held_out():
    return make_dataset(40, seed=2024)


def accuracy(interventions=()) -> dict[str, float]:
    model, data = toy(), held_out()
    hits: dict[str, list[bool]] = {t: [] for t in TASKS}
    with torch.no_grad():
        for i in range(0, len(data), 50):
            chunk = data[i : i + 50]
            prompts = [prompt_for(model, s) for s in chunk]
            pred = model(prompts, interventions=list(interventions))[:, -1].argmax(-1).tolist()
            for s, p, guess in zip(chunk, prompts, pred):
                hits[s.task].append(guess == option_token_ids(model, p)[p.answer])
    return {t: float(np.mean(v)) for t, v in hits.items()}


def after_video(layout):
    return torch.arange(int(layout["video"].max()) + 1, layout.seq_len)


def test_ships_inside_the_package_and_is_small():
    folder = SHIPPED["videolens/toy-moving-shapes"]
    assert folder.is_dir() and str(folder).startswith(str(ROOT / "videolens"))
    assert sum(f.stat().st_size for f in folder.iterdir()) < 20 * 2**20
    assert toy().cfg.n_layers == 8 and toy().cfg.family == "llava_next_video"


def test_held_out_accuracy_per_task():
    acc = accuracy()
    assert all(a >= 0.95 for a in acc.values()), acc


def test_blocking_video_to_text_drops_every_task_to_chance():
    ko = EdgeKnockout("video", after_video, layers=range(toy().cfg.n_layers))
    acc = accuracy([ko])
    assert all(a <= 0.45 for a in acc.values()), acc  # chance is 0.25


def test_cross_frame_knockout_hurts_temporal_tasks_not_static_ones():
    n = toy().cfg.n_layers
    everywhere = accuracy([EdgeKnockout.cross_frame(range(n))])
    assert everywhere["after"] <= 0.75 and everywhere["direction"] <= 0.85, everywhere
    assert all(everywhere[t] >= 0.95 for t in STATIC_TASKS), everywhere
    early = accuracy([EdgeKnockout.cross_frame(range(0, n // 2))])
    late = accuracy([EdgeKnockout.cross_frame(range(n // 2, n))])
    assert early["after"] <= 0.75 and late["after"] >= 0.9, (early, late)


def test_synthetic_data_is_reproducible_and_labelled():
    a, b = make_dataset(3, seed=5), make_dataset(3, seed=5)
    assert all(np.array_equal(x.video, y.video) and x.options == y.options for x, y in zip(a, b))
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = make_sample("direction", rng)
        (y0, x0), (y1, x1) = s.meta["positions"][0][0], s.meta["positions"][-1][0]
        moved = {"left": x1 < x0, "right": x1 > x0, "up": y1 < y0, "down": y1 > y0}
        assert moved[s.meta["direction"]] and s.options[s.answer] == s.meta["direction"]
        s = make_sample("order", rng)
        first = s.meta["colors"][int(np.argmin(s.meta["appear_frames"]))]
        assert s.options[s.answer] == first
        t = s.meta["appear_frames"][1]
        assert (s.video[t - 1] != s.video[t]).any()  # the second colour appears at its frame
    with pytest.raises(InputError, match="Unknown task"):
        make_sample("spin", rng)


def test_training_data_equals_what_prepare_builds():
    spec = importlib.util.spec_from_file_location("train_toy_model", ROOT / "scripts" / "train_toy_model.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    model = toy()
    samples = make_dataset(1, seed=3)
    batch = train.encode(model.processor, samples)
    for row, s in enumerate(samples):
        prompt = prompt_for(model, s)
        ids = batch["input_ids"][row][batch["attention_mask"][row].bool()]
        assert torch.equal(ids, prompt.input_ids[0])
        assert torch.allclose(batch["pixel_values_videos"][row], prompt.inputs["pixel_values_videos"][0])
        assert int(batch["labels"][row]) == option_token_ids(model, prompt)[prompt.answer]
