"""Conformance on real tokenizers and chat templates ($VIDEOLENS_REAL_INPUTS).

Each family's tiny random model keeps its checkpoint's token ids and vocabulary size around
the real tokenizer: Llama-2's SentencePiece (LLaVA-NeXT-Video, Video-LLaVA, PLLaVA, with the
media tokens llava-hf adds) or Qwen's byte-level BPE (Qwen2-VL, Qwen2.5-VL, Qwen3-VL,
LLaVA-OneVision). Every prompt carries the paper's system text. Expected values are hand
counts, the tokenizer's own decode, HF's own logits and the paper's own token ranges.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest
import torch

from videolens import HookedVideoLLM, LayoutError, load_video
from videolens.analyses.flow import TARGETS
from videolens.core.prompt import PAPER_SYSTEM
from videolens.engine.reference import reference_logits
from videolens.testing import random_video, tiny_spec
from videolens.testing.conformance import check_hf_parity
from videolens.testing.real import REAL_TOKENS, build_real_model, real_inputs, real_template, real_tokenizer

pytestmark = pytest.mark.skipif(
    not (real_inputs() / "llama2-tokenizer").is_dir(),
    reason=f"no real inputs at {real_inputs()}; set VIDEOLENS_REAL_INPUTS to the shared real-inputs folder",
)

QUESTION = "What did the person do after opening the box?"
OPTIONS = ["Took the cup.", "Closed the door.", "Sat down"]
PAPER = "paper"
#: The template each family's processor carries (the first real one found for it).
OWN_TEMPLATE = {
    "llava_next_video": "llava-next-video-7b-32k-hf",
    "video_llava": "llava-next-video-7b-32k-hf",
    "pllava": None,
    "qwen2_vl": "qwen2_vl_instruct",
    "qwen2_5_vl": "qwen2_vl_instruct",
    "qwen3_vl": "qwen3_vl_instruct",
    "llava_onevision": "llava_onevision_convert_script",
}
#: case -> (family, template name or "paper"). The 32K folder's template is Mistral-Instruct's:
#: string content only, no system role.
CASES = {
    "llava_next_video-paper": ("llava_next_video", PAPER),
    "llava_next_video-mistral": ("llava_next_video", "llava-next-video-7b-32k-hf"),
    "video_llava-mistral": ("video_llava", "llava-next-video-7b-32k-hf"),
    "pllava-paper": ("pllava", PAPER),
    "qwen2_vl": ("qwen2_vl", "qwen2_vl_instruct"),
    "qwen2_5_vl": ("qwen2_5_vl", "qwen2_vl_instruct"),
    "qwen3_vl": ("qwen3_vl", "qwen3_vl_instruct"),
    "llava_onevision-convert": ("llava_onevision", "llava_onevision_convert_script"),
    "llava_onevision-tests": ("llava_onevision", "llava_onevision_transformers_tests"),
}
#: family -> (video feature token, its id, vocabulary size), from the checkpoints' configs.
CHECKPOINT = {
    "llava_next_video": ("<video>", 32000, 32064),
    "video_llava": ("<video>", 32001, 32064),
    "pllava": ("<image>", 32000, 32064),
    "qwen2_vl": ("<|video_pad|>", 151656, 152064),
    "qwen2_5_vl": ("<|video_pad|>", 151656, 152064),
    "qwen3_vl": ("<|video_pad|>", 151656, 151936),
    "llava_onevision": ("<video>", 151647, 152000),
}
SENTENCEPIECE = {"llava_next_video", "video_llava", "pllava"}
#: The paper's system text, as its evaluation code writes it.
SYSTEM_TEXT = (
    "Carefully watch the video and pay attention to the cause and sequence of events, the detail and movement of "
    "objects, and the action and pose of persons. Based on your observations, select the best option that accurately "
    "addresses the question."
)


@functools.cache
def model_of(family: str) -> HookedVideoLLM:
    own = OWN_TEMPLATE[family]
    return build_real_model(family, real_template(own) if own else None)


@functools.cache
def prompt_of(case: str):
    family, template = CASES[case]
    model = model_of(family)
    video = random_video(8)
    if template == PAPER:
        return model.prepare(video, QUESTION, OPTIONS, answer=1, fps=2.0, prompt_format="paper")
    chat_template = None if template == OWN_TEMPLATE[family] else real_template(template)
    return model.prepare(
        video, QUESTION, OPTIONS, "Best option:(", PAPER_SYSTEM, answer=1, fps=2.0, chat_template=chat_template
    )


def tokens(case: str, group: str) -> list[str]:
    model, prompt = model_of(CASES[case][0]), prompt_of(case)
    return model.tokenizer.convert_ids_to_tokens(prompt.input_ids[0][prompt.layout[group]].tolist())


def is_run(positions: torch.Tensor) -> bool:
    return bool(torch.equal(positions, torch.arange(int(positions[0]), int(positions[0]) + len(positions))))


@pytest.fixture(params=list(CASES))
def case(request) -> str:
    return request.param


def test_the_model_keeps_the_checkpoints_ids_and_vocabulary(case):
    family = CASES[case][0]
    token, token_id, vocab = CHECKPOINT[family]
    model, prompt = model_of(family), prompt_of(case)
    assert model.cfg.d_vocab == vocab
    assert model.tokenizer.convert_tokens_to_ids(token) == token_id
    ids = prompt.input_ids[0]
    assert torch.equal(prompt.layout["video"], torch.nonzero(ids == token_id).flatten())
    assert len(prompt.layout["video"]) == tiny_spec(family).layout.video_tokens  # the family's hand count


def test_text_groups_decode_to_their_texts(case):
    model, prompt = model_of(CASES[case][0]), prompt_of(case)
    layout, ids = prompt.layout, prompt.input_ids[0]
    expected = {
        "system": SYSTEM_TEXT,
        "question_text": QUESTION,
        "question_body": f"Question: {QUESTION}\nOptions:",
        **{f"option({k})": f"({'ABC'[k]}) {option}" for k, option in enumerate(OPTIONS)},
    }
    for group, text in expected.items():
        assert layout.texts[group] == text
    for group in [*expected, "question_labels", "tail", "last"]:
        assert model.tokenizer.decode(ids[layout[group]].tolist()).strip() == layout.texts[group], group
    assert "".join(layout.texts["question_labels"].split()) == "Question:Options:"


def test_the_groups_follow_the_whitespace_rule(case):
    layout = prompt_of(case).layout
    for group in ["system", "question_text", "option(0)", "option(1)", "option(2)"]:
        assert is_run(layout[group]), group
    assert is_run(torch.cat([layout["tail"], layout["last"]]))
    question, first_option = tokens(case, "question_text"), tokens(case, "option(0)")
    labels = tokens(case, "question_labels")
    if CASES[case][0] in SENTENCEPIECE:
        # a line break is a token of its own, in the group of its character: the ones after the
        # question, after "Options:" and between the options are labels
        assert question[0] == "▁What" and question[-1] == "?" and first_option[-1] == "."
        assert labels[1:] == [":", "<0x0A>", "Options", ":", "<0x0A>", "<0x0A>", "<0x0A>"]
    else:
        # BPE glues a line break to the punctuation before it: the token joins that text's group
        assert question[0] == "ĠWhat" and question[-1] == "?Ċ" and first_option[-1] == ".Ċ"
        assert labels == ["Question", ":", "Options", ":Ċ"]
    assert layout.leaf_of(int(layout["question_text"][-1]) + 1) == "question_labels"


def test_the_groups_are_the_same_text_on_sentencepiece_and_bpe():
    reference = prompt_of("llava_next_video-paper").layout.texts  # SentencePiece, the paper's own format
    groups = ["system", "question_text", "question_body", "option(0)", "option(1)", "option(2)"]
    for case in [c for c in CASES if c != "llava_next_video-paper"]:
        texts = prompt_of(case).layout.texts
        assert {g: texts[g] for g in groups} == {g: reference[g] for g in groups}, case
        # the labels' one line break between their pieces is the question's on BPE ("?\n"): only
        # the whitespace differs
        assert "".join(texts["question_labels"].split()) == "".join(reference["question_labels"].split())


def test_logits_equal_hfs_own(case):
    check_hf_parity(model_of(CASES[case][0]), prompt_of(case))


@pytest.mark.parametrize(
    "template",
    ["llava_next_video_convert_script_vicuna", "llava_next_video_convert_script_mistral", "llava_vicuna_image_only"],
)
def test_templates_that_never_render_a_video_are_refused(template):
    model = model_of("llava_next_video")
    with pytest.raises(LayoutError, match="never renders the video.*chat_template="):
        model.prepare(
            random_video(8), QUESTION, OPTIONS, system=PAPER_SYSTEM, fps=2.0, chat_template=real_template(template)
        )


# ---- the paper's method ---------------------------------------------------------------------
def paper_range(tokenizer, ids: list[int], query: str) -> torch.Tensor:
    """The paper's token range of ``query``: each token decoded alone and concatenated, spaces
    removed, the first match; from the first token ending past its start to the first reaching its end."""
    pieces = [tokenizer.decode([i]).replace(" ", "") for i in ids]
    ends = np.cumsum([len(p) for p in pieces])
    needle = query.replace(" ", "")
    at = "".join(pieces).index(needle)
    return torch.arange(int(np.argmax(ends > at)), int(np.argmax(ends >= at + len(needle))) + 1)


def paper_groups(case: str) -> dict[str, torch.Tensor]:
    family = CASES[case][0]
    model, prompt = model_of(family), prompt_of(case)
    ids = prompt.input_ids[0].tolist()
    ranges = [paper_range(model.tokenizer, ids, f"({'ABC'[k]}) {o}") for k, o in enumerate(OPTIONS)]
    start = ids.index(CHECKPOINT[family][1])
    return {
        "video": torch.arange(start, start + tiny_spec(family).layout.video_tokens),
        "question": paper_range(model.tokenizer, ids, QUESTION),
        "true": ranges[1],
        "false": torch.cat([ranges[0], ranges[2]]),
        "last": torch.tensor([len(ids) - 1]),
    }


#: pathway label -> (keys, queries) among the paper's groups.
PAPER_EDGES = {
    "Non-option question -/-> Last": ("question", "last"),
    "True option -/-> Last": ("true", "last"),
    "False options -/-> Last": ("false", "last"),
    "Video -/-> Non-option question": ("video", "question"),
    "Non-option question -/-> True option": ("question", "true"),
    "Video -/-> True option": ("video", "true"),
}


@pytest.mark.parametrize("case", ["llava_next_video-paper", "qwen2_5_vl"])
@pytest.mark.parametrize("target", ["question-and-options-to-last", "vq-to-true-opt"])
def test_the_non_option_question_pathways_equal_the_papers_method(case, target):
    model, prompt = model_of(CASES[case][0]), prompt_of(case)
    paper = paper_groups(case)
    assert torch.equal(prompt.layout["question_text"], paper["question"])
    assert torch.equal(prompt.layout["true_option"], paper["true"])
    layers = list(range(model.cfg.n_layers))
    with torch.no_grad():
        clean = model(prompt)
        for label, knockout in TARGETS[target].items():
            src, dst = PAPER_EDGES[label]
            ours = model(prompt, interventions=[knockout(layers)])
            ref = reference_logits(model, prompt, {layer: [(paper[src], paper[dst])] for layer in layers})
            assert (ours - ref).abs().max() <= 1e-5, label
            assert (ours - clean).abs().max() > 1e-6, label


# ---- saving, and real frame times -----------------------------------------------------------
def test_save_pretrained_keeps_the_tokenizers_exact_behaviour(tmp_path):
    from transformers import AutoTokenizer

    model, prompt = model_of("llava_next_video"), prompt_of("llava_next_video-paper")
    live = model.tokenizer(prompt.text)["input_ids"]
    model.tokenizer.save_pretrained(tmp_path / "plain")
    # transformers alone drops `legacy`: the space SentencePiece puts after <video> is lost
    assert AutoTokenizer.from_pretrained(tmp_path / "plain")(prompt.text)["input_ids"] != live
    model.save_pretrained(tmp_path / "saved")
    reloaded = HookedVideoLLM.from_pretrained(tmp_path / "saved", attn_implementation="eager")
    again = reloaded.prepare(random_video(8), QUESTION, OPTIONS, answer=1, fps=2.0, prompt_format="paper")
    assert torch.equal(again.input_ids, prompt.input_ids)
    with torch.no_grad():
        assert torch.equal(reloaded(again), model(prompt))


def test_the_llava_hf_tokenizer_is_the_llama_one_plus_its_media_tokens():
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(real_inputs() / "llava-next-video-7b-32k-hf")
    text = prompt_of("llava_next_video-paper").text
    assert saved(text)["input_ids"] == real_tokenizer(REAL_TOKENS["llava_next_video"])(text)["input_ids"]


def test_qwen3_vl_is_told_a_real_clips_decoder_times():
    video = load_video(real_inputs() / "videos" / "bikes.mp4", num_frames=4, start=6.0, end=8.0)
    model = model_of("qwen3_vl")
    prompt = model.prepare(video, QUESTION, OPTIONS, "Best option:(", PAPER_SYSTEM)
    shown = re.findall(r"<(\d+\.\d) seconds>", model.tokenizer.decode(prompt.input_ids[0].tolist()))
    pts = video.timestamps
    assert pts[0] >= 6.0
    assert shown == [f"{(pts[0] + pts[1]) / 2:.1f}", f"{(pts[2] + pts[3]) / 2:.1f}"]
    assert [f"{unit.timestamp:.1f}" for unit in prompt.layout.frames] == shown


@pytest.mark.parametrize("case", [c for c, (family, _) in CASES.items() if family in SENTENCEPIECE])
def test_a_prompt_has_one_bos_also_when_the_template_writes_it(case):
    model, prompt = model_of(CASES[case][0]), prompt_of(case)
    bos = model.tokenizer.bos_token_id
    ids = prompt.input_ids[0].tolist()
    assert ids[0] == bos and ids.count(bos) == 1, model.tokenizer.convert_ids_to_tokens(ids[:4])


def test_a_combining_accent_stays_in_the_group_text_on_an_nfc_tokenizer():
    import unicodedata

    model = model_of("qwen2_5_vl")
    question = "Was it the cafe\u0301?"  # e + a combining acute accent: Qwen's tokenizer composes it to é
    prompt = model.prepare(random_video(8), question, OPTIONS, "Best option:(", PAPER_SYSTEM, answer=1, fps=2.0)
    decoded = model.tokenizer.decode(prompt.input_ids[0][prompt.layout["question_text"]].tolist()).strip()
    assert decoded == "Was it the caf\u00e9?"
    assert prompt.layout.texts["question_text"] == question
    assert unicodedata.normalize("NFC", prompt.layout.texts["question_text"]) == decoded
