"""Text on the figure and the overlay legends, in Pillow's built-in font.

Pillow's default font (Aileron Regular) has a narrow space: hinted at 11 px it advances 2 px,
no more than the gap between two letters, so "LIME weight" drawn by `ImageDraw.text` reads
"LIMEweight". These functions draw a line word by word with a space of at least a third of
the font size, and measure and shorten it the same way.
"""

from __future__ import annotations

from PIL import ImageDraw, ImageFont

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
INK = (40, 40, 40)


def font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _space(draw: ImageDraw.ImageDraw, face: Font) -> float:
    size = float(getattr(face, "size", 10))
    return max(float(draw.textlength(" ", font=face)), round(size / 3))


def text_width(draw: ImageDraw.ImageDraw, text: str, face: Font) -> float:
    """The width `draw_text` gives `text`, in pixels."""
    words = text.split(" ")
    inked = sum(float(draw.textlength(w, font=face)) for w in words)
    return inked + _space(draw, face) * (len(words) - 1)


def draw_text(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    face: Font,
    fill: tuple[int, int, int] = INK,
) -> None:
    """One line of text, its spaces at least a third of the font size wide."""
    x, y = xy
    space = _space(draw, face)
    for word in text.split(" "):
        if word:
            draw.text((x, y), word, fill=fill, font=face)
        x += float(draw.textlength(word, font=face)) + space


def fit(draw: ImageDraw.ImageDraw, text: str, limit: float, face: Font) -> str:
    """`text`, shortened with an ellipsis until `text_width` is at most `limit`."""
    while text and text_width(draw, text, face) > limit:
        text = text[:-2].rstrip() + "…" if len(text) > 2 else ""
    return text
