"""The figures embedded in report.html: 256 colours where every pixel stays near its colour, the
figure as drawn where they would not."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest

from ics_study.analysis.figures.style import RC
from ics_study.analysis.report_html import FAITHFUL, embedded_png

matplotlib.use("Agg")
Image = pytest.importorskip("PIL.Image")


def _pixels(data) -> np.ndarray:
    return np.asarray(Image.open(data).convert("RGB"), dtype=int)


def _draw(path, heat_map: bool):
    """A figure like the report's (seed bands, curves on a log axis, a legend, a title), or a large
    full-colour image (random colours), whose colours do not fit in 256."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(6, 4))
        if heat_map:
            ax.imshow(rng.random((96, 96, 3)), aspect="auto", interpolation="nearest")  # 9,216 random colours
        else:
            steps = np.arange(2000)
            for i, colour in enumerate(["C0", "C3", "C2"]):
                y = np.exp(-steps / (300 * (i + 1))) + 0.05 * rng.random((3, steps.size))
                ax.fill_between(steps, y.min(0), y.max(0), color=colour, alpha=0.2, lw=0)
                ax.plot(steps, y.mean(0), color=colour, label=f"net {i} (3 seeds)")
            ax.set_yscale("log")
            ax.legend()
        fig.suptitle("Figure: a title with \u03bc and \u03c3\u00b2")
        fig.savefig(path)
        plt.close(fig)
    return path


def test_a_figure_of_lines_embeds_in_256_colours_and_fewer_bytes(tmp_path):
    png = _draw(tmp_path / "fig.png", heat_map=False)
    data = embedded_png(png)
    embedded = Image.open(io.BytesIO(data))
    assert embedded.mode == "P" and len(embedded.getcolors(256)) <= 256
    before, after = _pixels(png), _pixels(io.BytesIO(data))
    assert before.shape == after.shape
    off = np.abs(before - after).max(axis=-1)  # the worst channel of each pixel, in 0-255 levels
    assert off.mean() < 0.5 and (off > 16).mean() < FAITHFUL
    assert len(data) < 0.6 * png.stat().st_size


def test_a_full_colour_image_whose_colours_do_not_fit_embeds_as_drawn(tmp_path):
    png = _draw(tmp_path / "heat.png", heat_map=True)
    assert embedded_png(png) == png.read_bytes()


def test_a_transparent_figure_embeds_on_white(tmp_path):
    image = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    image.paste((200, 30, 30, 255), (10, 10, 30, 20))
    image.save(tmp_path / "clear.png")
    pixels = _pixels(io.BytesIO(embedded_png(tmp_path / "clear.png")))
    assert (pixels[0, 0] == 255).all()  # not the black a dropped alpha channel would leave
    assert (pixels[15, 20] == [200, 30, 30]).all()
