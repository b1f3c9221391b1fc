"""The ``videolens`` command: run the paper's analyses on a model and write a report.

    videolens demo                                   # the whole story on the toy model, on CPU
    videolens flow --target cross-frame --n-per-task 8 --out runs/flow
    videolens flow --video clip.mp4 --question "What happened first?" --options "A cat ran." "A dog sat." --answer 0
    videolens pathways --spec 7b                      # effective pathways + random baseline
    videolens lens                                    # logit lens on video tokens, vocabulary frequency
    videolens answer-prob
    videolens info --model llava-hf/LLaVA-NeXT-Video-7B-hf

Every command writes CSV and JSONL tables and one self-contained ``report.html`` into
``--out``. The default model is the shipped toy model and the default data its synthetic
tasks. Bad input gives one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videolens.errors import VideoLensError
from videolens.models import DEFAULT_MODEL, SHIPPED

#: Commands that read no ground truth (the rest refuse a --video without --answer).
NO_TRUTH_NEEDED = ("lens", "info")
TARGET_NAMES = ("cross-frame", "vql-to-ql", "question-and-options-to-last", "vq-to-true-opt")


class CLIError(Exception):
    """A problem with the command's input, reported as one line."""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="videolens", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, data: bool = True) -> None:
        p.add_argument(
            "--model", default=DEFAULT_MODEL, help=f"hub id, local folder or shipped name (default {DEFAULT_MODEL})"
        )
        p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
        p.add_argument(
            "--dtype", default=None, help="float32, bfloat16, float16 (default float32 on CPU, bfloat16 on GPU)"
        )
        p.add_argument("--out", type=Path, default=None, help="output folder (default runs/<command>-<time>)")
        if not data:
            return
        p.add_argument("--n-per-task", type=int, default=8, help="synthetic samples per task (default 8)")
        p.add_argument("--tasks", nargs="+", default=None, help="synthetic tasks to use (default all)")
        p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
        p.add_argument("--video", type=Path, help="a video file: analyse this one sample instead of synthetic data")
        p.add_argument("--question", help="the question about --video")
        p.add_argument("--options", nargs="+", help="the answer options")
        p.add_argument("--answer", help="the true option (index, letter or text)")
        p.add_argument("--num-frames", type=int, default=8)
        p.add_argument("--sample-mode", choices=["correct", "wrong", "all"], default="all")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    p = sub.add_parser("demo", help="run every analysis on the toy model and write a report (CPU, < 2 min)")
    common(p)
    p.set_defaults(n_per_task=10)
    p = sub.add_parser("flow", help="information-flow knockout sweep")
    common(p)
    p.add_argument("--target", choices=TARGET_NAMES, nargs="+", default=["cross-frame", "vql-to-ql"])
    p.add_argument("--window", type=int, default=None, help="layers per knockout window (default: n_layers // 3)")
    p.add_argument("--window-style", choices=["center", "inverse", "top_down", "bottom_up"], default="center")
    p = sub.add_parser("pathways", help="effective pathways and the random baseline")
    common(p)
    p.add_argument("--spec", default="7b", help="paper spec scaled to the model: 7b, 13b, internvl, videollama3")
    p = sub.add_parser("lens", help="logit lens on video tokens and vocabulary frequency")
    common(p)
    p = sub.add_parser("answer-prob", help="layer-wise probability of the true and false options")
    common(p)
    p = sub.add_parser("info", help="print the model's configuration and one prompt's layout")
    common(p, data=False)
    return ap


def _load(args: argparse.Namespace) -> Any:
    import torch

    from videolens.core.hooked import HookedVideoLLM

    name = args.model
    local = Path(name).expanduser()
    if not local.exists() and name not in SHIPPED and (os.environ.get("HF_HUB_OFFLINE") == "1" or "/" not in name):
        raise CLIError(
            f"Unknown model {name!r}: not a local folder, not a shipped model ({', '.join(SHIPPED)}), "
            "and not a hub id that can be reached."
        )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    try:
        return HookedVideoLLM.from_pretrained(str(local) if local.exists() else name, dtype=dtype, device=device)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CLIError(f"Could not load model {name!r}: {first}") from exc


