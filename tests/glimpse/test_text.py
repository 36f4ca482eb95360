"""Text in Pillow's built-in font keeps its spaces (glimpse/text.py): at 11 px the font's own
space is 2 px, as wide as the gap between letters, and "LIME weight" read "LIMEweight"."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from glimpse.render import CAPTIONS, render_figure
from glimpse.text import draw_text, fit, font, text_width


def gaps(ink: np.ndarray) -> list[int]:
    """The widths of the blank column runs between inked columns, widest first."""
    columns = np.flatnonzero(ink.any(axis=0))
    widths = np.diff(columns) - 1
    return sorted((int(w) for w in widths if w > 0), reverse=True)


def drawn(text: str, size: int, *, ours: bool) -> np.ndarray:
    canvas = Image.new("RGB", (400, 40), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if ours:
        draw_text(draw, (2, 2), text, font(size), fill=(0, 0, 0))
    else:
        draw.text((2, 2), text, fill=(0, 0, 0), font=font(size))
    return np.asarray(canvas.convert("L")) < 160


def test_pillows_own_space_is_no_wider_than_a_letter_gap() -> None:
    """The cause: the word gap of ImageDraw.text equals the widest gap inside the words."""
    assert (
        gaps(drawn("LIME weight", 11, ours=False))[0]
        <= gaps(drawn("LIMEweight", 11, ours=False))[0]
    )


@pytest.mark.parametrize("caption", sorted({c for c in CAPTIONS.values() if " " in c}))
@pytest.mark.parametrize("size", [11, 13])
def test_every_space_is_wider_than_any_gap_inside_a_word(caption: str, size: int) -> None:
    words = caption.split(" ")
    inside = max(max(gaps(drawn(w, size, ours=True)), default=0) for w in words)
    found = gaps(drawn(caption, size, ours=True))
    assert found[: len(words) - 1] and min(found[: len(words) - 1]) > inside, (caption, found)


def test_width_and_fit_measure_what_is_drawn() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    face = font(11)
    assert text_width(draw, "LIME weight", face) >= text_width(draw, "LIMEweight", face) + 4
    assert fit(draw, "LIME weight", 1000, face) == "LIME weight"
    short = fit(draw, "occlusion: mean drop of the score", 80, face)
    assert short.endswith("…") and text_width(draw, short, face) <= 80
    assert fit(draw, "anything", 0, face) == ""


def test_the_figures_colour_bar_label_keeps_its_space() -> None:
    image = np.full((60, 80, 3), 255, np.uint8)
    out = render_figure(image, np.zeros((2, 60, 80), np.float32), ["a", "b"], caption="LIME weight")
    label_row = out[-20:, 100:]  # the caption line under the bar and its tick labels
    ink = (label_row < 160).all(axis=2)
    found = gaps(ink)
    inside = max(gaps(drawn("LIME", 11, ours=True))[0], gaps(drawn("weight", 11, ours=True))[0])
    assert found and found[0] > inside and found[0] >= 4, found
