"""Figures of a pathway search: the layer x group-pair map beside the paper's ranges, and the sparsity curve.

Functions take the search's results (a :class:`~videolens.discovery.GroupPathway`, tables),
never a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from videolens.discovery.edges import PAIRS
from videolens.discovery.spec import GroupPathway


def pathway_grid(pathway: GroupPathway) -> tuple[np.ndarray, list[str]]:
    """``(pair, layer)`` array: 1 open, 0 blocked, NaN not a candidate; and the pair labels."""
    pairs = [p for p in PAIRS if any(e.pair == p for e in pathway.candidates)]
    grid = np.full((len(pairs), pathway.n_layers), np.nan)
    for e in pathway.candidates:
        grid[pairs.index(e.pair), e.layer] = 0.0 if e in pathway.blocked else 1.0
    return grid, pairs


def plot_pathway_map(pathway: GroupPathway, paper_share: dict[tuple[str, int], float] | None = None) -> go.Figure:
    """The discovered pathway (open = dark) as layer x group pair, next to the share the paper's ranges keep open."""
    grid, pairs = pathway_grid(pathway)
    layers = list(range(1, pathway.n_layers + 1))
    panels = 2 if paper_share else 1
    titles = ["discovered pathway (open edges)"] + (["paper's ranges, scaled (share kept open)"] if paper_share else [])
    fig = make_subplots(rows=1, cols=panels, shared_yaxes=True, subplot_titles=titles, horizontal_spacing=0.04)
    fig.add_trace(go.Heatmap(z=grid, x=layers, y=pairs, zmin=0, zmax=1, colorscale="Blues", showscale=False), 1, 1)
    if paper_share:
        kept = np.array([[1 - paper_share.get((p, layer), 0.0) for layer in range(pathway.n_layers)] for p in pairs])
        fig.add_trace(go.Heatmap(z=kept, x=layers, y=pairs, zmin=0, zmax=1, colorscale="Blues"), 1, 2)
    fig.update_xaxes(title_text="layer")
    fig.update_layout(
        template="plotly_white", height=40 + 22 * len(pairs), title="Effective pathway: discovered vs paper"
    )
    return fig


def plot_sparsity_curve(curve: pd.DataFrame, summary: pd.DataFrame | None = None) -> go.Figure:
    """Accuracy against suppressed share of every condition the search confirmed, with the final conditions marked."""
    fig = go.Figure()
    if len(curve):
        ok = curve["ok"].astype(bool)
        for mask, name, color in [(ok, "kept accuracy", "#2ca02c"), (~ok, "dropped below tolerance", "#d62728")]:
            part = curve[mask]
            fig.add_trace(
                go.Scatter(
                    x=part["suppressed_percent"], y=part["accuracy"], mode="markers", name=name,
                    marker={"color": color, "size": 7}, text=[f"round {r}" for r in part["round"]],
                )
            )  # fmt: skip
    if summary is not None and len(summary):
        means = summary.groupby("condition", sort=False)[["suppressed_percent", "accuracy"]].mean()
        fig.add_trace(
            go.Scatter(
                x=means["suppressed_percent"], y=means["accuracy"], mode="markers+text", text=list(means.index),
                textposition="top center", name="final (mean over tasks)", marker={"symbol": "diamond", "size": 11},
            )
        )  # fmt: skip
    fig.update_layout(
        title="Accuracy vs suppressed attention edges (the search's confirmations)",
        xaxis_title="suppressed edges (%)",
        yaxis_title="accuracy (%)",
        yaxis_range=[0, 105],
        template="plotly_white",
    )
    return fig
