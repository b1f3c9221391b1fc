"""The HTML report opens in headless Chromium (offline) and its plotly figures render."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from videolens.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",
]


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        if os.environ.get("VIDEOLENS_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required (VIDEOLENS_REQUIRE_BROWSER is set) but not installed.")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    profile = tmp_path / f"profile{len(list(tmp_path.iterdir()))}"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )


def test_report_renders_its_figures(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "flow",
                "--target",
                "cross-frame",
                "--n-per-task",
                "1",
                "--tasks",
                "direction",
                "color",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    report = out / "report.html"
    dom = chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    assert dom.count('class="main-svg"') >= 2 * 2  # two figures, each draws at least two svg layers
    assert dom.count("scatterlayer") >= 2  # traces were drawn
    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--window-size=1000,1400", f"--screenshot={shot}", report.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    coloured = (pixels.max(-1) - pixels.min(-1)) > 60  # saturated pixels: plot lines, bands, markers
    assert coloured.mean() > 0.002, "no plot visible in the screenshot"
