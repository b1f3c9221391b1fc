"""Edge attribution: what blocking each group edge would do to log P(answer), from one backward pass.

A knockout masks the blocked keys before the softmax, so a blocked query row is the clean
row with the blocked entries removed and the rest renormalised: ``p'_ij = 0`` for blocked
``j`` and ``p_ij / (1 - r_i)`` otherwise, ``r_i`` the blocked mass of row ``i``. Attribution
patching on the attention pattern (Nanda 2023; edge attribution patching, Syed et al. 2023)
estimates the change of the metric as ``sum_ij g_ij (p'_ij - p_ij)`` with ``g = dm/dp`` of
the clean run; per row that is ``-GS_i + r_i / (1 - r_i) (G_i - GS_i)`` with ``G_i = sum_j
g_ij p_ij`` and ``GS_i`` the same sum over the blocked keys, so every edge of a layer costs
two masked row sums. ``method="ig"`` averages ``g`` over ``steps`` points of the path from
the clean run towards the run with every candidate edge blocked (every pattern mixed with
its renormalised template-only row), as EAP-IG does (Hanna et al. 2024), up to ``end`` of
the way: gradients away from the saturated clean point, at ``steps`` backward passes.

Estimates are checked against exact knockouts through the sweep engine
(:func:`exact_edge_effects`; rank correlation in :func:`attribution_agreement`), as in
"Map the Flow"'s knockout analyses (Sec. 4).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import pandas as pd
import torch
from jaxtyping import Float

from videolens.analyses.common import iterate, option_token_ids, prompt_for, sample_id, sample_task
from videolens.core.hooked import HookedVideoLLM
from videolens.core.prompt import VideoPrompt
from videolens.discovery.edges import GroupEdge, candidate_edges, edges_knockout, pair_masks
from videolens.engine.sweep import SweepEngine
from videolens.errors import InputError

Method = Literal["linear", "ig"]
Metric = Literal["logprob", "log_odds"]


def metric_of(logits: Float[torch.Tensor, "... d_vocab"], target: int, metric: Metric) -> torch.Tensor:
    """``log P(target)``, or its log-odds ``log P - log(1 - P)`` (the logit of target against all others).

    Log-odds does not saturate when the model is sure (``P -> 1``), where log P's gradient
    vanishes and first-order estimates of large effects become noise.
    """
    lp = logits.float().log_softmax(-1)
    if metric == "logprob":
        return lp[..., target]
    if metric == "log_odds":
        others = torch.cat([logits[..., :target], logits[..., target + 1 :]], dim=-1).float()
        return logits[..., target].float() - others.logsumexp(-1)
    raise InputError(f"metric={metric!r}; use 'logprob' or 'log_odds'.")


def answer_token(model: HookedVideoLLM, prompt: VideoPrompt) -> int:
    """The token id of the prompt's true option letter (the metric is its log-probability)."""
    return option_token_ids(model, prompt)[prompt.answer]


