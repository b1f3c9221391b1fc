"""Interactive figures (plotly) and offline HTML reports for every analysis."""

from videolens.viz.lens import plot_frame_words, plot_probe_scores, plot_vocab_frequency
from videolens.viz.plots import (
    PALETTE,
    attention_heads_html,
    plot_answer_probability,
    plot_attention_grid,
    plot_attention_maps,
    plot_effective_pathways,
    plot_flow_accuracy,
    plot_information_flow,
    plot_layer_curves,
    pool_pattern,
    write_report,
)

__all__ = [
    "PALETTE",
    "attention_heads_html",
    "plot_answer_probability",
    "plot_attention_grid",
    "plot_attention_maps",
    "plot_effective_pathways",
    "plot_flow_accuracy",
    "plot_frame_words",
    "plot_information_flow",
    "plot_layer_curves",
    "plot_probe_scores",
    "plot_vocab_frequency",
    "pool_pattern",
    "write_report",
]
