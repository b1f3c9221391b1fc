"""The ``videolens`` command: run the paper's analyses on a model and write a report.

    videolens demo                                   # the whole story on the toy model, on CPU
    videolens flow --target cross-frame --n-per-task 8 --out runs/flow
    videolens flow --dataset tvbench --data-root /data/TVBench --tasks "Action Sequence" --out runs/tvb
    videolens flow --video clip.mp4 --question "What happened first?" --options "A cat ran." "A dog sat." --answer 0
    videolens pathways --spec 7b                      # effective pathways + random baseline
    videolens lens                                    # logit lens on video tokens, vocabulary frequency
    videolens answer-prob
    videolens report runs/tvb                         # rebuild the CSVs and report.html from a run's results
    videolens info --model llava-hf/LLaVA-NeXT-Video-7B-hf

``flow``, ``pathways``, ``answer-prob`` and ``discover`` are *runs*: their ``--out`` folder holds a
manifest and one crash-safe record per sample, a killed run resumes where it stopped when
started again with the same arguments, and under ``torchrun`` the processes share the
samples. Every command writes CSV tables and one self-contained ``report.html``. The
default model is the shipped toy model and the default data its synthetic tasks. Bad
input gives one line on stderr and exit status 2, before anything slow is loaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from videolens.errors import VideoLensError
from videolens.models import DEFAULT_MODEL, SHIPPED

#: Commands that read no ground truth (the rest refuse a --video without --answer).
NO_TRUTH_NEEDED = ("lens", "info")
TARGET_NAMES = ("cross-frame", "vql-to-ql", "question-and-options-to-last", "vq-to-true-opt")
#: Commands whose results are a resumable run (manifest + per-sample records).
RUN_COMMANDS = ("flow", "pathways", "answer-prob", "discover")
DTYPES = ("float32", "bfloat16", "float16")
SYNTHETIC_PER_TASK = {"demo": 10}
#: Seconds to wait for the model hub before saying it cannot be reached.
HUB_TIMEOUT = 3.0


class CLIError(Exception):
    """A problem with the command's input, reported as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"videolens: error: {message.strip().splitlines()[-1]}\n")


# ---------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"hub id, local folder or shipped name (default {DEFAULT_MODEL})"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps (default: cuda if available)")
    p.add_argument("--dtype", default=None, choices=DTYPES, help="default float32 on CPU, bfloat16 on GPU")
    p.add_argument(
        "--device-map",
        default=None,
        choices=("auto", "balanced", "balanced_low_0", "sequential"),
        help="spread a model too big for one GPU over every visible GPU (accelerate); instead of --device",
    )
    p.add_argument(
        "--compile-blocks",
        action="store_true",
        help="fuse the decoder layers with torch.compile (GPU sweeps; the first prompt compiles, tens of seconds)",
    )


def _data_flags(p: argparse.ArgumentParser, sample_mode: bool) -> None:
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/<command>-<time>)")
    p.add_argument("--dataset", help="a benchmark: tvbench, mvbench, tomato, videomme, longvideobench, nextqa, generic")
    p.add_argument("--data-root", type=Path, help="where --dataset was downloaded (generic: the .jsonl/.csv file)")
    p.add_argument("--skip-missing", action="store_true", help="skip --dataset samples whose video is missing (warned)")
    p.add_argument(
        "--n-per-task", type=int, default=None, help="samples per task (synthetic default 8, demo 10; dataset: all)"
    )
    p.add_argument("--tasks", nargs="+", default=None, help="tasks to use: names or ids (default all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and of torch (default 0)")
    p.add_argument("--video", type=Path, help="a video file: analyse this one sample")
    p.add_argument("--question", help="the question about --video")
    p.add_argument("--options", nargs="+", help="the answer options")
    p.add_argument("--answer", help="the true option (text, letter or index)")
    p.add_argument(
        "--num-frames", type=int, default=None, help="frames per video, as the paper's code samples them (default 8)"
    )
    if sample_mode:
        p.add_argument("--sample-mode", choices=["correct", "wrong", "all"], default="all")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _run_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run in --out (it must hold the same run)")
    group.add_argument("--overwrite", action="store_true", help="delete the run in --out and start again")