def _pattern_grads(
    model: HookedVideoLLM,
    prompt: VideoPrompt,
    target: int,
    base: Sequence[GroupEdge],
    layers: Sequence[int],
    alphas: Sequence[float],
    keep: dict[int, torch.Tensor],
    metric: Metric = "logprob",
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Patterns of the run with ``base`` blocked, and ``dm/dpattern`` averaged over the path points ``alphas``."""
    names = {f"blocks.{layer}.attn.hook_pattern": layer for layer in layers}
    base_ko = edges_knockout(base, prompt.layout.n_frames)
    ivs = [] if base_ko is None else [base_ko]
    clean: dict[int, torch.Tensor] = {}
    grads: dict[int, torch.Tensor] = {}
    for alpha in alphas:
        leaves: dict[int, torch.Tensor] = {}

        def hook(p: torch.Tensor, hook: Any, alpha: float = alpha, leaves: dict = leaves) -> torch.Tensor:
            layer = names[hook.name]
            if alpha == 0.0:
                clean[layer] = p.detach()
            else:  # a point on the path towards "every candidate edge blocked"
                sink = p * keep[layer]
                p = (1 - alpha) * p + alpha * sink / sink.sum(-1, keepdim=True).clamp_min(1e-12)
            leaves[layer] = torch.zeros_like(p, requires_grad=True)
            return p + leaves[layer]  # d metric / d leaf = d metric / d pattern

        with torch.enable_grad():
            logits = model.run_with_hooks(prompt, fwd_hooks=[(n, hook) for n in names], interventions=ivs)
            value = metric_of(logits[0, -1], target, metric)
            got = torch.autograd.grad(value, [leaves[layer] for layer in layers])
        for layer, g in zip(layers, got):
            grads[layer] = grads.get(layer, 0) + g.detach().float() / len(alphas)
    if not clean:
        with torch.no_grad():
            model.run_with_hooks(prompt, fwd_hooks=[(n, hook_clean(clean, names)) for n in names], interventions=ivs)
    return clean, grads


def hook_clean(store: dict[int, torch.Tensor], names: dict[str, int]):
    def hook(p: torch.Tensor, hook: Any) -> None:
        store[names[hook.name]] = p.detach()

    return hook


def edge_attribution(
    model: HookedVideoLLM,
    prompt: VideoPrompt,
    edges: Sequence[GroupEdge] | None = None,
    *,
    base: Iterable[GroupEdge] = (),
    method: Method = "linear",
    steps: int = 4,
    end: float = 0.1,
    target: int | None = None,
    metric: Metric = "logprob",
    return_mass: bool = False,
) -> Float[torch.Tensor, "edge head"] | tuple[Float[torch.Tensor, "edge head"], Float[torch.Tensor, "edge head"]]:
    """Estimated change of log P(target) when each edge alone is blocked (on top of ``base``), per head.

    Args:
        model: the hooked model.
        prompt: one prompt with an answer.
        edges: the edges to score (default: every candidate edge of the prompt).
        base: edges already blocked (the run the estimates start from).
        method: ``"linear"`` (one forward and backward) or ``"ig"`` (``steps`` of each).
        steps: path points of ``"ig"``.
        end: how far along the path to "every candidate edge blocked" ``"ig"`` goes (0..1];
            far points mix every edge's knockout and lose the single edge (on the toy
            model rank agreement falls from 0.1 to 0.3 and collapses at 1).
        target: the token the metric is about (default: the true option's letter).
        metric: ``"logprob"`` (log P(target)) or ``"log_odds"`` (see :func:`metric_of`).
        return_mass: also return the attention mass each edge holds (sum over its query
            rows of the blocked share ``r_i``), the size of the pattern change.

    Returns:
        ``(edge, head)``: sum over heads for the whole edge; blocking an edge in every head
        at once is the sum of its per-head estimates to first order.
    """
    if method not in ("linear", "ig"):
        raise InputError(f"method={method!r}; use 'linear' or 'ig'.")
    if method == "ig" and (steps < 1 or not 0 < end <= 1):
        raise InputError(f"steps={steps}, end={end}: need steps >= 1 and 0 < end <= 1.")
    layout, n_layers = prompt.layout, model.cfg.n_layers
    edges = candidate_edges([layout], n_layers) if edges is None else list(edges)
    base = sorted(set(base))
    target = answer_token(model, prompt) if target is None else target
    masks = {pair: m.to(model.cfg.device) for pair, m in pair_masks(layout).items()}
    missing = sorted({e.pair for e in edges} - set(masks))
    if missing:
        raise InputError(f"The pairs {missing} cover no attention edge in this prompt.")
    layers = sorted({e.layer for e in edges})
    keep = {}
    if method == "ig":
        for layer in layers:  # what stays open with every candidate edge of the layer blocked
            blocked = sum((masks[e.pair] for e in edges if e.layer == layer), torch.zeros_like(masks[edges[0].pair]))
            keep[layer] = ~blocked.bool()
    alphas = [0.0] if method == "linear" else [end * (k + 0.5) / steps for k in range(steps)]
    clean, grads = _pattern_grads(model, prompt, target, base, layers, alphas, keep, metric)
    out = torch.zeros(len(edges), model.cfg.n_heads)
    mass = torch.zeros(len(edges), model.cfg.n_heads)
    for layer in layers:
        p, g = clean[layer][0].float(), grads[layer][0]  # (head, q, k)
        gp_all = (g * p).sum(-1)
        for i, edge in enumerate(edges):
            if edge.layer != layer:
                continue
            m = masks[edge.pair]
            pm = p * m
            r = pm.sum(-1)
            gs = (g * pm).sum(-1)
            est = -gs + r / (1 - r).clamp_min(1e-6) * (gp_all - gs)
            out[i] = est.sum(-1).cpu()
            mass[i] = r.sum(-1).cpu()
    return (out, mass) if return_mass else out


@torch.no_grad()
def exact_edge_effects(
    model: HookedVideoLLM,
    prompt: VideoPrompt,
    edges: Sequence[GroupEdge],
    *,
    base: Iterable[GroupEdge] = (),
    engine: SweepEngine | None = None,
    target: int | None = None,
    metric: Metric = "logprob",
) -> Float[torch.Tensor, " edge"]:
    """Exact change of the metric (default log P(target)) when each edge alone is blocked on top of ``base`` (batched sweep)."""
    engine = SweepEngine(model, prompt) if engine is None else engine
    target = answer_token(model, prompt) if target is None else target
    base = sorted(set(base))
    n_frames = prompt.layout.n_frames
    kos = [edges_knockout(base, n_frames)] + [edges_knockout([*base, e], n_frames) for e in edges]
    lp = metric_of(engine.last_logits(kos), target, metric)
    return (lp[1:] - lp[0]).cpu()


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties; NaN when either side is constant)."""
    ra, rb = pd.Series(list(a), dtype=float).rank(), pd.Series(list(b), dtype=float).rank()
    return float(ra.corr(rb))


def validate_attribution(
    model: HookedVideoLLM,
    samples: Iterable[Any],
    *,
    method: Method = "linear",
    steps: int = 4,
    metric: Metric = "logprob",
    progress: bool = False,
    **prepare_kwargs: Any,
) -> pd.DataFrame:
    """Attribution against exact single-edge knockouts, every candidate edge of every sample.

    Returns one row per (sample, edge): ``sample_id, task, pair, layer, estimate, exact``.
    """
    rows = []
    for index, sample in iterate(samples, "edge attribution", progress):
        prompt = prompt_for(model, sample, **prepare_kwargs)
        edges = candidate_edges([prompt.layout], model.cfg.n_layers)
        est = edge_attribution(model, prompt, edges, method=method, steps=steps, metric=metric).sum(-1)
        exact = exact_edge_effects(model, prompt, edges, metric=metric)
        sid, task = sample_id(sample, index), sample_task(sample)
        rows += [
            {"sample_id": sid, "task": task, "pair": e.pair, "layer": e.layer, "estimate": float(x), "exact": float(y)}
            for e, x, y in zip(edges, est, exact)
        ]
    return pd.DataFrame(rows)


def attribution_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Per task: Spearman of estimate vs exact over every edge of its samples (pooled), and per sample (mean)."""
    out = []
    for task, part in df.groupby("task", sort=False):
        per_sample = part.groupby("sample_id").apply(
            lambda s: spearman(s["estimate"], s["exact"]), include_groups=False
        )
        out.append(
            {
                "task": task,
                "spearman": spearman(part["estimate"], part["exact"]),
                "spearman_per_sample": float(per_sample.mean()),
                "n_edges": len(part),
            }
        )
    return pd.DataFrame(out)


def disagreements(df: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The ``k`` edges (mean over samples) whose estimate and exact effect differ most in rank."""
    mean = df.groupby(["pair", "layer"], as_index=False)[["estimate", "exact"]].mean()
    mean["rank_gap"] = (mean["estimate"].rank(pct=True) - mean["exact"].rank(pct=True)).abs()
    return mean.sort_values("rank_gap", ascending=False).head(k).reset_index(drop=True)
