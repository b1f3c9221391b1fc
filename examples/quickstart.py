"""Quickstart: hooks, layout and knockouts on a tiny model, on CPU, offline.

Run:  python examples/quickstart.py
With a real checkpoint, replace the first lines by
``model = HookedVideoLLM.from_pretrained("llava-hf/LLaVA-NeXT-Video-7B-hf", dtype="bfloat16", device="cuda")``
and ``video = load_video("clip.mp4", num_frames=8)``.
"""

from __future__ import annotations

import torch

from videolens import PAPER_SYSTEM, EdgeKnockout, HookedVideoLLM
from videolens.testing import build_tiny_model, random_video


def main() -> None:
    hf_model, processor = build_tiny_model("qwen2_5_vl", num_layers=4)
    model = HookedVideoLLM.from_hf(hf_model, processor)
    print(model)

    prompt = model.prepare(
        random_video(8),
        "Which shape moved first?",
        options=["the red square", "the blue circle"],
        answer=0,
        answer_prefix="Best option:(",
        system=PAPER_SYSTEM,
        fps=2.0,
    )
    print(prompt.layout.summary())

    with torch.no_grad():
        logits, cache = model.run_with_cache(prompt, names_filter=lambda n: n.endswith("hook_pattern"), device="cpu")
        pattern = cache["blocks.2.attn.hook_pattern"][0]  # (head, q_pos, k_pos)
        last_to_video = pattern[:, prompt.layout["last"]][..., prompt.layout["video"]].sum(-1).mean()
        print(f"layer 2: the last token puts {last_to_video:.1%} of its attention on the video")

        ko = EdgeKnockout("video", "last", layers=range(0, 4)) + EdgeKnockout.cross_frame(layers=range(0, 2))
        knocked = model(prompt, interventions=[ko])
        p_clean = logits[0, -1].softmax(-1)
        p_ko = knocked[0, -1].softmax(-1)
        print(
            f"{ko}\n  total variation distance of the next-token distribution: {0.5 * (p_clean - p_ko).abs().sum():.4f}"
        )
    print("generated:", repr(model.generate(prompt, max_new_tokens=5, interventions=[ko])))


if __name__ == "__main__":
    main()