def _samples(args: argparse.Namespace) -> list[Any]:
    from videolens.data.sample import Sample
    from videolens.data.synthetic import TASKS, make_dataset
    from videolens.io.video import load_video

    if args.video is not None:
        if not args.question or not args.options:
            raise CLIError("--video needs --question and --options (and --answer for most analyses).")
        if args.answer is None and args.command not in NO_TRUTH_NEEDED:
            raise CLIError(f"`videolens {args.command}` needs the true option: pass --answer (its text, letter or index).")
        answer = _cli_answer(args.options, args.answer)  # fail before the (slow) video and model loading
        video = load_video(args.video, num_frames=args.num_frames)
        return [Sample(video, args.question, args.options, answer, task="video", id=args.video.name)]
    if any(v is not None for v in (args.question, args.options, args.answer)):
        raise CLIError("--question/--options/--answer describe a --video; pass --video too.")
    tasks = args.tasks or list(TASKS)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise CLIError(f"Unknown task(s) {unknown}; synthetic tasks are {', '.join(TASKS)}.")
    return make_dataset(args.n_per_task, seed=args.seed, tasks=tasks)


def _cli_answer(options: list[str], answer: str | None) -> int | None:
    """The true option's index: an option's text first, then a letter, then a 0-based index.

    ``--options 1 2 3 4 --answer 2`` is therefore option B (the text "2"), as in the Python
    API; a digit is an index only when no option has that text.
    """
    from videolens.core.prompt import resolve_answer
    from videolens.errors import LayoutError

    try:
        return resolve_answer(options, answer)
    except LayoutError:
        if answer is not None and answer.strip().isdigit():
            return resolve_answer(options, int(answer))
        raise


def _out(args: argparse.Namespace) -> Path:
    out = args.out or Path("runs") / f"{args.command}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _accuracy_figure(df: Any) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=df["task"], y=df["accuracy"], text=df["accuracy"].round(1), textposition="auto"))
    fig.update_layout(
        title="Accuracy per task (no intervention)",
        yaxis_title="accuracy (%)",
        yaxis_range=[0, 100],
        template="plotly_white",
    )
    return fig


