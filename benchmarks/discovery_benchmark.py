"""Pathway discovery on the 7B-shaped model: time and exact forwards of the search vs a brute-force sweep.

    python benchmarks/discovery_benchmark.py --size 7b --device cuda --out results.json
    python benchmarks/discovery_benchmark.py --toy --n-per-task 4 --out toy.json   # the toy-model claims, CPU

For one paper-style prompt (8 frames x 144 video tokens, the paper's system prompt, four
options) of the random-weight LLaVA-NeXT-Video-7B-shaped model, it runs
:func:`videolens.discovery.discover_pathway` with ``criterion="prediction"`` (keep the
clean model's top token: random weights have no task), and times the attribution pass
and a batch of exact single-edge knockouts, from which the brute-force sweep over the
same edges (one exact knockout per (group pair, layer) edge) is extrapolated.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import build_model, environment, paper_prompt, sync  # noqa: I001  (run from the benchmarks folder or with it on sys.path)

from videolens.discovery import candidate_edges, discover_pathway, edge_attribution, exact_edge_effects
from videolens.engine.sweep import SweepEngine


def toy_claims(n_per_task: int, seed: int, out: Path | None) -> dict:
    """The toy-model claims of docs/discovery.md: accuracy, suppressed share, baselines, cross-frame edges, Spearman."""
    from videolens import HookedVideoLLM
    from videolens.data.synthetic import STATIC_TASKS, TASKS, make_dataset
    from videolens.discovery import attribution_agreement, validate_attribution

    model = HookedVideoLLM.from_pretrained("videolens/toy-moving-shapes")
    samples = make_dataset(n_per_task, seed=seed)
    t = time.perf_counter()
    found = discover_pathway(model, samples, tolerance=2.0, max_rounds=12, progress=False)
    search_s = time.perf_counter() - t
    table = found.summary.pivot(index="task", columns="condition", values="accuracy").round(1)
    share = found.summary.groupby("condition")["suppressed_percent"].mean().round(2)
    ranges = found.pathway.layer_ranges()
    per_task_cross = {}
    for task in TASKS:  # the same search on one task alone: does it keep early cross-frame attention?
        alone = discover_pathway(
            model, [s for s in samples if s.task == task], tolerance=2.0, max_rounds=6, progress=False
        )
        per_task_cross[task] = alone.pathway.layer_ranges().get("cross_frame", [])
    t = time.perf_counter()
    agreement = attribution_agreement(validate_attribution(model, samples, metric="log_odds"))
    agreement_lp = attribution_agreement(validate_attribution(model, samples, metric="logprob"))
    result = {
        "samples_per_task": n_per_task,
        "seed": seed,
        "search_s": round(search_s, 1),
        "exact_forwards_per_sample": found.n_exact_per_sample,
        "attribution_passes_per_sample": found.n_attribution_per_sample,
        "brute_force_forwards_per_sample": found.n_brute_force_per_sample,
        "accuracy": table.to_dict(),
        "suppressed_percent": share.to_dict(),
        "pathway_open_ranges": {k: v for k, v in ranges.items() if v},
        "cross_frame_open_per_task_search": per_task_cross,
        "static_tasks": list(STATIC_TASKS),
        "spearman_log_odds": agreement.set_index("task")["spearman"].round(3).to_dict(),
        "spearman_logprob": agreement_lp.set_index("task")["spearman"].round(3).to_dict(),
        "validation_s": round(time.perf_counter() - t, 1),
    }
    print(json.dumps(result, indent=1), flush=True)
    if out is not None:
        out.write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="the toy-model claims instead (CPU, minutes)")
    ap.add_argument("--n-per-task", type=int, default=4)
    ap.add_argument("--size", default="7b")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--max-rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--sample-edges", type=int, default=64, help="single-edge knockouts timed for the extrapolation")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.toy:
        toy_claims(args.n_per_task, 2024, args.out)
        return
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    t0 = time.perf_counter()
    model = build_model(args.size, dtype, args.device, attn_implementation="eager")
    prompt = paper_prompt(model, args.size, args.frames)
    build_s = time.perf_counter() - t0
    edges = candidate_edges([prompt.layout], model.cfg.n_layers)
    print(f"prompt {prompt.seq_len} tokens, {len(edges)} candidate edges, model built in {build_s:.0f}s", flush=True)

    with torch.no_grad():
        model(prompt)  # warm-up
    sync(args.device)
    t = time.perf_counter()
    edge_attribution(model, prompt, edges, metric="log_odds")
    sync(args.device)
    attribution_s = time.perf_counter() - t
    engine = SweepEngine(model, prompt)
    picked = edges[:: max(1, len(edges) // args.sample_edges)][: args.sample_edges]
    sync(args.device)
    t = time.perf_counter()
    exact_edge_effects(model, prompt, picked, engine=engine)
    sync(args.device)
    per_edge_s = (time.perf_counter() - t) / len(picked)
    print(f"attribution {attribution_s:.2f}s, exact single-edge knockout {per_edge_s * 1e3:.1f} ms each", flush=True)

    sync(args.device)
    t = time.perf_counter()
    found = discover_pathway(
        model, [prompt], criterion="prediction", tolerance=0.0, batch=args.batch, max_rounds=args.max_rounds,
        progress=False,
    )  # fmt: skip
    sync(args.device)
    total_s = time.perf_counter() - t
    rows = found.summary.set_index("condition")
    result = {
        **environment(args.device, args.size, dtype),
        "seq_len": prompt.seq_len,
        "n_layers": model.cfg.n_layers,
        "candidate_edges": len(edges),
        "max_rounds": args.max_rounds,
        "batch": args.batch,
        "search_s": round(found.seconds, 2),
        "search_and_evaluation_s": round(total_s, 2),
        "exact_forwards": found.n_exact_per_sample,
        "attribution_passes": found.n_attribution_per_sample,
        "brute_force_forwards": found.n_brute_force_per_sample,
        "attribution_pass_s": round(attribution_s, 3),
        "exact_single_edge_ms": round(per_edge_s * 1e3, 2),
        "brute_force_sweep_s_extrapolated": round(per_edge_s * len(edges), 2),
        "blocked_edges": len(found.pathway.blocked),
        "suppressed_percent": round(float(rows.loc["discovered", "suppressed_percent"]), 2),
        "prediction_kept": bool(found.curve["ok"].any()) if len(found.curve) else None,
    }
    print(json.dumps(result, indent=1), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
