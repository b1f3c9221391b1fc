"""Automatic pathway discovery: the sparsest set of open group edges that keeps accuracy.

"Map the Flow" (Kim et al., ICLR 2026, Sec. 5) keeps hand-picked layer ranges open and
reports how many attention edges that suppresses with accuracy retained. Here a search
finds the open set. Each round (in the spirit of ACDC, Conmy et al. 2023, and
edge-attribution pruning, Syed et al. 2023):

1. score every edge still open by attribution (:mod:`videolens.discovery.attribution`),
   from the run with the edges blocked so far, averaged over the samples;
2. order the edges by estimated harm per suppressed attention entry (harmless and large
   first);
3. find the longest prefix of that order that keeps every task's accuracy within
   ``tolerance`` points of the clean run, by exact knockouts: a grid of ``batch`` prefix
   lengths goes to the sweep engine as one batch per sample, then a grid inside the
   bracket that failed, until the first failing edge is pinned;
4. block the prefix, keep the failing edge open for good, and go on with the rest.

It stops when every edge has been decided or after ``max_rounds`` rounds (the rest stay
open). The suppressed share is counted exactly as
:func:`~videolens.analyses.pathways.count_edges` counts the paper's (group pairs never
overlap, so the count is also the sum of the pairs' sizes; the tests check both agree).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from videolens.analyses.common import ResultWriter, iterate, prompt_for, sample_id, sample_task
from videolens.analyses.correctness import decoded_letter, is_correct
from videolens.analyses.pathways import (
    PathwaySpec,
    count_edges,
    pathway_knockout,
    pathway_summary,
    random_knockout,
    resolve_pathway_spec,
)
from videolens.core.hooked import HookedVideoLLM
from videolens.discovery.attribution import Method, Metric, answer_token, edge_attribution
from videolens.discovery.edges import GroupEdge, blocked_share, candidate_edges, edges_knockout, pair_masks
from videolens.discovery.spec import GroupPathway
from videolens.engine.sweep import SweepEngine
from videolens.errors import InputError

Criterion = Literal["answer", "prediction"]
SEARCH_TABLE, EVAL_TABLE = "discover_search", "discover"


@dataclass
class Discovery:
    """What :func:`discover_pathway` found.

    Attributes:
        pathway: the discovered pathway (its open and blocked group edges).
        rows: per (sample, condition) with condition ``full``, ``discovered``, ``paper``
            (the paper's ranges scaled to the model) and ``random`` (a seeded random
            knockout of the discovered count): the columns of
            :func:`~videolens.analyses.pathways.effective_pathways`.
        summary: per task and condition, accuracy and suppressed share
            (:func:`~videolens.analyses.pathways.pathway_summary`).
        curve: every condition the search confirmed: ``round, n_blocked, suppressed_percent,
            accuracy, worst_task_drop, ok``.
        n_exact_per_sample: exact knockout forwards the search ran per sample.
        n_attribution_per_sample: attribution passes (forward and backward) per sample.
        n_brute_force_per_sample: forwards one exact knockout per candidate edge would need.
        seconds: wall time of the search (the evaluation excluded).
        paper_share: per (pair, layer), the share of the pair the paper's ranges block
            (first sample's prompt), for :func:`~videolens.viz.discovery.plot_pathway_map`.
    """

    pathway: GroupPathway
    rows: pd.DataFrame
    summary: pd.DataFrame
    curve: pd.DataFrame
    n_exact_per_sample: int
    n_attribution_per_sample: int
    n_brute_force_per_sample: int
    seconds: float
    paper_share: dict[tuple[str, int], float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class _Search:
    """The samples' prompts, sweep engines and clean answers, and the exact accuracy of edge sets."""

    def __init__(self, model: HookedVideoLLM, prompts: list, tasks: list[str], criterion: Criterion) -> None:
        self.model, self.prompts, self.tasks, self.criterion = model, prompts, np.array(tasks), criterion
        self.engines = [SweepEngine(model, p) for p in prompts]
        clean = [int(e.clean_last_logits.argmax()) for e in self.engines]
        if criterion == "prediction":
            self.targets = clean
        else:
            self.targets = [answer_token(model, p) for p in prompts]
        self.clean = self.correct_of(torch.tensor(clean)[:, None])[:, 0]
        self.n_frames = prompts[0].layout.n_frames
        self.masks = [pair_masks(p.layout) for p in prompts]
        n_layers = model.cfg.n_layers
        self.totals = np.array([p.seq_len * (p.seq_len + 1) // 2 * n_layers for p in prompts], dtype=float)
        self.n_exact = 0

    def correct_of(self, answers: torch.Tensor) -> np.ndarray:
        """``(sample, condition)`` answers -> right or wrong under the criterion."""
        out = np.zeros(tuple(answers.shape), dtype=bool)
        for s, row in enumerate(answers.tolist()):
            for c, a in enumerate(row):
                if self.criterion == "prediction":
                    out[s, c] = a == self.targets[s]
                else:
                    out[s, c] = is_correct(self.model.tokenizer, a, self.prompts[s].answer_letter)
        return out

    def evaluate(self, edge_sets: Sequence[Sequence[GroupEdge]]) -> np.ndarray:
        """Exact knockouts: ``(sample, condition)`` correctness, every condition of a sample in one sweep."""
        kos = [edges_knockout(edges, self.n_frames) for edges in edge_sets]
        answers = torch.stack([engine.last_logits(kos).argmax(-1).cpu() for engine in self.engines])
        self.n_exact += len(edge_sets)
        return self.correct_of(answers)

    def worst_drop(self, correct: np.ndarray) -> np.ndarray:
        """Per condition, the largest accuracy drop of any task, in points."""
        drops = []
        for task in dict.fromkeys(self.tasks):
            rows = self.tasks == task
            drops.append(100 * (self.clean[rows].mean() - correct[rows].mean(0)))
        return np.max(drops, axis=0)

    def sizes(self, edges: Sequence[GroupEdge]) -> np.ndarray:
        """``(sample, edge)``: the attention entries each edge blocks in each prompt."""
        return np.array([[int(m[e.pair].sum()) for e in edges] for m in self.masks], dtype=float)

    def suppressed(self, edges: Sequence[GroupEdge]) -> float:
        """Suppressed share (percent) of ``edges`` over the samples: 100 mean(blocked) / mean(total)."""
        blocked = self.sizes(edges).sum(1) if edges else np.zeros(len(self.prompts))
        return float(100 * blocked.mean() / self.totals.mean())

    def scores(
        self, edges: Sequence[GroupEdge], base: Sequence[GroupEdge], method: Method, steps: int, metric: Metric
    ) -> np.ndarray:
        """Mean attribution (change of the metric) of each edge over the samples."""
        total = np.zeros(len(edges))
        for prompt, target in zip(self.prompts, self.targets):
            est = edge_attribution(
                self.model, prompt, edges, base=base, method=method, steps=steps, target=target, metric=metric
            )
            total += est.sum(-1).numpy()
        return total / len(self.prompts)


def _grid(lo: int, hi: int, batch: int) -> list[int]:
    """Up to ``batch`` prefix lengths in ``(lo, hi]``, evenly spread, ``hi`` included."""
    if hi <= lo:
        return []
    return sorted({int(round(lo + (hi - lo) * k / batch)) for k in range(1, batch + 1)} - {lo})


def _prefix(search: _Search, blocked: list[GroupEdge], order: list[GroupEdge], batch: int, tol: float, rnd: int):
    """The longest good prefix of ``order`` on top of ``blocked`` and the first failing length (None: all good)."""
    lo, fail, points = 0, None, []
    while True:
        sizes = _grid(lo, len(order) if fail is None else fail - 1, batch)
        if not sizes:
            return lo, fail, points
        sets = [blocked + order[:s] for s in sizes]
        correct = search.evaluate(sets)
        drops = search.worst_drop(correct)
        for edges, col, drop in zip(sets, correct.T, drops):
            ok = bool(drop <= tol + 1e-9)
            points.append(
                {"round": rnd, "n_blocked": len(edges), "suppressed_percent": search.suppressed(edges),
                 "accuracy": 100 * float(col.mean()), "worst_task_drop": float(drop), "ok": ok}
            )  # fmt: skip
        for s, drop in zip(sizes, drops):
            if drop <= tol + 1e-9:
                lo = s
            else:
                fail = s
                break
        if fail is None or fail == lo + 1:
            return lo, fail, points


def _restore(out: Any) -> tuple[list[dict], Any]:
    """Rounds a resumed run already recorded, and the run table to record new ones in (None: not a run)."""
    from videolens.runs.run import Run

    if not isinstance(out, Run):
        return [], None
    table = out.table(SEARCH_TABLE)
    return out.records(SEARCH_TABLE), table


def discover_pathway(
    model: HookedVideoLLM,
    samples: Iterable[Any],
    *,
    tolerance: float = 2.0,
    criterion: Criterion = "answer",
    method: Method = "linear",
    steps: int = 4,
    metric: Metric = "log_odds",
    batch: int = 8,
    max_rounds: int = 8,
    pins_per_round: int = 4,
    per_entry: bool = True,
    paper_spec: PathwaySpec | str = "7b",
    seed: int = 42,
    out: Any = None,
    progress: bool = True,
    **prepare_kwargs: Any,
) -> Discovery:
    """Search the sparsest group pathway that keeps every task's accuracy within ``tolerance`` points.

    Args:
        model: the hooked model.
        samples: samples with answers (the search and the evaluation use the same ones).
        tolerance: the largest accuracy drop (percentage points) allowed on any task.
        criterion: ``"answer"`` (accuracy against the true option) or ``"prediction"``
            (agreement with the clean model's top token: for models without a task, e.g.
            random weights).
        method: attribution that orders the edges, ``"linear"`` or ``"ig"`` (see
            :func:`~videolens.discovery.attribution.edge_attribution`).
        steps: path points of ``"ig"``.
        metric: what the attribution that orders the edges estimates: ``"log_odds"`` of the
            target (default; it does not saturate on a confident model) or ``"logprob"``.
        batch: prefix lengths confirmed per exact sweep (conditions per batched forward).
        max_rounds: rounds of attribution + confirmation; edges not decided stay open.
        pins_per_round: failing edges pinned (kept open) per round before the attribution
            is computed again from the new blocked set.
        per_entry: order by estimated harm per blocked attention entry (favours large
            harmless edges: sparser pathways) rather than by harm alone.
        paper_spec: the paper's ranges to compare with (scaled to the model).
        seed: seed of the random baseline.
        out: a :class:`~videolens.runs.Run` (search rounds and evaluation rows are recorded,
            and a resumed run continues where it stopped), a JSON-lines path for the
            evaluation rows, or None.
        progress: show progress bars.

    Returns:
        A :class:`Discovery`.
    """
    if tolerance < 0 or batch < 1 or max_rounds < 1:
        raise InputError(f"tolerance={tolerance}, batch={batch}, max_rounds={max_rounds}: need >= 0, >= 1, >= 1.")
    if criterion not in ("answer", "prediction"):
        raise InputError(f"criterion={criterion!r}; use 'answer' or 'prediction'.")
    spec = resolve_pathway_spec(paper_spec)
    samples = list(samples)
    prompts = [prompt_for(model, s, **prepare_kwargs) for s in samples]
    if not prompts:
        raise InputError("discover_pathway needs at least one sample.")
    tasks = [sample_task(s) for s in samples]
    start = time.perf_counter()
    search = _Search(model, prompts, tasks, criterion)
    candidates = candidate_edges([p.layout for p in prompts], model.cfg.n_layers)
    done, table = _restore(out)
    blocked: list[GroupEdge] = []
    kept: set[GroupEdge] = set()
    curve: list[dict] = []
    n_attr = 0
    for record in done:
        info = record["info"]
        blocked = [GroupEdge(p, int(layer)) for p, layer in info["blocked"]]
        kept = {GroupEdge(p, int(layer)) for p, layer in info["kept"]}
        search.n_exact, n_attr = int(info["n_exact"]), int(info["n_attr"])
        curve += record["rows"]
    finished = bool(done) and bool(done[-1]["info"]["finished"])
    bar = tqdm(total=max_rounds, initial=len(done), desc="pathway search", unit="round", disable=not progress)
    for rnd in range(len(done), max_rounds):
        if finished:
            break
        remaining = [e for e in candidates if e not in kept and e not in set(blocked)]
        if not remaining:
            break
        harm = -search.scores(remaining, blocked, method, steps, metric)
        n_attr += steps if method == "ig" else 1
        if per_entry:
            harm = harm / np.maximum(search.sizes(remaining).mean(0), 1.0)
        order = [remaining[i] for i in np.argsort(harm, kind="stable")]
        points = []
        for _ in range(pins_per_round):  # pin up to this many failing edges before scoring again
            lo, fail, found = _prefix(search, blocked, order, batch, tolerance, rnd)
            points += found
            blocked = blocked + order[:lo]
            if fail is None:
                break
            kept.add(order[fail - 1])
            order = order[fail:]
        finished = fail is None or len(blocked) + len(kept) == len(candidates)
        curve += points
        if table is not None:
            info = {"blocked": [[e.pair, e.layer] for e in blocked], "kept": [[e.pair, e.layer] for e in sorted(kept)],
                    "n_exact": search.n_exact, "n_attr": n_attr, "finished": finished}  # fmt: skip
            table.append({"key": f"round-{rnd}", "index": rnd, "task": "search", "rows": points, "info": info})
        bar.update()
    bar.close()
    seconds = time.perf_counter() - start
    pathway = GroupPathway(model.cfg.n_layers, frozenset(candidates), frozenset(blocked))
    rows = _evaluate(model, samples, prompts, pathway, spec, seed, out, progress)
    return Discovery(
        pathway=pathway,
        rows=rows,
        summary=pathway_summary(rows),
        curve=pd.DataFrame(curve),
        n_exact_per_sample=search.n_exact,
        n_attribution_per_sample=n_attr,
        n_brute_force_per_sample=len(candidates),
        seconds=seconds,
        paper_share=blocked_share(pathway_knockout(spec, model.cfg.n_layers), prompts[0].layout, model.cfg.n_layers),
        info={"tolerance": tolerance, "criterion": criterion, "method": method, "kept_for_good": len(kept)},
    )


def _evaluate(
    model, samples, prompts, pathway: GroupPathway, spec: PathwaySpec, seed: int, out, progress
) -> pd.DataFrame:
    """Accuracy and exact edge counts per sample: clean, discovered, the paper's ranges, random of the same count."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    paper = pathway_knockout(spec, n_layers)
    writer = ResultWriter(out, table=EVAL_TABLE)
    for index, sample in iterate(samples, "pathway evaluation", progress, writer=writer):
        prompt = prompts[index]
        ko = pathway.knockout(prompt.layout)
        total = count_edges(paper, prompt.layout, n_layers, n_heads)[1]
        kept = total if ko is None else count_edges(ko, prompt.layout, n_layers, n_heads)[0]
        rnd = random_knockout(prompt.layout, round((total - kept) / n_layers), n_layers, seed + index)
        conditions = [("full", None, total), ("discovered", ko, kept)]
        conditions.append(("paper", paper, count_edges(paper, prompt.layout, n_layers, n_heads)[0]))
        conditions.append(("random", rnd, count_edges(rnd, prompt.layout, n_layers, n_heads)[0]))
        logits = SweepEngine(model, prompt).last_logits([c[1] for c in conditions])
        rows = []
        for (name, _, kept_edges), row in zip(conditions, logits):
            answer = int(row.argmax())
            rows.append(
                {"sample_id": sample_id(sample, index), "task": sample_task(sample), "condition": name,
                 "answer": decoded_letter(model.tokenizer, answer), "gt": prompt.answer_letter,
                 "correct": is_correct(model.tokenizer, answer, prompt.answer_letter), "kept_edges": kept_edges,
                 "total_edges": total, "kept_percent": 100 * kept_edges / total,
                 "suppressed_percent": 100 - 100 * kept_edges / total}
            )  # fmt: skip
        writer.add(rows)
    return writer.frame()
