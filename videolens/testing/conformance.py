"""The checks every family's tiny model must pass, as plain functions tests call per family.

:func:`check_family` runs them all on a :class:`~videolens.core.hooked.HookedVideoLLM` built
(with eager attention) from a family's tiny spec; each check raises ``AssertionError``
naming what differs. Every check compares videolens with an independent computation:

- :func:`check_hf_parity`: with no hooks or interventions, the logits are the HF model's
  own (fp32, within ``1e-5``).
- :func:`check_layout`: ``prompt.layout`` has the family's hand-counted
  :class:`~videolens.testing.spec.LayoutFacts`, and its ``video`` group is exactly the
  positions of the processor's video feature tokens.
- :func:`check_knockout`: blocking cross-frame and video -> last attention changes the
  logits, equals the reference method of "Map the Flow" (the HF model with dense additive
  masks, :mod:`videolens.engine.reference`), and leaves the next clean forward bitwise
  unchanged (no state kept between calls).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from videolens.interventions.knockout import EdgeKnockout
from videolens.testing.spec import VIDEO_FRAMES, LayoutFacts
from videolens.testing.video import random_video

if TYPE_CHECKING:
    from videolens.core.hooked import HookedVideoLLM
    from videolens.core.prompt import VideoPrompt

__all__ = ["PARITY_TOL", "check_family", "check_hf_parity", "check_knockout", "check_layout", "conformance_prompt"]

#: Largest |ours - reference| allowed in fp32 logits.
PARITY_TOL = 1e-5
#: Smallest logit change that counts as "the knockout changed something".
EFFECT_MIN = 1e-4


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise AssertionError(message)


def conformance_prompt(model: HookedVideoLLM, seed: int = 0) -> VideoPrompt:
    """A multiple-choice prompt on ``random_video(8)`` at 2 fps, with a system message."""
    return model.prepare(
        random_video(VIDEO_FRAMES, seed=seed),
        "What moved first?",
        options=["the red square", "the blue circle", "nothing"],
        answer_prefix="Best option:(",
        system="Watch the video carefully.",
        fps=2.0,
    )


def check_hf_parity(model: HookedVideoLLM, prompt: VideoPrompt) -> None:
    """videolens' logits equal the HF model's own forward on the processor's inputs."""
    with torch.no_grad():
        ours = model(prompt)
        ref = model.hf_model(**prompt.inputs).logits
    _require(ours.shape == ref.shape, f"logits of shape {tuple(ours.shape)}, HF's {tuple(ref.shape)}")
    diff = (ours - ref).abs().max().item()
    _require(diff <= PARITY_TOL, f"logits differ from HF's by {diff:.3g} (> {PARITY_TOL})")


def check_layout(model: HookedVideoLLM, prompt: VideoPrompt, facts: LayoutFacts) -> None:
    """``prompt.layout`` has the hand-counted facts and covers the processor's video tokens."""
    layout = prompt.layout
    video_ids = torch.nonzero(prompt.input_ids[0] == model.cfg.video_token_id).flatten()
    _require(len(video_ids) == facts.video_tokens, f"{len(video_ids)} video tokens, expected {facts.video_tokens}")
    _require(torch.equal(layout["video"], video_ids), "layout['video'] is not the processor's video tokens")
    _require(layout.n_frames == facts.units, f"{layout.n_frames} temporal units, expected {facts.units}")
    for t, unit in enumerate(layout.frames):
        _require(len(layout.frame(t)) == facts.tokens_per_unit, f"unit {t}: {len(layout.frame(t))} tokens")
        covered = tuple(range(t * facts.frames_per_unit, (t + 1) * facts.frames_per_unit))
        _require(unit.input_frames == covered, f"unit {t} covers input frames {unit.input_frames}, not {covered}")
        _require(len(unit.prefix) == facts.frame_prefix, f"unit {t}: {len(unit.prefix)} prefix tokens")
        h, w = layout.grid(t).shape
        _require(facts.frame_prefix + h * w == facts.tokens_per_unit, f"unit {t}: a {h}x{w} grid")
    _require(len(layout["video_extra"]) == facts.extra_tokens, f"{len(layout['video_extra'])} video_extra tokens")
    has_text = len(layout["video_text"]) > 0
    _require(has_text == facts.video_text, f"video_text {'present' if has_text else 'absent'}, facts disagree")


def check_knockout(model: HookedVideoLLM, prompt: VideoPrompt) -> None:
    """Cross-frame + video -> last knockouts change the logits as the reference says, and leak nothing."""
    from videolens.engine.reference import reference_logits

    layers = list(range(model.cfg.n_layers))
    knockout = EdgeKnockout.cross_frame(layers=layers) + EdgeKnockout("video", "last", layers=layers[-1:])
    lay = prompt.layout
    cross = [(torch.cat([lay.frame(s) for s in range(t)]), lay.frame(t)) for t in range(1, lay.n_frames)]
    edges = {layer: list(cross) for layer in layers}
    edges[layers[-1]].append((lay["video"], lay["last"]))
    with torch.no_grad():
        clean = model(prompt)
        knocked = model(prompt, interventions=[knockout])
        again = model(prompt)
    ref = reference_logits(model, prompt, edges)
    diff = (knocked - ref).abs().max().item()
    _require(diff <= PARITY_TOL, f"knockout logits differ from the reference method by {diff:.3g}")
    _require((knocked - clean).abs().max().item() > EFFECT_MIN, "the knockout changed nothing")
    _require(torch.equal(again, clean), "a clean forward after the knockout is not bitwise the clean logits")


def check_family(model: HookedVideoLLM, facts: LayoutFacts | None = None) -> None:
    """Run every conformance check; ``facts`` default to the model's adapter's own tiny spec."""
    if facts is None:
        spec = vars(type(model.adapter)).get("tiny")
        _require(spec is not None, f"{type(model.adapter).__name__} declares no tiny spec (layout facts)")
        facts = spec.layout
    prompt = conformance_prompt(model)
    check_hf_parity(model, prompt)
    check_layout(model, prompt, facts)
    check_knockout(model, prompt)