def run_flow(model: Any, samples: list, out: Path, args: argparse.Namespace, targets: Sequence[str]) -> list:
    from videolens.analyses import flow_accuracy, information_flow
    from videolens.viz.plots import plot_flow_accuracy, plot_information_flow

    figures = []
    window = args.window if getattr(args, "window", None) else max(1, model.cfg.n_layers // 3)
    for target in targets:
        df = information_flow(
            model,
            samples,
            target,
            window=window,
            window_style=getattr(args, "window_style", "center"),
            sample_mode=args.sample_mode,
            out=out / f"flow_{target}.jsonl",
            progress=not args.no_progress,
        )
        if df.empty:
            print(f"  {target}: no samples left after --sample-mode {args.sample_mode}")
            continue
        df.drop(columns=["layers_blocked"]).to_csv(out / f"flow_{target}.csv", index=False)
        acc = flow_accuracy(df)
        acc.to_csv(out / f"flow_{target}_accuracy.csv", index=False)
        by_task = df["pathway"].nunique() == 1 and df["task"].nunique() > 1
        title = f"Accuracy under knockout: {target}" + (" (per task)" if by_task else "")
        figures += [
            plot_information_flow(df),
            plot_flow_accuracy(acc, df.attrs["base_accuracy"], hue="task" if by_task else "pathway", title=title),
        ]
    return figures


def run_pathways(model: Any, samples: list, out: Path, args: argparse.Namespace) -> list:
    from videolens.analyses import PAPER_PATHWAYS, effective_pathways, pathway_summary
    from videolens.viz.plots import plot_effective_pathways

    spec = PAPER_PATHWAYS[args.spec].scaled(model.cfg.n_layers)
    df = effective_pathways(model, samples, spec, out=out / "pathways.jsonl", progress=not args.no_progress)
    df.to_csv(out / "pathways.csv", index=False)
    summary = pathway_summary(df)
    summary.to_csv(out / "pathways_summary.csv", index=False)
    return [plot_effective_pathways(summary)]


def run_answer_prob(model: Any, samples: list, out: Path, args: argparse.Namespace) -> list:
    from videolens.analyses import answer_probability
    from videolens.viz.plots import plot_answer_probability

    df = answer_probability(
        model, samples, sample_mode=args.sample_mode, out=out / "answer_prob.jsonl", progress=not args.no_progress
    )
    if df.empty:
        return []
    df.drop(columns=["top_tokens"]).to_csv(out / "answer_prob.csv", index=False)
    return [plot_answer_probability(df)]


def run_lens(model: Any, samples: list, out: Path, args: argparse.Namespace) -> list:
    from videolens.analyses.common import prompt_for
    from videolens.analyses.lens import PAPER_BAGS, LogitLens, vocab_frequency
    from videolens.data.synthetic import WORD_BAGS
    from videolens.viz.lens import plot_frame_words, plot_vocab_frequency

    lens = LogitLens(model, projection="unembed", apply_final_norm=True)
    prompts = [prompt_for(model, s) for s in samples]
    # The words to count follow the data: the synthetic tasks' own words, or the paper's bags for real videos.
    bags = PAPER_BAGS if args.video is not None else WORD_BAGS
    freq = vocab_frequency(
        lens, prompts, bags, bin_size=max(1, model.cfg.n_layers // 4), site="output", progress=not args.no_progress
    )
    freq.to_csv(out / "vocab_frequency.csv", index=False)
    words = lens.video_tokens(prompts[0], site="output", top_k=1)
    words.to_csv(out / "video_token_words.csv", index=False)
    return [
        plot_vocab_frequency(freq),
        plot_frame_words(
            words, prompts[0].frames, bin_size=max(1, model.cfg.n_layers // 4), n_layers=model.cfg.n_layers
        ),
    ]


def run_baseline(model: Any, samples: list, out: Path, args: argparse.Namespace) -> tuple[list, Any]:
    """Clean accuracy per task (a table and a bar chart)."""
    import pandas as pd
    import torch

    from videolens.analyses.common import option_token_ids, prompt_for
    from videolens.analyses.correctness import is_correct

    rows = []
    with torch.no_grad():
        for s in samples:
            p = prompt_for(model, s)
            option_token_ids(model, p)  # the option letters must be separate next tokens
            predicted = int(model(p)[0, -1].argmax())
            rows.append({"task": s.task, "correct": is_correct(model.tokenizer, predicted, p.answer_letter)})
    acc = pd.DataFrame(rows).groupby("task", sort=False)["correct"].mean().mul(100).rename("accuracy").reset_index()
    acc.to_csv(out / "accuracy.csv", index=False)
    return [_accuracy_figure(acc)], acc


def run_attention(model: Any, samples: list, out: Path, args: argparse.Namespace) -> list:
    from videolens.analyses import attention_maps
    from videolens.viz.plots import plot_attention_maps

    df = attention_maps(model, samples[: min(len(samples), 5)], progress=not args.no_progress)
    df.to_csv(out / "attention_maps.csv", index=False)
    return [plot_attention_maps(df)]


def _report(figures: list, out: Path, title: str, notes: list[str]) -> Path:
    from videolens.viz.plots import write_report

    path = write_report(figures, out / "report.html", title=title, notes=notes)
    print(f"report: {path}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (CLIError, VideoLensError) as exc:
        print(f"videolens: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("videolens: interrupted (results written so far are in the output folder)", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    start = time.time()
    if args.command == "info":
        model = _load(args)
        print(model)
        return 0
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight loading is quick; keep the terminal for our own bars
    hf_logging.set_verbosity_error()
    try:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()  # hub retries become our one-line error instead
    except ImportError:  # pragma: no cover
        pass
    if args.command == "pathways":
        from videolens.analyses import PAPER_PATHWAYS

        if args.spec not in PAPER_PATHWAYS:
            raise CLIError(f"Unknown spec {args.spec!r}; use one of {', '.join(PAPER_PATHWAYS)}.")
    samples = _samples(args)
    model = _load(args)
    out = _out(args)
    notes = [f"model: {args.model}", f"samples: {len(samples)}"]
    figures: list = []
    if args.command in ("demo",):
        figs, acc = run_baseline(model, samples, out, args)
        print(acc.to_string(index=False))
        figures += figs
    if args.command in ("demo", "flow"):
        figures += run_flow(model, samples, out, args, getattr(args, "target", ["cross-frame", "vql-to-ql"]))
    if args.command in ("demo", "pathways"):
        if args.command == "demo":
            args.spec = "7b"
        figures += run_pathways(model, samples, out, args)
    if args.command in ("demo", "answer-prob"):
        figures += run_answer_prob(model, samples, out, args)
    if args.command in ("demo", "lens"):
        figures += run_lens(model, samples, out, args)
    if args.command == "demo":
        figures += run_attention(model, samples, out, args)
    _report(figures, out, f"videolens {args.command}", notes)
    print(f"done in {time.time() - start:.0f}s; tables and report in {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
