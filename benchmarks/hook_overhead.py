"""What hooks cost: a forward of the HF model, of videolens with no hooks, and with vision hooks.

    python benchmarks/hook_overhead.py [--repeats 20] [--out hook_overhead.json]

On the shipped toy model (CPU by default) it times, for the same prompt, HF's own forward,
``model(prompt)`` with no hook at all (the vision tower gets no PyTorch hook then), the same
with one ``vision.`` hook active, and with a cache of every hook point. Medians of
``--repeats`` runs after a warm-up; one thread, so the numbers do not depend on the load.
"""

from __future__ import annotations

import argparse
import json

import torch
from common import median_seconds  # noqa: I001  (run from the benchmarks folder or with it on sys.path)

from videolens import HookedVideoLLM
from videolens.analyses.common import prompt_for
from videolens.data.synthetic import make_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = HookedVideoLLM.from_pretrained("videolens/toy-moving-shapes")
    prompt = prompt_for(model, make_dataset(1, seed=0, tasks=["direction"])[0])
    inputs = model.hf_inputs(prompt.inputs)
    vision = [(name, lambda x, hook: x) for name in model.hook_dict if name.startswith("vision.blocks.0.")]
    with torch.no_grad():
        rows = {
            "hf_forward": median_seconds(lambda: model.hf_model(**inputs), args.repeats),
            "videolens_no_hooks": median_seconds(lambda: model(prompt), args.repeats),
            "videolens_one_vision_block_hooked": median_seconds(
                lambda: model.run_with_hooks(prompt, fwd_hooks=vision), args.repeats
            ),
            "videolens_cache_everything": median_seconds(lambda: model.run_with_cache(prompt), args.repeats),
        }
    for name, seconds in rows.items():
        print(f"{name:36s} {1000 * seconds:8.2f} ms  ({seconds / rows['hf_forward']:.2f}x HF)")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"seq_len": prompt.seq_len, "seconds": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
