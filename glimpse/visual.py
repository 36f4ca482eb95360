"""How an attribution map is drawn: the visualisation options of the heatmap overlays and the
class grid figure, modelled on Vertex AI's image visualisation config (polarity, clip
percentiles, colour map, overlay base, pixels or outlines), and the drawing they choose.

The scale. With `polarity` `both` a value's magnitude is |a|; with `positive` max(a, 0),
with `negative` max(-a, 0) (the other sign is never coloured). `high`, the magnitude drawn at
full strength, is the `clip_upper` percentile of the magnitudes over the pixels (those above
saturate); nothing whose magnitude is below the `clip_lower` percentile is shown. The
defaults keep the renderings from before these options: an overlay scales by the largest
magnitude (100), the figure by the 99.9th percentile (shap's image_plot), and the lower
bound is 0 (every pixel shown) except for outlines (62, Vertex AI's default, so that the
outlined regions are the top 38 % of pixels).

Values are an (H, W) per-pixel map, or (m,) superpixel weights with `segments` (H, W), in
which case percentiles count each superpixel as many times as it has pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from glimpse.colormaps import ColorMap, ColorMapName, color_map

Polarity = Literal["positive", "negative", "both"]
POLARITIES: tuple[str, ...] = ("positive", "negative", "both")
#: What lies under the colours: the photo 60 % desaturated (the heatmap's base all along),
#: the photo, its luminance, the photo where something is shown and black elsewhere, nothing.
Base = Literal["muted", "original", "grayscale", "mask_black", "none"]
BASES: tuple[str, ...] = ("muted", "original", "grayscale", "mask_black", "none")
Draw = Literal["pixels", "outlines"]
DRAWS: tuple[str, ...] = ("pixels", "outlines")
#: Superpixels whose sign is uncertain, |weight| < UNCERTAIN_SE standard errors (weights_se):
#: drawn as the rest, or hatched (glimpse/render.py `hatch`).
Uncertain = Literal["show", "hatch"]
UNCERTAIN: tuple[str, ...] = ("show", "hatch")
UNCERTAIN_SE = 2.0

OVERLAY_UPPER, FIGURE_UPPER = 100.0, 99.9
PIXELS_LOWER, OUTLINES_LOWER = 0.0, 62.0
OPACITY = 0.55
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as Pillow's "L"


@dataclass(frozen=True)
class Visual:
    """The options as asked for; None: the default of the endpoint and `draw` (above)."""

    polarity: Polarity = "both"
    clip_upper: float | None = None
    clip_lower: float | None = None
    color_map: ColorMapName | None = None
    overlay: Base | None = None
    draw: Draw = "pixels"
    legend: bool = False
    max_side: int | None = None
    uncertain: Uncertain = "show"

    def upper(self, figure: bool = False) -> float:
        if self.clip_upper is not None:
            return float(self.clip_upper)
        return FIGURE_UPPER if figure else OVERLAY_UPPER

    def lower(self) -> float:
        if self.clip_lower is not None:
            return float(self.clip_lower)
        return OUTLINES_LOWER if self.draw == "outlines" else PIXELS_LOWER

    def cmap(self, figure: bool = False) -> ColorMap:
        return color_map(self.color_map or ("red_transparent_blue" if figure else "red_blue"))

    def base(self) -> Base:
        return self.overlay or ("original" if self.draw == "outlines" else "muted")

    def problems(self, figure: bool = False) -> list[tuple[str, str]]:
        """(option, what is wrong): the clip percentiles must be 0 <= lower < upper <= 100."""
        upper, lower = self.upper(figure), self.lower()
        found = []
        if not 0 <= upper <= 100:
            found.append(("clip_upper", f"must be within 0..100, not {upper:g}"))
        if not 0 <= lower <= 100:
            found.append(("clip_lower", f"must be within 0..100, not {lower:g}"))
        elif lower >= upper:
            found.append(("clip_lower", f"must be below clip_upper ({upper:g}), not {lower:g}"))
        if self.max_side is not None and self.max_side < 1:
            found.append(("max_side", f"must be at least 1, not {self.max_side}"))
        return found

    def key(self, options: tuple[str, ...], figure: bool = False) -> list[str]:
        """`name=value` for each of `options` whose resolved value differs from the default's:
        the part of a rendering's cache key these options make."""
        resolved, default = self._resolved(figure), Visual()._resolved(figure)
        return [f"{n}={resolved[n]!r}" for n in options if resolved[n] != default[n]]

    def _resolved(self, figure: bool) -> dict[str, object]:
        values: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(
            clip_upper=self.upper(figure),
            clip_lower=self.lower(),
            color_map=self.cmap(figure).name,
            overlay=self.base(),
            legend=int(self.legend),
        )
        return values


