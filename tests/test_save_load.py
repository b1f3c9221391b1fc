"""save_pretrained then from_pretrained works offline and gives the same logits."""

from __future__ import annotations

import pytest
import torch

from videolens import HookedVideoLLM

from conftest import FAMILIES, make_prompt, tiny


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip(tmp_path, family, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tiny(family)
    folder = model.save_pretrained(tmp_path / family)
    loaded = HookedVideoLLM.from_pretrained(folder, dtype="float32", device="cpu", attn_implementation="eager")
    prompt = make_prompt(model)
    again = make_prompt(loaded)
    assert torch.equal(prompt.input_ids, again.input_ids)
    assert again.layout.leaves.keys() == prompt.layout.leaves.keys()
    with torch.no_grad():
        assert (model(prompt) - loaded(again)).abs().max().item() <= 1e-5
    assert loaded.cfg.family == family