def _parser() -> _Parser:
    ap = _Parser(prog="videolens", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, sample_mode: bool = True, run: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        _model_flags(p)
        _data_flags(p, sample_mode)
        if run:
            _run_flags(p)
        return p

    command("demo", "run every analysis on the toy model and write a report (CPU, < 2 min)")
    p = command("flow", "information-flow knockout sweep", run=True)
    p.add_argument("--target", choices=TARGET_NAMES, nargs="+", default=["cross-frame", "vql-to-ql"])
    p.add_argument("--window", type=int, default=None, help="layers per knockout window (default: n_layers // 3)")
    p.add_argument("--window-style", choices=["center", "inverse", "top_down", "bottom_up"], default="center")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="sweep positions (default: every layer)")
    p = command("pathways", "effective pathways and the random baseline", sample_mode=False, run=True)
    p.add_argument("--spec", default="7b", help="paper spec scaled to the model: 7b, 13b, internvl, videollama3")
    p = command("discover", "find the sparsest effective pathway automatically", sample_mode=False, run=True)
    p.add_argument("--tolerance", type=float, default=2.0, help="largest accuracy drop per task, points (default 2)")
    p.add_argument("--criterion", choices=["answer", "prediction"], default="answer")
    p.add_argument("--method", choices=["linear", "ig"], default="linear", help="attribution ordering the edges")
    p.add_argument("--batch", type=int, default=8, help="prefixes confirmed per batched sweep (default 8)")
    p.add_argument("--max-rounds", type=int, default=8, help="attribution rounds of the search (default 8)")
    p.add_argument("--spec", default="7b", help="the paper's spec to compare with: 7b, 13b, internvl, videollama3")
    p = command("lens", "logit lens on video tokens and vocabulary frequency", sample_mode=False)
    p.add_argument(
        "--paper",
        action="store_true",
        help="the paper's logit lens (Figs. 4-5): input embeddings, no final norm, its layer entries "
        "(site 'paper'), 5-layer bins, words with >= 100 hits; default: the output head with the norm",
    )
    command("answer-prob", "layer-wise probability of the true and false options", run=True)
    p = sub.add_parser("report", help="rebuild the CSV tables and report.html of a run from its results")
    p.add_argument("folder", type=Path, help="the run's --out folder")
    p = sub.add_parser("info", help="print the model's configuration")
    _model_flags(p)
    return ap


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, turning an option of another command into one line that says where it belongs."""
    ap = _parser()
    args, extra = ap.parse_known_args(argv)
    if extra:
        flag = next((e for e in extra if e.startswith("-")), extra[0])
        owners = [name for name, p in _subparsers(ap).items() if flag.split("=")[0] in p._option_string_actions]
        where = f"; it is an option of: {', '.join(owners)}" if owners else ""
        kind = "option" if flag.startswith("-") else "argument"
        ap.error(f"{kind} {flag!r} does not apply to `videolens {args.command}`{where}")
    return args


def _subparsers(ap: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _check_args(args: argparse.Namespace) -> None:
    """Every check that needs nothing loaded: numbers, the data source, text, the output folder."""
    for name, value in [
        ("--n-per-task", getattr(args, "n_per_task", None)),
        ("--window", getattr(args, "window", None)),
    ]:
        if value is not None and value < 1:
            raise CLIError(f"{name} {value} must be 1 or more.")
    if args.command == "discover":
        _check_discover(args)
    if getattr(args, "device_map", None) and getattr(args, "device", None):
        raise CLIError(
            f"--device {args.device} and --device-map {args.device_map} both say where the model goes; give one."
        )
    if getattr(args, "num_frames", None) is not None and args.num_frames < 1:
        raise CLIError(f"--num-frames {args.num_frames} must be 1 or more.")
    if getattr(args, "seed", 0) < 0:
        raise CLIError(f"--seed {args.seed} must be 0 or more.")
    if any(layer < 0 for layer in getattr(args, "layers", None) or []):
        raise CLIError(f"--layers {args.layers}: layers are 0-indexed, so none can be negative.")
    if hasattr(args, "video"):
        _check_source(args)
    if getattr(args, "out", None) is not None:
        _check_writable(args.out)


def _check_discover(args: argparse.Namespace) -> None:
    from videolens.analyses.pathways import PAPER_PATHWAYS

    if not args.tolerance >= 0:
        raise CLIError(f"--tolerance {args.tolerance} must be 0 or more (accuracy points).")
    for name, value in [("--batch", args.batch), ("--max-rounds", args.max_rounds)]:
        if value < 1:
            raise CLIError(f"{name} {value} must be 1 or more.")
    if args.spec.strip().lower() not in PAPER_PATHWAYS:
        raise CLIError(f"--spec {args.spec!r}: use one of {', '.join(PAPER_PATHWAYS)}.")


def _check_source(args: argparse.Namespace) -> None:
    """Exactly one data source (synthetic, --video, --dataset) with only its own flags."""
    from videolens.data.annotations import find_placeholder

    if args.dataset is not None and args.video is not None:
        raise CLIError("Pass either --dataset or --video, not both.")
    if args.dataset is None:
        for flag, given in [("--data-root", args.data_root is not None), ("--skip-missing", args.skip_missing)]:
            if given:
                raise CLIError(f"{flag} goes with --dataset; pass --dataset NAME too (see docs/datasets.md).")
    if args.dataset is not None or args.video is None:
        if any(v is not None for v in (args.question, args.options, args.answer)):
            raise CLIError("--question/--options/--answer describe a --video; pass --video too.")
    if args.dataset is not None:
        if args.data_root is None:
            raise CLIError(f"--dataset {args.dataset} needs --data-root: the folder the benchmark was downloaded to.")
        if not args.data_root.exists():
            raise CLIError(
                f"--data-root {args.data_root} does not exist; pass the folder {args.dataset} was downloaded to."
            )
    if args.video is not None:
        for flag, value in [("--tasks", args.tasks), ("--n-per-task", args.n_per_task)]:
            if value is not None:
                raise CLIError(f"{flag} selects synthetic or benchmark samples; it does not apply to one --video.")
        if not args.question or not args.options:
            raise CLIError("--video needs --question and --options (and --answer for most analyses).")
        if args.answer is None and args.command not in NO_TRUTH_NEEDED:
            raise CLIError(
                f"`videolens {args.command}` needs the true option: pass --answer (its text, letter or index)."
            )
        for flag, text in [
            ("--question", args.question),
            ("--answer", args.answer),
            *(("--options", o) for o in args.options),
        ]:
            token = find_placeholder(text or "")
            if token:
                raise CLIError(
                    f"{flag} contains {token!r}, a model's placeholder or control token; videolens places the video itself, so remove it."
                )


def _check_writable(out: Path) -> None:
    """``--out`` must be a folder, or creatable in a writable place."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file; pass a folder (it is created if needed).")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise CLIError(f"--out {out} cannot be created: {probe} is a file, not a folder.")
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".videolens-write-test-")
    except OSError as exc:
        raise CLIError(f"--out {out} is not writable ({probe}: {exc.strerror}); choose another folder.") from None
    os.close(fd)
    os.unlink(name)