#: The options each rendering reads (the rest do not change it, nor its cache key).
HEATMAP_OPTIONS = tuple(f.name for f in fields(Visual))
FIGURE_OPTIONS = ("polarity", "clip_upper", "clip_lower", "color_map", "max_side")
SIZE_OPTIONS = ("max_side",)


# --- the scale -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scale:
    high: float  # the magnitude drawn at full strength (> 0)
    low: float  # magnitudes below this are not shown


def _floats(values: np.ndarray) -> np.ndarray:
    """values as they are if floating point (float32 maps are scaled in float32, as in 0.1),
    else as float64."""
    v = np.asarray(values)
    return v if np.issubdtype(v.dtype, np.floating) else v.astype(np.float64)


def magnitudes(values: np.ndarray, polarity: Polarity) -> np.ndarray:
    v = _floats(values)
    if polarity == "positive":
        return np.maximum(v, 0.0)
    if polarity == "negative":
        return np.maximum(-v, 0.0)
    return np.abs(v)


def percentile(values: np.ndarray, q: float, counts: np.ndarray | None = None) -> float:
    """np.percentile(values repeated counts times, q) (linear), without the repeating."""
    v = _floats(values).ravel()
    if counts is None:
        if not v.size:
            return 0.0
        if q in (0, 100):  # np.percentile's ends, without its partition
            return float(v.min() if q == 0 else v.max())
        return float(np.percentile(v, q))
    c = np.asarray(counts, np.int64).ravel()
    keep = c > 0
    v, c = v[keep], c[keep]
    if not v.size:
        return 0.0
    order = np.argsort(v, kind="stable")
    v, ends = v[order], np.cumsum(c[order])  # sorted pixel i holds v[searchsorted(ends, i+1)]
    rank = q / 100 * (int(ends[-1]) - 1)
    below = int(np.floor(rank))
    frac = rank - below
    first = v[np.searchsorted(ends, below + 1)]
    if frac == 0:
        return float(first)
    second = v[np.searchsorted(ends, below + 2)]
    return float(first + (second - first) * frac)


def scale_of(
    values: np.ndarray,
    visual: Visual,
    *,
    figure: bool = False,
    counts: np.ndarray | None = None,
) -> Scale:
    """The scale of `values` (any shape; only the finite ones count), counts as `percentile`."""
    v = _floats(values)
    finite = np.isfinite(v)
    if not finite.all():
        v, counts = v[finite], None if counts is None else np.asarray(counts)[finite]
    mags = magnitudes(v, visual.polarity)
    high = percentile(mags, visual.upper(figure), counts)
    high = high or float(mags.max(initial=0.0)) or 1.0
    return Scale(high=high, low=percentile(mags, visual.lower(), counts))


def signed(values: np.ndarray, polarity: Polarity, scale: Scale) -> tuple[np.ndarray, np.ndarray]:
    """-> (v, shown): v float32 in [-1, 1], the value over scale.high with the polarity's sign
    kept; shown bool, where a colour is drawn."""
    a = _floats(values)
    mags = magnitudes(a, polarity)
    shown = mags >= scale.low
    if polarity == "positive":
        shown &= a > 0
        a = mags
    elif polarity == "negative":
        shown &= a < 0
        a = -mags
    v = np.clip((a / scale.high).astype(np.float32), -1, 1)
    return np.nan_to_num(v), shown & np.isfinite(a)


