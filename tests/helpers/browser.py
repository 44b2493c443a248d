"""Headless Chromium for the tests that look at a page as a reader would (TensorBoard, report.html)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REQUIRE_BROWSER = os.environ.get("ICS_STUDY_REQUIRE_BROWSER") == "1"


def chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if REQUIRE_BROWSER:
            pytest.fail("no chromium and ICS_STUDY_REQUIRE_BROWSER=1 (CI installs Debian's chromium)")
        pytest.skip("no chromium here (apt-get install chromium)")
    return found


def screenshot(target: str, out: Path, size=(1400, 1000), budget_ms: int = 15000) -> Path:
    """A headless-Chromium screenshot of ``target`` (a URL or file://), after ``budget_ms`` of page time."""
    profile = out.parent / f".profile-{out.stem}"
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", "--hide-scrollbars",
                    f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", target],
                   check=True, capture_output=True, timeout=120)
    return out


def coloured_pixels(png: Path, box: tuple[int, int, int, int] | None = None):
    """(share of non-white pixels, count of saturated pixels) in ``box`` (left, top, right, bottom;
    the whole page if None): what drawn lines and coloured marks leave."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    if box is not None:
        img = img[box[1] : box[3], box[0] : box[2]]
    non_white = (img.min(axis=2) < 240).mean()
    saturated = ((img.max(axis=2) - img.min(axis=2)) > 80).sum()
    return non_white, int(saturated)
