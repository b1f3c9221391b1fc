"""Figures for the logit lens and the temporal probe (plotly; they take DataFrames and arrays, never a model).

- :func:`plot_vocab_frequency`: bag-word frequencies per layer bin (the paper's Fig. 5),
  from :func:`videolens.analyses.lens.vocab_frequency`.
- :func:`plot_frame_words`: each video token's top-1 word written at its ``(h, w)`` cell
  over the frames laid side by side, one row per layer bin (the paper's Fig. 4), from
  :meth:`videolens.analyses.lens.LogitLens.video_tokens`.
- :func:`plot_probe_scores`: held-out probe score per layer with chance, from
  :meth:`videolens.analyses.probe.TemporalProbe.fit`.

Layers are shown 1-based, as in the paper. Figures embed no model; write them offline with
``fig.write_html(path, include_plotlyjs=True)``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from jaxtyping import UInt8
from plotly.subplots import make_subplots

from videolens.analyses.lens import layer_bins
from videolens.errors import VideoLensError

BagLike = Mapping[str, int] | Iterable[str | int]


def _need(df: pd.DataFrame, columns: Sequence[str], made_by: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise VideoLensError(f"The DataFrame lacks columns {missing}; pass the output of {made_by}.")


def plot_vocab_frequency(
    df: pd.DataFrame, value: str = "frac", include_all: bool = True, title: str | None = None
) -> go.Figure:
    """Grouped bars: for each layer bin, one bar per bag word (one panel per bag).

    Args:
        df: the output of :func:`videolens.analyses.lens.vocab_frequency`.
        value: ``"frac"`` (each word's share per bin, normalised over the bins, as the paper
            plots) or ``"count"``.
        include_all: also show the ``ALL`` (or, for ``frac``, ``ALL_NORM``: the paper's
            average over words) bars.
    """
    _need(df, ["bag", "bin", "word", value], "vocab_frequency()")
    summary = "ALL_NORM" if value == "frac" else "ALL"
    keep = ~df["word"].isin(["ALL", "ALL_NORM"]) | (df["word"] == summary if include_all else False)
    data = df[keep].copy()
    data[value] = data[value].astype(float)
    bags = list(dict.fromkeys(data["bag"]))
    fig = px.bar(
        data,
        x="bin",
        y=value,
        color="word",
        barmode="group",
        facet_row="bag" if len(bags) > 1 else None,
        category_orders={"bin": list(dict.fromkeys(data["bin"])), "bag": bags},
        hover_data=["token", "token_id", "count"] if "count" in data else None,
        title=title or "Top-1 bag words at video tokens per layer bin",
    )
    fig.update_xaxes(title_text="layers (1-based)")
    fig.update_yaxes(title_text="share of the word's hits" if value == "frac" else "count")
    return fig


def _bag_lookup(bag: BagLike | None) -> tuple[dict[int, str], set[str]]:
    """Ids to show (with their label) and strings to match (stripped, lower-case)."""
    if bag is None:
        return {}, set()
    if isinstance(bag, Mapping):
        return {int(i): str(w) for w, i in bag.items()}, set()
    ids, words = {}, set()
    for item in bag:
        if isinstance(item, (int, np.integer)):
            ids[int(item)] = ""
        else:
            words.add(str(item).strip().lower())
    return ids, words


def _select_words(df: pd.DataFrame, bag: BagLike | None) -> pd.DataFrame:
    """Top-1 rows of frame tokens, with a ``word`` column, filtered to the bag if any."""
    top = df[(df["rank"] == 1) & df["t"].notna()].copy()
    top["word"] = top["token"].astype(str).str.strip()
    if bag is None:
        return top
    ids, words = _bag_lookup(bag)
    by_id = top["token_id"].isin(list(ids))
    by_word = top["word"].str.lower().isin(words)
    top = top[by_id | by_word].copy()
    named = top["token_id"].map(ids).fillna("")
    top["word"] = np.where(named != "", named, top["word"])
    return top


def plot_frame_words(
    lens_df: pd.DataFrame,
    frames: UInt8[np.ndarray, "frame height width 3"],
    bag: BagLike | None = None,
    *,
    bin_size: int = 5,
    n_layers: int | None = None,
    frame_index: Sequence[int] | None = None,
    max_words: int = 2,
    font_size: int = 10,
    title: str | None = None,
) -> go.Figure:
    """Each video token's top-1 word at its ``(h, w)`` cell over the frames, one row per layer bin.

    Frames are laid side by side (one per temporal unit ``t``); each row shows the words of
    one bin of layers: at each cell the most frequent top-1 words of the bin's layers (up
    to ``max_words``). With ``bag`` only in-bag words are drawn.

    Args:
        lens_df: rows of :meth:`~videolens.analyses.lens.LogitLens.video_tokens` (``layer, t, h, w,
            rank, token_id, token``); only ``rank == 1`` is used.
        frames: ``(T, H, W, 3)`` uint8 frames, e.g. ``prompt.frames``.
        bag: None (every word), words (matched to the decoded token, stripped, any case),
            token ids, or ``{word: token_id}`` (e.g. from
            :func:`videolens.analyses.lens.first_token_ids`, drawn with the word's name).
        bin_size: layers per row.
        n_layers: the model's depth, to clip the last bin's label.
        frame_index: the input frame shown for each temporal unit; by default spread evenly
            (Qwen-VL units cover two input frames: unit t shows frame 2t).
        max_words: at most this many words per cell and row.
    """
    _need(lens_df, ["layer", "t", "h", "w", "rank", "token_id", "token"], "LogitLens.video_tokens()")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoLensError(f"frames must be (T, H, W, 3) uint8, got shape {frames.shape}; pass prompt.frames.")
    words = _select_words(lens_df, bag)
    all_units = lens_df["t"].dropna().astype(int)
    n_units = int(all_units.max()) + 1 if len(all_units) else len(frames)
    if frame_index is None:
        frame_index = [t * len(frames) // n_units for t in range(n_units)]
    if len(frame_index) != n_units:
        raise VideoLensError(f"frame_index has {len(frame_index)} entries for {n_units} temporal units.")
    strip = np.concatenate([frames[i] for i in frame_index], axis=1)
    height, width = frames.shape[1:3]
    video_rows = lens_df[lens_df["t"].notna()]
    grid_h, grid_w = int(video_rows["h"].max()) + 1, int(video_rows["w"].max()) + 1
    bins = layer_bins(lens_df["layer"].unique(), bin_size, n_layers)
    fig = make_subplots(
        rows=len(bins), cols=1, subplot_titles=[f"layers {label}" for label, *_ in bins], vertical_spacing=0.04
    )
    for row, (_, _, _, members) in enumerate(bins, start=1):
        fig.add_trace(go.Image(z=strip, hoverinfo="skip"), row=row, col=1)
        xs, ys, texts = _cell_texts(words[words["layer"].isin(members)], max_words, height, width, grid_h, grid_w)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                text=texts,
                mode="text",
                textfont={"size": font_size, "color": "white"},
                hoverinfo="text",
                showlegend=False,
            ),
            row=row,
            col=1,
        )
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(
        title=title or ("Top-1 in-bag words at video tokens" if bag is not None else "Top-1 words at video tokens"),
        height=max(250, 180 * len(bins)),
        width=max(600, 110 * n_units),
    )
    return fig


def _cell_texts(
    words: pd.DataFrame, max_words: int, height: int, width: int, grid_h: int, grid_w: int
) -> tuple[list[float], list[float], list[str]]:
    """Pixel centres and text of each (t, h, w) cell with words."""
    xs, ys, texts = [], [], []
    for (t, h, w), cell in words.groupby(["t", "h", "w"], sort=True):
        common = [word for word, _ in Counter(cell["word"]).most_common(max_words)]
        xs.append(int(t) * width + (int(w) + 0.5) * width / grid_w)
        ys.append((int(h) + 0.5) * height / grid_h)
        texts.append("<br>".join(common))
    return xs, ys, texts


def plot_probe_scores(results: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Held-out (and training) probe score per layer, with the chance line.

    Args:
        results: the output of :meth:`videolens.analyses.probe.TemporalProbe.fit`.
    """
    _need(results, ["layer", "train_score", "test_score", "chance"], "TemporalProbe.fit()")
    x = results["layer"].to_numpy() + 1
    metric = results["metric"].iloc[0] if "metric" in results and len(results) else "score"
    site = results["site"].iloc[0] if "site" in results and len(results) else ""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=results["test_score"], mode="lines+markers", name=f"held-out {metric}"))
    fig.add_trace(go.Scatter(x=x, y=results["train_score"], mode="lines", name=f"train {metric}", line={"dash": "dot"}))
    fig.add_trace(
        go.Scatter(x=x, y=results["chance"], mode="lines", name="chance", line={"dash": "dash", "color": "gray"})
    )
    fig.update_layout(
        title=title or f"Linear probe per layer ({site} residual stream)",
        xaxis_title="layer (1-based)",
        yaxis_title=metric,
    )
    return fig
