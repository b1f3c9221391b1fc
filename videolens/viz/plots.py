"""Interactive plotly figures for the analyses; functions take DataFrames, never a model.

Reports embed plotly's JavaScript (``include_plotlyjs=True``) so they open offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from videolens.errors import InputError

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _mean_ci(values: pd.Series) -> tuple[float, float]:
    """Mean and the half-width of a normal 95% confidence interval."""
    v = values.to_numpy(dtype=float)
    if len(v) < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(1.96 * v.std(ddof=1) / np.sqrt(len(v)))


def plot_layer_curves(
    df: pd.DataFrame, y: str, hue: str, title: str, y_title: str, baseline: float | None = None
) -> go.Figure:
    """Mean of ``y`` vs layer+1 with a 95% band, one curve per ``hue`` value."""
    fig = go.Figure()
    for i, (name, part) in enumerate(df.groupby(hue, sort=False)):
        stats = part.groupby("layer")[y].apply(_mean_ci)
        layers = np.array(stats.index) + 1
        mean = np.array([m for m, _ in stats])
        half = np.array([h for _, h in stats])
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([layers, layers[::-1]]),
                y=np.concatenate([mean + half, (mean - half)[::-1]]),
                fill="toself",
                fillcolor=color,
                opacity=0.15,
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
            )
        )
        fig.add_trace(go.Scatter(x=layers, y=mean, mode="lines+markers", name=str(name), line={"color": color}))
    if baseline is not None:
        fig.add_hline(y=baseline, line_dash="dash", line_color="gray")
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title=y_title, template="plotly_white")
    return fig


def plot_information_flow(df: pd.DataFrame, metric: str = "relative_diff") -> go.Figure:
    """Relative change of the answer probability per blocked pathway vs layer (mean, 95% band)."""
    target = df["target"].iloc[0] if len(df) else ""
    return plot_layer_curves(
        df, metric, "pathway", f"Information flow: {target}", "relative change of P(answer) (%)", baseline=0.0
    )


def plot_flow_accuracy(
    acc: pd.DataFrame, base_accuracy: float | None = None, hue: str = "pathway", title: str = "Accuracy under knockout"
) -> go.Figure:
    """Accuracy per blocked pathway (or per task: ``hue="task"``) vs layer, from
    :func:`~videolens.analyses.flow_accuracy`."""
    fig = plot_layer_curves(acc.rename(columns={"accuracy": "acc"}), "acc", hue, title, "accuracy (%)", base_accuracy)
    return fig.update_yaxes(range=[0, 105])


def plot_answer_probability(df: pd.DataFrame) -> go.Figure:
    """Probability of the true and the false options read from each layer."""
    d = df.assign(kind=np.where(df["is_true"], "True option", "False option"))
    return plot_layer_curves(d, "probability", "kind", "Answer probability by layer", "probability (%)")


def plot_attention_maps(df: pd.DataFrame) -> go.Figure:
    """Heatmaps (frames x layers) of question-to-frame attention, baseline vs knockout, log10 scale.

    The panels share one colour range, so the one colour bar reads every panel.
    """
    from plotly.subplots import make_subplots

    conditions = list(dict.fromkeys(df["condition"]))
    fig = make_subplots(rows=1, cols=len(conditions), subplot_titles=conditions, shared_yaxes=True)
    grids = {
        condition: df[df["condition"] == condition].pivot_table(
            index="layer", columns="frame", values="attention", aggfunc="mean"
        )
        for condition in conditions
    }
    logs = {condition: np.log10(5e-5 + grid.to_numpy()) for condition, grid in grids.items()}
    low = min(float(np.nanmin(z)) for z in logs.values())
    high = max(float(np.nanmax(z)) for z in logs.values())
    for i, condition in enumerate(conditions, start=1):
        grid = grids[condition]
        fig.add_trace(
            go.Heatmap(
                z=logs[condition],
                x=[f"frame {t}" for t in grid.columns],
                y=list(grid.index + 1),
                colorscale="Viridis",
                zmin=low,
                zmax=high,
                colorbar={"title": "log10"},
                showscale=i == len(conditions),
            ),
            row=1,
            col=i,
        )
    fig.update_layout(title="Question -> frame attention", yaxis_title="layer", template="plotly_white")
    return fig


def plot_attention_grid(
    grid: Any,
    layers: Sequence[int] | None = None,
    *,
    title: str = "Question -> video token attention",
    eps: float = 5e-5,
) -> go.Figure:
    """The paper's Fig. 6 layout of a ``(layer, frame, h, w)`` attention grid (from
    :func:`videolens.analyses.video_token_attention`): one band of ``h`` rows per layer, the
    frames side by side, ``log10(eps + a)`` on Viridis scaled to the map's own range, white
    lines between frames and layers.

    Args:
        grid: ``(layer, frame, h, w)`` tensor or array.
        layers: the model layer of each band (0-indexed; labelled 1-indexed as in the paper);
            default 0..n-1.
    """
    values = np.asarray(grid.detach().cpu() if hasattr(grid, "detach") else grid, dtype=float)
    if values.ndim != 4:
        raise InputError(f"plot_attention_grid takes a (layer, frame, h, w) grid; got shape {values.shape}.")
    n_layers, n_frames, h, w = values.shape
    labels = list(range(n_layers)) if layers is None else list(layers)
    if len(labels) != n_layers:
        raise InputError(f"{len(labels)} layer labels for {n_layers} layers in the grid.")
    image = values.transpose(0, 2, 1, 3).reshape(n_layers * h, n_frames * w)  # (layer h) x (frame w)
    fig = go.Figure(go.Heatmap(z=np.log10(eps + image), colorscale="Viridis", colorbar={"title": "log10"}))
    line = {"color": "white", "width": 2}
    for t in range(1, n_frames):
        fig.add_shape(type="line", x0=t * w - 0.5, x1=t * w - 0.5, y0=-0.5, y1=n_layers * h - 0.5, line=line)
    for i in range(1, n_layers):
        fig.add_shape(type="line", x0=-0.5, x1=n_frames * w - 0.5, y0=i * h - 0.5, y1=i * h - 0.5, line=line)
    fig.update_xaxes(
        tickvals=[t * w + (w - 1) / 2 for t in range(n_frames)], ticktext=[f"frame {t}" for t in range(n_frames)]
    )
    fig.update_yaxes(
        tickvals=[i * h + (h - 1) / 2 for i in range(n_layers)],
        ticktext=[f"layer {layer + 1}" for layer in labels],
        autorange="reversed",
    )
    fig.update_layout(title=title, template="plotly_white")
    return fig


def plot_effective_pathways(summary: pd.DataFrame) -> go.Figure:
    """Accuracy per condition (full model, pathways only, random knockout of the same share)."""
    fig = go.Figure()
    for i, (condition, part) in enumerate(summary.groupby("condition", sort=False)):
        label = f"{condition} ({part['kept_percent'].mean():.0f}% edges kept)"
        fig.add_trace(go.Bar(x=part["task"], y=part["accuracy"], name=label, marker_color=PALETTE[i % len(PALETTE)]))
    fig.update_layout(title="Effective pathways", yaxis_title="accuracy (%)", barmode="group", template="plotly_white")
    return fig


def write_report(
    figures: Sequence[go.Figure], path: str | Path, title: str = "videolens report", notes: Sequence[str] = ()
) -> Path:
    """One self-contained HTML file (plotly.js inlined once) holding the figures."""
    path = Path(path)
    parts = []
    for i, fig in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"fig{i}"))
    body = "\n".join(f"<p>{n}</p>" for n in notes) + "\n".join(f"<section>{p}</section>" for p in parts)
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body style='font-family:sans-serif'><h1>{title}</h1>{body}</body></html>"
    )
    return path


def attention_heads_html(pattern: Any, labels: Sequence[str], path: str | Path | None = None) -> Any:
    """A circuitsvis view of attention heads over a chosen, short list of positions.

    Args:
        pattern: ``(head, q, k)`` attention among the chosen positions (pool long video
            spans per frame first, e.g. with :func:`pool_pattern`).
        labels: one label per position.
        path: if given, write a self-contained HTML file (circuitsvis' bundled script).
    """
    import circuitsvis as cv

    view = cv.attention.attention_heads(attention=pattern, tokens=list(labels))
    if path is not None:
        Path(path).write_text(view.local_src if hasattr(view, "local_src") else str(view))
    return view


def pool_pattern(pattern: Any, groups: Sequence[Any]) -> np.ndarray:
    """Pool a ``(head, N, N)`` pattern to ``(head, G, G)``: mean over query rows, sum over key columns."""
    p = np.asarray(pattern)
    out = np.zeros((p.shape[0], len(groups), len(groups)))
    for i, rows in enumerate(groups):
        for j, cols in enumerate(groups):
            out[:, i, j] = p[:, np.asarray(rows)][:, :, np.asarray(cols)].sum(-1).mean(-1)
    return out
