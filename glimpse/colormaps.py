"""The named colour maps of the overlays and the figure, as small RGB lookup tables (no
matplotlib: the API draws with NumPy and Pillow alone).

A diverging map colours a signed value v in [-1, 1] (negative at its first stop, zero in the
middle, positive at its last); a sequential map colours a magnitude in [0, 1] (the value's
absolute value). A transparent map (shap's red_transparent_blue) paints one colour per sign
and lets the value's magnitude set the opacity, zero fully transparent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ColorMapName = Literal["red_blue", "pink_green", "viridis", "grays", "red_transparent_blue"]
COLOR_MAP_NAMES: tuple[str, ...] = (
    "red_blue",
    "pink_green",
    "viridis",
    "grays",
    "red_transparent_blue",
)


@dataclass(frozen=True)
class ColorMap:
    name: str
    stops: np.ndarray  # (n, 3) float32 RGB 0..255, evenly spaced over the map's domain
    diverging: bool  # domain [-1, 1] (signed) rather than [0, 1] (magnitude)
    transparent: bool = False  # opacity ∝ |v|; the stops are the negative and positive colour

    def colors(self, values: np.ndarray) -> np.ndarray:
        """values (any shape): signed in [-1, 1]; a sequential map reads their magnitude ->
        RGB float32 0..255 of shape values.shape + (3,)."""
        v = np.asarray(values, np.float32)
        if self.transparent:
            return np.where((v >= 0)[..., None], self.stops[-1], self.stops[0])
        if self.diverging:
            pos = (np.clip(v, -1, 1) + 1) / 2 * (len(self.stops) - 1)
        else:
            pos = np.clip(np.abs(v), 0, 1) * (len(self.stops) - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, len(self.stops) - 1)
        frac = (pos - lo)[..., None]
        out: np.ndarray = self.stops[lo] * (1 - frac) + self.stops[hi] * frac
        return out

    def edge(self, sign: int) -> np.ndarray:
        """The colour outlines of regions of `sign` (+1, -1) are drawn in: a strong colour of
        the map (±0.8 of a diverging map; the top of a sequential one)."""
        if self.transparent:
            return self.stops[-1] if sign > 0 else self.stops[0]
        return self.colors(np.array(0.8 * sign if self.diverging else 1.0, np.float32))


def _stops(rgb: list[tuple[int, int, int]]) -> np.ndarray:
    return np.array(rgb, dtype=np.float32)


COLOR_MAPS: dict[str, ColorMap] = {
    # ColorBrewer RdBu reversed: negative blue, positive red (the heatmap's map all along).
    "red_blue": ColorMap(
        "red_blue",
        _stops(
            [
                (5, 48, 97),
                (33, 102, 172),
                (67, 147, 195),
                (146, 197, 222),
                (209, 229, 240),
                (247, 247, 247),
                (253, 219, 199),
                (244, 165, 130),
                (214, 96, 77),
                (178, 24, 43),
                (103, 0, 31),
            ]
        ),
        diverging=True,
    ),
    # ColorBrewer PiYG: negative pink, positive green (Vertex AI's PINK_GREEN).
    "pink_green": ColorMap(
        "pink_green",
        _stops(
            [
                (142, 1, 82),
                (197, 27, 125),
                (222, 119, 174),
                (241, 182, 218),
                (253, 224, 239),
                (247, 247, 247),
                (230, 245, 208),
                (184, 225, 134),
                (127, 188, 65),
                (77, 146, 33),
                (39, 100, 25),
            ]
        ),
        diverging=True,
    ),
    # viridis (matplotlib's, sampled at 11 points): |attribution| from dark blue to yellow.
    "viridis": ColorMap(
        "viridis",
        _stops(
            [
                (68, 1, 84),
                (72, 36, 117),
                (65, 68, 135),
                (53, 95, 141),
                (42, 120, 142),
                (33, 145, 140),
                (34, 168, 132),
                (68, 191, 112),
                (122, 209, 81),
                (189, 223, 38),
                (253, 231, 37),
            ]
        ),
        diverging=False,
    ),
    # |attribution| from black to white.
    "grays": ColorMap("grays", _stops([(0, 0, 0), (255, 255, 255)]), diverging=False),
    # shap's red_transparent_blue: the class grid figure's map.
    "red_transparent_blue": ColorMap(
        "red_transparent_blue",
        _stops([(30, 136, 229), (255, 13, 87)]),
        diverging=True,
        transparent=True,
    ),
}


def color_map(name: str) -> ColorMap:
    try:
        return COLOR_MAPS[name]
    except KeyError:
        raise ValueError(
            f"unknown colour map {name!r}; use one of {', '.join(COLOR_MAP_NAMES)}"
        ) from None