# --- drawing ---------------------------------------------------------------------------------
def base_of(photo: np.ndarray, base: Base, shown: np.ndarray) -> np.ndarray:
    """photo (H, W, 3) float32 -> what lies under the colours, (H, W, 3) float32."""
    if base == "muted":
        out: np.ndarray = photo.mean(axis=2, keepdims=True) * 0.6 + photo * 0.4
        return out
    if base == "original":
        return photo
    if base == "grayscale":
        return np.repeat((photo @ _LUMA)[..., None], 3, axis=2)
    if base == "mask_black":
        return np.where(shown[..., None], photo, np.float32(0))
    if base == "none":
        return np.zeros_like(photo)
    raise ValueError(f"unknown overlay base {base!r}; use one of {', '.join(BASES)}")


def composite(
    under: np.ndarray,
    v: np.ndarray,
    shown: np.ndarray,
    cmap: ColorMap,
    opacity: float,
    colors: np.ndarray | None = None,
) -> np.ndarray:
    """The colours of v (H, W) where shown (`colors`: cmap.colors(v), where already known), at
    `opacity` (times |v| for a transparent map), over `under` (H, W, 3) float32 -> (H, W, 3)
    float32."""
    colors = cmap.colors(v) if colors is None else colors
    alpha = opacity * np.abs(v)[..., None] if cmap.transparent else opacity
    painted = under * (1 - alpha) + colors * alpha
    return painted if shown.all() else np.where(shown[..., None], painted, under)


def paint(
    photo: np.ndarray,
    values: np.ndarray,
    visual: Visual,
    *,
    segments: np.ndarray | None = None,
    opacity: float = OPACITY,
) -> tuple[np.ndarray, Scale]:
    """The heatmap of `values` over photo (H, W, 3) uint8, as `visual` says -> ((H, W, 3)
    float32, the scale it was drawn on)."""
    counts = None
    if segments is not None:
        counts = np.bincount(segments.ravel(), minlength=len(values))[: len(values)]
    scale = scale_of(values, visual, counts=counts)
    v, shown = signed(values, visual.polarity, scale)
    cmap, base = visual.cmap(), visual.base()
    colors = None
    if segments is not None:  # coloured per superpixel, then painted on its pixels
        colors = None if visual.draw == "outlines" else cmap.colors(v)[segments]
        v, shown = v[segments], shown[segments]
    under = base_of(photo.astype(np.float32), base, shown)
    if visual.draw == "outlines":
        return outlines(under, v, shown, cmap), scale
    alpha = 1.0 if base == "none" else opacity
    return composite(under, v, shown, cmap, alpha, colors), scale


def outlines(under: np.ndarray, v: np.ndarray, shown: np.ndarray, cmap: ColorMap) -> np.ndarray:
    """The outlines of the shown regions, each sign in its edge colour, over `under`."""
    out = under.copy()
    for sign in (1, -1):
        region = shown & ((v > 0) if sign > 0 else (v < 0))
        if region.any():
            out[thick_boundaries(region)] = cmap.edge(sign)
    return out


def thick_boundaries(mask: np.ndarray) -> np.ndarray:
    """mask (H, W) bool -> (H, W) bool: the pixels whose 4-neighbourhood holds both values,
    as skimage's find_boundaries(mask, mode="thick") (the image's edge extends itself).
    Written here so the API renders overlays without scikit-image and SciPy."""
    m = np.asarray(mask, bool)
    p = np.pad(m, 1, mode="edge")
    around = (p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:])
    anyone = m | around[0] | around[1] | around[2] | around[3]
    everyone = m & around[0] & around[1] & around[2] & around[3]
    return anyone & ~everyone
