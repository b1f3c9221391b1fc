"""The example scripts run top to bottom."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_quickstart_runs(capsys):
    runpy.run_path(str(EXAMPLES / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "frame(3)" in out and "total variation distance" in out


def test_circuitsvis_head_view_is_self_contained(tmp_path):
    from videolens.viz import attention_heads_html, pool_pattern

    pattern = np.random.default_rng(0).random((2, 6, 6))
    pooled = pool_pattern(pattern, [[0, 1], [2, 3, 4], [5]])
    assert pooled.shape == (2, 3, 3)
    assert np.allclose(pooled[:, 0, 1], pattern[:, [0, 1]][:, :, [2, 3, 4]].sum(-1).mean(-1))
    attention_heads_html(pooled, ["system", "video", "last"], tmp_path / "heads.html")
    html = (tmp_path / "heads.html").read_text()
    assert "unpkg.com" not in html and len(html) > 100_000