def _device(requested: str | None) -> str:
    """The device to use, refused at once when it is not one this machine has."""
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError):
        raise CLIError(f"--device {requested!r} is not a device; use cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"--device {requested}: no CUDA GPU is available on this machine; use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CLIError(f"--device {requested}: this machine has {torch.cuda.device_count()} GPU(s).")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"--device {requested}: MPS is not available on this machine; use --device cpu.")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise CLIError(f"--device {requested}: videolens runs on cpu, cuda or mps.")
    return requested


def _hub_reachable() -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=HUB_TIMEOUT).close()
    except urllib.error.HTTPError:
        return True  # it answered
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True


def _cached_snapshot(repo_id: str) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached, or not a valid repo id: either way nothing to load offline
        return None


def _model_source(name: str) -> str:
    """What to load for ``--model``: a checked local folder, a shipped name, a hub id that can be fetched.

    A hub id is refused at once (instead of after the hub client's retries) when the hub
    cannot be reached or ``HF_HUB_OFFLINE`` is set and the model is not in the local cache;
    when it is cached, the cached folder is loaded without contacting the hub.
    """
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            kind = "folder" if local.is_dir() else "file"
            raise CLIError(
                f"--model {name} is a {kind} but not a saved model (no config.json); pass a model folder or hub id."
            )
        return str(local)
    if name in SHIPPED:
        return name
    if name.count("/") != 1 or name.startswith((".", "/")):
        raise CLIError(
            f"Unknown model {name!r}: not a local folder, not a shipped model ({', '.join(SHIPPED)}), "
            "and not a hub id (org/name)."
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    cached = _cached_snapshot(name)
    if not offline and cached is None and _hub_reachable():
        return name
    if cached is not None:
        return cached
    why = "HF_HUB_OFFLINE is set" if offline else "the model hub cannot be reached"
    raise CLIError(
        f"Cannot load model {name!r}: {why} and it is not in the local cache; download it first "
        f"(`hf download {name}`) or pass a local folder."
    )


# ---------------------------------------------------------------------------------------
# Data and model
# ---------------------------------------------------------------------------------------


def _samples(args: argparse.Namespace) -> list[Any]:
    from videolens.data.annotations import check_sample_text
    from videolens.data.registry import load_dataset
    from videolens.data.sample import Sample
    from videolens.data.synthetic import TASKS, make_dataset

    if args.dataset is not None:
        return load_dataset(
            args.dataset,
            args.data_root,
            tasks=args.tasks,
            n_per_task=args.n_per_task,
            num_frames=args.num_frames,
            skip_missing=args.skip_missing,
        )
    if args.video is not None:
        answer = _cli_answer(args.options, args.answer)  # fail before the (slow) video and model loading
        check_sample_text(args.video.name, args.question, args.options)
        clip = Sample(
            str(args.video), args.question, args.options, answer, "video", args.video.name, num_frames=args.num_frames
        )
        return [clip.decoded()]
    tasks = args.tasks or list(TASKS)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise CLIError(f"Unknown task(s) {unknown}; synthetic tasks are {', '.join(TASKS)}.")
    if len(set(tasks)) != len(tasks):
        raise CLIError(f"--tasks names a task twice ({' '.join(tasks)}); name each once.")
    if args.num_frames is not None:
        raise CLIError(
            "--num-frames applies to --dataset and --video; the synthetic tasks are generated with the "
            "8 frames the toy model was trained on. Drop --num-frames."
        )
    n = args.n_per_task or SYNTHETIC_PER_TASK.get(args.command, 8)
    return make_dataset(n, seed=args.seed, tasks=tasks)


def _cli_answer(options: list[str], answer: str | None) -> int | None:
    """The true option's index: an option's text first, then a letter, then a 0-based index.

    ``--options 1 2 3 4 --answer 2`` is therefore option B (the text "2"), as in the Python
    API; a digit is an index only when no option has that text.
    """
    from videolens.data.annotations import answer_index

    return None if answer is None else answer_index(options, answer)


def _dtype(args: argparse.Namespace, device: str) -> str:
    return args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")


def _load(args: argparse.Namespace, source: str, device: str) -> Any:
    from videolens.core.hooked import HookedVideoLLM

    try:
        device_map = getattr(args, "device_map", None)
        placed = {"device_map": device_map} if device_map else {"device": device}
        model = HookedVideoLLM.from_pretrained(source, dtype=_dtype(args, device), **placed)
    except (OSError, ValueError) as exc:  # a missing folder or file; a config.json transformers cannot read
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CLIError(f"Could not load model {args.model!r}: {first}") from exc
    return model.compile_blocks() if getattr(args, "compile_blocks", False) else model


def _check_layers(args: argparse.Namespace, model: Any) -> None:
    bad = [layer for layer in getattr(args, "layers", None) or [] if layer >= model.cfg.n_layers]
    if bad:
        raise CLIError(f"--layers {bad}: the model has layers 0..{model.cfg.n_layers - 1}.")


def _out(args: argparse.Namespace, create: bool = True) -> Path:
    """The output folder: ``--out`` or a new dated one under ``runs/`` (a run creates its own when it starts)."""
    out = args.out or Path("runs") / f"{args.command}-{time.strftime('%Y%m%d-%H%M%S')}"
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return out


# ---------------------------------------------------------------------------------------
# Runs: flow, pathways, answer-prob
# ---------------------------------------------------------------------------------------


def _dataset_description(args: argparse.Namespace) -> dict[str, Any]:
    from videolens.data.sample import PAPER_NUM_FRAMES

    if args.dataset is not None:
        return {
            "name": args.dataset,
            "root": str(args.data_root.resolve()),
            "tasks": args.tasks,
            "n_per_task": args.n_per_task,
            "skip_missing": args.skip_missing,
            "num_frames": args.num_frames or PAPER_NUM_FRAMES,
            # how frames are chosen (benchmarks with their own rule aside): a run whose frames were
            # chosen otherwise (before "paper" was the default) is another run, not one to resume
            "sampling": "paper",
        }
    if args.video is not None:
        return {"name": "video", "path": str(args.video.resolve()), "question": args.question, "options": args.options,
                "answer": args.answer, "num_frames": args.num_frames or PAPER_NUM_FRAMES, "sampling": "paper"}  # fmt: skip
    return {"name": "synthetic", "tasks": args.tasks, "n_per_task": args.n_per_task, "seed": args.seed}


def _arguments(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """The analysis arguments that change the results, and the tables the command writes."""
    if args.command == "flow":
        chosen = {k: getattr(args, k) for k in ("target", "window", "window_style", "layers", "sample_mode")}
        return chosen, [f"flow_{t}" for t in args.target]
    if args.command == "pathways":
        return {"spec": args.spec.strip().lower()}, ["pathways"]
    if args.command == "discover":
        keys = ("tolerance", "criterion", "method", "batch", "max_rounds")
        return {**{k: getattr(args, k) for k in keys}, "spec": args.spec.strip().lower()}, [
            "discover_search",
            "discover",
        ]
    return {"sample_mode": args.sample_mode}, ["answer_prob"]


def _manifest(args: argparse.Namespace, samples: list[Any], device: str) -> dict[str, Any]:
    from videolens.analyses.common import sample_id
    from videolens.runs.manifest import make_manifest

    arguments, tables = _arguments(args)
    model = str(Path(args.model).expanduser().resolve()) if Path(args.model).expanduser().exists() else args.model
    return make_manifest(
        command=args.command,
        model=model,
        dtype=_dtype(args, device),
        device=device,
        dataset=_dataset_description(args),
        arguments=arguments,
        seed=args.seed,
        sample_ids=[sample_id(s, i) for i, s in enumerate(samples)],
        tables=tables,
    )


def _compute(args: argparse.Namespace, model: Any, samples: list[Any], run: Any, progress: bool) -> None:
    from videolens.analyses import PAPER_PATHWAYS, answer_probability, effective_pathways, information_flow

    if args.command == "flow":
        window = args.window or max(1, model.cfg.n_layers // 3)
        for target in args.target:
            information_flow(
                model, samples, target, window=window, window_style=args.window_style,
                sample_mode=args.sample_mode, layers=args.layers, out=run, progress=progress,
            )  # fmt: skip
    elif args.command == "pathways":
        spec = PAPER_PATHWAYS[args.spec.strip().lower()].scaled(model.cfg.n_layers)
        effective_pathways(model, samples, spec, out=run, progress=progress)
    elif args.command == "discover":
        _discover(args, model, samples, run, progress)
    else:
        answer_probability(model, samples, sample_mode=args.sample_mode, out=run, progress=progress)


def _discover(args: argparse.Namespace, model: Any, samples: list[Any], run: Any, progress: bool) -> None:
    """The pathway search as a run (its rounds and evaluation recorded) and ``pathway.json``.

    The run's report (tables, pathway map, sparsity curve) is built from these like any
    run's, so ``videolens report`` rebuilds it.
    """
    import json

    from videolens.analyses import PAPER_PATHWAYS
    from videolens.discovery import discover_pathway
    from videolens.runs.records import write_atomic

    spec = PAPER_PATHWAYS[args.spec.strip().lower()].scaled(model.cfg.n_layers)
    found = discover_pathway(
        model, samples, tolerance=args.tolerance, criterion=args.criterion, method=args.method, batch=args.batch,
        max_rounds=args.max_rounds, paper_spec=spec, seed=args.seed, out=run, progress=progress,
    )  # fmt: skip
    saved = found.pathway.to_json() | {"paper_share": [[p, layer, s] for (p, layer), s in found.paper_share.items()]}
    write_atomic(run.folder / "pathway.json", json.dumps(saved, indent=1))
    print(found.summary.to_string(index=False))
    print(f"search: {found.n_exact_per_sample} exact forwards per sample (a single-edge sweep: "
          f"{found.n_brute_force_per_sample}), {found.seconds:.0f}s")  # fmt: skip


def _run(args: argparse.Namespace, samples: list[Any], source: str, device: str) -> int:
    """Open (or resume) the run, compute this process' samples, and on rank 0 merge and report."""
    import torch

    from videolens.runs import distributed
    from videolens.runs.report import build_report
    from videolens.runs.run import Run

    if args.command == "discover" and distributed.launched_world_size() > 1:
        raise CLIError("`videolens discover` searches over all samples at once; run it in one process, not torchrun.")
    try:
        joined = distributed.init_from_environment(use_cuda=device.startswith("cuda"))
    except VideoLensError:
        raise
    except (ValueError, RuntimeError) as exc:  # e.g. WORLD_SIZE set without MASTER_ADDR
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CLIError(
            f"Could not join the process group WORLD_SIZE={distributed.launched_world_size()} describes ({first}). "
            "Launch the processes with torchrun, or unset WORLD_SIZE to run in one process."
        ) from exc
    try:
        rank, world = distributed.rank_and_world()
        if world > 1 and device == "cuda":
            device = f"cuda:{distributed.local_rank()}"
        if world > 1 and args.out is None:
            raise CLIError("A run shared by several processes needs --out (the same folder for all of them).")
        mode = "resume" if args.resume else "overwrite" if args.overwrite else "auto"
        run = Run.open(_out(args, create=False) if rank == 0 else args.out, _manifest(args, samples, device), mode=mode)
        try:
            model = _load(args, source, device)
            _check_layers(args, model)
            torch.manual_seed(args.seed)
            _compute(args, model, samples, run, progress=not args.no_progress and rank == 0)
        except (CLIError, VideoLensError):
            run.discard_if_unused()  # a run that recorded nothing leaves the folder as it was
            raise
        distributed.barrier()
        if rank == 0:
            print(f"report: {build_report(run.folder)}")
            print(f"results of {len(samples)} samples in {run.folder}")
    finally:
        if joined:
            distributed.shutdown()
    return 0


# ---------------------------------------------------------------------------------------
# Demo and lens: computed in one go
# ---------------------------------------------------------------------------------------


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


def run_baseline(model: Any, samples: list, out: Path, args: argparse.Namespace) -> tuple[list, Any]:
    """Clean accuracy per task (a table and a bar chart)."""
    import pandas as pd
    import torch

    from videolens.analyses.common import option_token_ids, prompt_for
    from videolens.analyses.correctness import is_correct
    from videolens.runs.report import write_csv

    rows = []
    with torch.no_grad():
        for s in samples:
            p = prompt_for(model, s)
            option_token_ids(model, p)  # the option letters must be separate next tokens
            predicted = int(model(p)[0, -1].argmax())
            rows.append({"task": s.task, "correct": is_correct(model.tokenizer, predicted, p.answer_letter)})
    acc = pd.DataFrame(rows).groupby("task", sort=False)["correct"].mean().mul(100).rename("accuracy").reset_index()
    write_csv(acc, out / "accuracy.csv")
    return [_accuracy_figure(acc)], acc


def run_demo_analyses(model: Any, samples: list, out: Path, args: argparse.Namespace, notes: list) -> list:
    """Information flow, effective pathways and answer probability in memory, written as a run's outputs are."""
    from videolens.analyses import PAPER_PATHWAYS, answer_probability, effective_pathways, information_flow
    from videolens.runs.report import answer_prob_outputs, flow_outputs, pathways_outputs

    progress = not args.no_progress
    figures = []
    for target in ("cross-frame", "vql-to-ql"):
        df = information_flow(
            model,
            samples,
            target,
            window=max(1, model.cfg.n_layers // 3),
            sample_mode=args.sample_mode,
            progress=progress,
        )
        figures += flow_outputs(f"flow_{target}", df, out, notes)
    spec = PAPER_PATHWAYS["7b"].scaled(model.cfg.n_layers)
    figures += pathways_outputs("pathways", effective_pathways(model, samples, spec, progress=progress), out, notes)
    df = answer_probability(model, samples, sample_mode=args.sample_mode, progress=progress)
    return figures + answer_prob_outputs("answer_prob", df, out, notes)


def run_lens(model: Any, samples: list, out: Path, args: argparse.Namespace) -> list:
    from videolens.analyses.common import prompt_for
    from videolens.analyses.lens import PAPER_BAGS, LogitLens, vocab_frequency
    from videolens.data.prefetch import prefetch_decoded
    from videolens.data.synthetic import WORD_BAGS
    from videolens.runs.report import write_csv
    from videolens.viz.lens import plot_frame_words, plot_vocab_frequency

    paper = getattr(args, "paper", False)
    if paper:  # the paper's setting (its logit_lens_analysis): W_E, no norm, inputs + the normed last output
        lens, site, bin_size, min_count = LogitLens(model, projection="embed", apply_final_norm=False), "paper", 5, 100
    else:
        lens, site = LogitLens(model, projection="unembed", apply_final_norm=True), "output"
        bin_size, min_count = max(1, model.cfg.n_layers // 4), 0
    prompts = [prompt_for(model, s, needs_answer=False) for s in prefetch_decoded(samples)]
    # The words to count follow the data: the synthetic tasks' own words, or the paper's bags for real videos.
    bags = PAPER_BAGS if args.video is not None or args.dataset is not None else WORD_BAGS
    freq = vocab_frequency(
        lens, prompts, bags, bin_size=bin_size, min_count=min_count, site=site, progress=not args.no_progress
    )
    write_csv(freq, out / "vocab_frequency.csv")
    words = lens.video_tokens(prompts[0], site=site, top_k=1)
    write_csv(words, out / "video_token_words.csv")
    frame_words = plot_frame_words(words, prompts[0].frames, bin_size=bin_size, n_layers=model.cfg.n_layers)
    return [plot_vocab_frequency(freq), frame_words]


def run_attention(model: Any, samples: list, out: Path, args: argparse.Namespace) -> list:
    from videolens.analyses import attention_maps, video_token_attention
    from videolens.analyses.common import prompt_for
    from videolens.runs.report import write_csv
    from videolens.viz.plots import plot_attention_grid, plot_attention_maps

    df = attention_maps(model, samples[: min(len(samples), 5)], progress=not args.no_progress)
    write_csv(df, out / "attention_maps.csv")
    grid = video_token_attention(model, prompt_for(model, samples[0]))  # the first sample's per-token map (Fig. 6)
    title = "Question -> video token attention, first sample"
    return [plot_attention_maps(df), plot_attention_grid(grid, title=title)]


def _in_one_go(args: argparse.Namespace, samples: list[Any], source: str, device: str) -> int:
    """``demo`` and ``lens``: compute everything, then write the tables and the report."""
    from videolens.runs.manifest import MANIFEST
    from videolens.runs.report import write_html

    if args.out is not None and (args.out / MANIFEST).is_file():
        raise CLIError(
            f"--out {args.out} holds a run (its {MANIFEST}); `videolens {args.command}` would overwrite its tables. "
            "Choose another --out."
        )
    model = _load(args, source, device)
    out = _out(args)
    notes = [f"model: {args.model}", f"samples: {len(samples)}"]
    figures: list = []
    if args.command == "demo":
        figs, acc = run_baseline(model, samples, out, args)
        print(acc.to_string(index=False))
        figures += figs + run_demo_analyses(model, samples, out, args, notes)
    figures += run_lens(model, samples, out, args)
    if args.command == "demo":
        figures += run_attention(model, samples, out, args)
    print(f"report: {write_html(figures, out / 'report.html', f'videolens {args.command}', notes)}")
    return 0


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def _one_line_warning(message: Warning | str, category: type, filename: str, lineno: int, file=None, line=None) -> None:
    print(f"videolens: warning: {' '.join(str(message).split())}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    shown = warnings.showwarning
    warnings.showwarning = _one_line_warning  # e.g. skipped samples: one line each, like errors
    try:
        return _dispatch(args)
    except (CLIError, VideoLensError) as exc:
        print(f"videolens: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = getattr(args, "out", None) or "the output folder"
        print(
            f"videolens: interrupted; results so far are in {where} (run the same command to resume)", file=sys.stderr
        )
        return 130
    finally:
        warnings.showwarning = shown


def _check_samples(samples: list[Any]) -> None:
    """What the samples alone show to be wrong, before the model loads."""
    from videolens.analyses.common import check_unique_ids, sample_id

    if not samples:
        raise CLIError(
            "No samples to analyse: the annotations hold none (or every video is missing). Check --data-root."
        )
    check_unique_ids([sample_id(s, i) for i, s in enumerate(samples)])


def _quiet_hf() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight loading is quick; keep the terminal for our own bars
    hf_logging.set_verbosity_error()
    try:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def _dispatch(args: argparse.Namespace) -> int:
    start = time.time()
    if args.command == "report":
        from videolens.runs.report import build_report

        print(f"report: {build_report(args.folder)}")
        return 0
    _check_args(args)
    if args.command == "pathways":
        from videolens.analyses.pathways import resolve_pathway_spec

        resolve_pathway_spec(args.spec)
    device = _device(args.device)
    source = _model_source(args.model)
    _quiet_hf()
    if args.command == "info":
        print(_load(args, source, device))
        return 0
    samples = _samples(args)
    _check_samples(samples)
    code = (_run if args.command in RUN_COMMANDS else _in_one_go)(args, samples, source, device)
    print(f"done in {time.time() - start:.0f}s")
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
