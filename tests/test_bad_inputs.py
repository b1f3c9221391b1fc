"""Every bad input either works as documented or raises a VideoLensError naming the problem and the fix.

After each case no hook is left registered and a clean forward is bitwise what it was.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

from videolens import (
    EdgeKnockout,
    HookedVideoLLM,
    InterventionError,
    LayerRangeError,
    LayoutError,
    Video,
    VideoDecodeError,
    VideoLensError,
    load_video,
)
from videolens.analyses import (
    PAPER_PATHWAYS,
    PathwaySpec,
    Sample,
    answer_probability,
    attention_maps,
    effective_pathways,
    frame_attention,
    information_flow,
    pathway_knockout,
)
from videolens.analyses.common import option_token_ids
from videolens.engine import pooled_attention
from videolens.errors import InputError
from videolens.interventions.knockout import blocked_masks
from videolens.testing import random_video

from conftest import make_prompt, tiny
from test_parity import ours_left_on


@dataclass(frozen=True)
class Case:
    """One bad input: what to run, and the error (None: it must work) with a phrase of its message."""

    run: Callable[[HookedVideoLLM, object], object]
    error: type[Exception] | None
    match: str = ""


def _video(dtype=np.uint8, low=0, high=255):
    frames = np.random.default_rng(0).uniform(low, high, size=(8, 32, 32, 3))
    return frames.astype(dtype)


def _nan_video():
    frames = _video(np.float32, 0, 1)
    frames[0, 0, 0, 0] = np.nan
    return frames


def _mixed_pil():
    return [Image.new("RGB", (32, 32)), Image.new("RGB", (40, 32))] * 4


def _float_image_folder():
    import tempfile

    folder = tempfile.mkdtemp(prefix="videolens-float-frames-")
    for i in range(8):  # 0.6 everywhere: clipped to 8 bits it would read as black
        Image.fromarray(np.full((16, 16), 0.6, dtype=np.float32), mode="F").save(f"{folder}/{i}.tif")
    return folder


def _qwen_prompt():
    return make_prompt(tiny("qwen2_5_vl"))


def _q(m, **kw):
    """prepare() with a valid video and question, overridden by ``kw``."""
    args = {"video": random_video(8), "question": "What moved?", "options": ["left", "right"], "fps": 2.0}
    args.update(kw)
    return m.prepare(**args)


CASES: dict[str, Case] = {
    # frames that would be converted into something else
    "frames float -1..1": Case(lambda m, p: _q(m, video=_video(np.float32, -1, 1)), VideoDecodeError, r"\[0, 1\]"),
    "frames uint16": Case(lambda m, p: _q(m, video=_video(np.uint16, 0, 65535)), VideoDecodeError, "uint8"),
    "frames bool": Case(lambda m, p: _q(m, video=_video(np.float32) > 128), VideoDecodeError, "uint8"),
    "frames NaN": Case(lambda m, p: _q(m, video=_nan_video()), VideoDecodeError, "NaN"),
    "PIL frames of mixed sizes": Case(lambda m, p: _q(m, video=_mixed_pil()), VideoDecodeError, "size"),
    "frames float in 0..1 work": Case(lambda m, p: _q(m, video=_video(np.float32, 0, 1)), None),
    # options and answers
    "options as one string": Case(lambda m, p: _q(m, options="left"), LayoutError, "one string"),
    "duplicate options": Case(lambda m, p: _q(m, options=["left", "left"]), LayoutError, "distinct"),
    "non-string options": Case(lambda m, p: _q(m, options=[1, 2]), LayoutError, "strings"),
    "answer=True": Case(lambda m, p: _q(m, answer=True), LayoutError, "boolean"),
    "answer index out of range": Case(lambda m, p: _q(m, answer=5), LayoutError, "0..1"),
    "digit answer matches option text": Case(
        lambda m, p: _q(m, options=["1", "2", "3"], answer="2").answer == 1 or pytest.fail("not option B"), None
    ),
    # time
    "fps NaN": Case(lambda m, p: _q(m, fps=float("nan")), LayoutError, "finite"),
    "fps 0": Case(lambda m, p: _q(m, fps=0), LayoutError, "above 0"),
    "fps negative": Case(lambda m, p: _q(m, fps=-2.0), LayoutError, "above 0"),
    "fps as text": Case(lambda m, p: _q(m, fps="2"), LayoutError, "not a number"),
    "fps contradicting the video's timestamps": Case(
        lambda m, p: _q(m, video=Video(_video(), np.arange(8) * 0.5), fps=25.0), InputError, r"2 fps, Video.fps"
    ),
    "fps agreeing with the video's timestamps works": Case(
        lambda m, p: _q(m, video=Video(_video(), np.arange(8) * 0.5), fps=2.0), None
    ),
    "load_video of None": Case(lambda m, p: load_video(None), VideoDecodeError, "not NoneType"),
    "a folder of floating-point images": Case(
        lambda m, p: load_video(_float_image_folder()), VideoDecodeError, "8-bit"
    ),
    # user text that would change the prompt's structure
    "eos token in the question": Case(lambda m, p: _q(m, question="What</s> moved?"), LayoutError, "control token"),
    "placeholder in the question": Case(lambda m, p: _q(m, question="What <video> moved?"), LayoutError, "<video>"),
    "control token in an option": Case(lambda m, p: _q(m, options=["a<s>", "b"]), LayoutError, "option A"),
    "control token in the system text": Case(lambda m, p: _q(m, system="be <pad> brief"), LayoutError, "system"),
    # forward arguments
    "start after stop": Case(
        lambda m, p: m(p, start_at_layer=1, stop_at_layer=0, residual=torch.zeros(1)), LayerRangeError, "before"
    ),
    "unknown return_type": Case(lambda m, p: m(p, return_type="foo"), InputError, "return_type"),
    "prompt=None": Case(lambda m, p: m(None), InputError, "prepare"),
    "empty prompt list": Case(lambda m, p: m([]), InputError, "non-empty"),
    "residual of the wrong shape": Case(
        lambda m, p: m(p, start_at_layer=1, residual=torch.zeros(1, 3, m.cfg.d_model)), InputError, "shape"
    ),
    "residual of an integer dtype": Case(
        lambda m, p: m(p, start_at_layer=1, residual=torch.zeros(1, p.seq_len, m.cfg.d_model, dtype=torch.long)),
        InputError,
        "floating",
    ),
    "prompt from another model": Case(lambda m, p: m(_qwen_prompt()), InputError, "another model"),
    "misspelled names_filter": Case(
        lambda m, p: m.run_with_cache(p, names_filter="blocks.0.hook_resid_psot"), VideoLensError, "Did you mean"
    ),
    "misspelled name in a names_filter list": Case(
        lambda m, p: m.run_with_cache(p, names_filter=["blocks.0.hook_resid_pre", "blocks.0.attn.hook_patern"]),
        VideoLensError,
        "hook_pattern",
    ),
    "misspelled name through add_hook": Case(
        lambda m, p: m.add_hook("blocks.0.attn.hook_patern", lambda x, hook: x), VideoLensError, "hook_pattern"
    ),
    "vision layer out of range": Case(
        lambda m, p: m.add_hook("vision.blocks.99.hook_resid_post", lambda x, hook: x), LayerRangeError, "vision layer"
    ),
    # interventions
    "anticausal knockout": Case(
        lambda m, p: m(p, interventions=[EdgeKnockout("last", "video", layers=[0])]), InterventionError, "swap"
    ),
    "intervention that is not a knockout": Case(
        lambda m, p: m(p, interventions=["video"]), InterventionError, "EdgeKnockout"
    ),
    "a hook function as intervention": Case(
        lambda m, p: m(p, interventions=[lambda x, hook: x]), InterventionError, "fwd_hooks"
    ),
    "layers as a bare int": Case(
        lambda m, p: EdgeKnockout("video", "last", layers=1), InterventionError, r"range\(1\)"
    ),
    "heads as a bare int": Case(
        lambda m, p: EdgeKnockout("video", "last", layers=[1], heads=2), InterventionError, r"heads=\[2\]"
    ),
    "heads empty": Case(
        lambda m, p: EdgeKnockout("video", "last", layers=[1], heads=[]), InterventionError, "heads=None"
    ),
    "layers of floats": Case(
        lambda m, p: EdgeKnockout("video", "last", layers=[0.5]), InterventionError, "whole numbers"
    ),
    # generation
    "generate 0 tokens": Case(lambda m, p: m.generate(p, max_new_tokens=0), InputError, "at least 1"),
    "top_k above the vocabulary": Case(
        lambda m, p: m.generate(p, max_new_tokens=2, do_sample=True, top_k=10**9), InputError, "vocabulary"
    ),
    "generate return_type": Case(lambda m, p: m.generate(p, max_new_tokens=1, return_type="ids"), InputError, "tokens"),
    # analyses
    "pathway spec in upper case works": Case(
        lambda m, p: effective_pathways(m, [p], spec="7B", random_baseline=False, progress=False), None
    ),
    "unknown pathway spec": Case(
        lambda m, p: effective_pathways(m, [p], spec="8b", progress=False), InputError, "'7b'"
    ),
    "head_reduce that is neither mean nor max": Case(
        lambda m, p: frame_attention(m, p, head_reduce="sum"), InputError, "'mean' or 'max'"
    ),
    "attention_maps head_reduce misspelt": Case(
        lambda m, p: attention_maps(m, [p], head_reduce="median", progress=False), InputError, "'mean' or 'max'"
    ),
    "unknown sweep engine": Case(
        lambda m, p: information_flow(m, [p], engine="fast", progress=False), InputError, "'sweep'"
    ),
    "fractional window": Case(
        lambda m, p: information_flow(m, [p], window=1.5, progress=False), VideoLensError, "whole number"
    ),
    "top_k of 0": Case(lambda m, p: answer_probability(m, [p], top_k=0, progress=False), InputError, "1 to"),
    "top_k above the vocabulary (answer probability)": Case(
        lambda m, p: answer_probability(m, [p], top_k=10**9, progress=False), InputError, "vocabulary"
    ),
    "pooled_attention chunk 0": Case(lambda m, p: pooled_attention(m, p, chunk=0), InputError, "at least 1"),
    "pathway range past the model": Case(
        lambda m, p: PathwaySpec(4, (0, 9), (0, 2), (2, 4), None), InputError, "half-open"
    ),
    "pathway range reversed": Case(
        lambda m, p: PathwaySpec(4, (3, 1), (0, 2), (2, 4), None), InputError, "start <= stop"
    ),
    "sample without an answer": Case(
        lambda m, p: information_flow(
            m, [Sample(random_video(8), "What?", ["a", "b"], answer=None)], progress=False, fps=2.0
        ),
        LayoutError,
        "no answer",
    ),
}


@functools.cache
def _reference_logits(family: str) -> torch.Tensor:
    model = tiny(family)
    with torch.no_grad():
        return model(make_prompt(model, answer=1))


def _assert_untouched(model: HookedVideoLLM, family: str) -> None:
    assert not any(hp.fwd_hooks or hp.bwd_hooks for hp in model.hook_dict.values())
    assert not ours_left_on(model.hf_model)
    with torch.no_grad():
        assert torch.equal(model(make_prompt(model, answer=1)), _reference_logits(family))


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name):
    case = CASES[name]
    model = tiny("llava_next_video")
    prompt = make_prompt(model, answer=1)
    _reference_logits("llava_next_video")
    if case.error is None:
        case.run(model, prompt)
    else:
        with pytest.raises(case.error, match=case.match) as info:
            case.run(model, prompt)
        assert isinstance(info.value, VideoLensError)
    _assert_untouched(model, "llava_next_video")


def test_more_options_than_the_vocabulary_has_letters_is_refused():
    model = HookedVideoLLM.from_pretrained("videolens/toy-moving-shapes")
    words = ["red", "green", "blue", "left", "right", "up"]  # the toy vocabulary has only the letters A-D
    prompt = model.prepare(random_video(8, 32, 32), "What colour is the square?", options=words, answer=0)
    with pytest.raises(LayoutError, match="distinct known tokens"):
        option_token_ids(model, prompt)
    assert len(set(option_token_ids(model, model.prepare(random_video(8, 32, 32), "What?", options=words[:4])))) == 4


def test_argument_mistakes_are_refused_before_any_sample_is_read():
    """An analysis whose arguments alone are wrong fails before reading (and decoding) a sample."""
    model = tiny("llava_next_video")
    read = []

    def samples():
        read.append(True)
        yield make_prompt(model, answer=1)

    for run in (
        lambda s: information_flow(model, s, engine="fast", progress=False),
        lambda s: information_flow(model, s, window=0, progress=False),
        lambda s: information_flow(model, s, window_style="middle", progress=False),
        lambda s: information_flow(model, s, sample_mode="right", progress=False),
        lambda s: answer_probability(model, s, top_k=-1, progress=False),
        lambda s: answer_probability(model, s, sample_mode="right", progress=False),
        lambda s: attention_maps(model, s, head_reduce="sum", progress=False),
    ):
        with pytest.raises(VideoLensError):
            run(samples())
    assert not read


def test_a_pathway_spec_of_another_depth_is_stretched_with_a_warning():
    model = tiny("llava_next_video")
    n = model.cfg.n_layers
    spec = PAPER_PATHWAYS["7b"]
    with pytest.warns(UserWarning, match=rf"for 32 layers and the model has {n}"):
        stretched = pathway_knockout(spec, n)
    prompt = make_prompt(model, answer=1)
    scaled = pathway_knockout(spec.scaled(n), n)  # the ranges chosen explicitly: no warning, the same knockout
    masks = [
        blocked_masks([ko], [prompt.layout], prompt.layout.seq_len, n, model.cfg.n_heads) for ko in (stretched, scaled)
    ]
    assert masks[0].keys() == masks[1].keys() and all(torch.equal(masks[0][k], masks[1][k]) for k in masks[0])
    assert PAPER_PATHWAYS["7b"].scaled(n).inter_frame == (round(5 * n / 32), round(15 * n / 32))
