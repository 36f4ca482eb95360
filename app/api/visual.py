"""The visualisation options of overlay.png, figure.png and attribution.npy as query
parameters (glimpse/visual.py says what each does), gathered into a `Visual` by a dependency:
a value of the wrong type or range is FastAPI's 422 at `["query", name]`; clip percentiles
out of order are the same 422 at `["query", "clip_lower"]`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query

from glimpse.colormaps import ColorMapName
from glimpse.errors import InvalidParams
from glimpse.visual import Base, Draw, Polarity, Uncertain, Visual

MAX_SIDE_LIMIT = 16384

PolarityQuery = Annotated[
    Polarity,
    Query(
        description="which signs of attribution are coloured: `positive`, `negative` or "
        "`both` (the default)"
    ),
]
ClipUpperQuery = Annotated[
    float | None,
    Query(
        ge=0,
        le=100,
        description="the percentile of |attribution| drawn at full strength (stronger ones "
        "saturate); default 100 (the largest) for overlays, 99.9 for the figure (as shap)",
    ),
]
ClipLowerQuery = Annotated[
    float | None,
    Query(
        ge=0,
        le=100,
        description="attributions whose magnitude is below this percentile are not shown; "
        "below clip_upper; default 0 (every pixel shown), 62 with draw=outlines (Vertex AI's)",
    ),
]
ColorMapQuery = Annotated[
    ColorMapName | None,
    Query(
        description="`red_blue` (ColorBrewer RdBu; the overlays' default), `pink_green` "
        "(PiYG), `viridis` and `grays` (|attribution|), `red_transparent_blue` (shap's; the "
        "figure's default)"
    ),
]
MaxSideQuery = Annotated[
    int | None,
    Query(
        ge=16,
        le=MAX_SIDE_LIMIT,
        description="draw at a size whose longer side is at most this many pixels (the photo "
        "and maps are area-averaged first, so a large photo draws quickly); default: the "
        "original size",
    ),
]


def checked(visual: Visual, *, figure: bool) -> Visual:
    problems = visual.problems(figure)
    if problems:
        raise InvalidParams(
            "; ".join(f"{name} {msg}" for name, msg in problems),
            errors=[{"loc": ["query", name], "msg": msg} for name, msg in problems],
        )
    return visual


async def overlay_visual(
    polarity: PolarityQuery = "both",
    clip_upper: ClipUpperQuery = None,
    clip_lower: ClipLowerQuery = None,
    color_map: ColorMapQuery = None,
    overlay: Annotated[
        Base | None,
        Query(
            description="what lies under the colours: `muted` (the photo 60 % desaturated; "
            "the default for pixels), `original` (the default for outlines), `grayscale`, "
            "`mask_black` (black where nothing is shown), `none` (the colours alone)"
        ),
    ] = None,
    draw: Annotated[
        Draw,
        Query(
            description="`pixels` (every shown pixel coloured) or `outlines` (the outlines of "
            "the regions above clip_lower, positive and negative in the map's two colours)"
        ),
    ] = "pixels",
    legend: Annotated[
        bool, Query(description="draw a colour bar with its label along the bottom edge")
    ] = False,
    max_side: MaxSideQuery = None,
    uncertain: Annotated[
        Uncertain,
        Query(
            description="`hatch`: diagonal hatching over the superpixels whose sign is "
            "uncertain, |weight| < 2 standard errors (`weights_se`: lime and kernel_shap; a "
            "422 for a method without them); `show` (the default): drawn as the rest"
        ),
    ] = "show",
) -> Visual:
    visual = Visual(
        polarity, clip_upper, clip_lower, color_map, overlay, draw, legend, max_side, uncertain
    )
    return checked(visual, figure=False)


async def figure_visual(
    polarity: PolarityQuery = "both",
    clip_upper: ClipUpperQuery = None,
    clip_lower: ClipLowerQuery = None,
    color_map: ColorMapQuery = None,
    max_side: MaxSideQuery = None,
) -> Visual:
    visual = Visual(polarity, clip_upper, clip_lower, color_map, max_side=max_side)
    return checked(visual, figure=True)


MapMaxSideQuery = Annotated[
    int | None,
    Query(
        ge=16,
        le=MAX_SIDE_LIMIT,
        description="area-average each map to a size whose longer side is at most this many "
        "pixels (each value the mean of the pixels it covers); default: the original size",
    ),
]
OverlayVisualDep = Annotated[Visual, Depends(overlay_visual)]
FigureVisualDep = Annotated[Visual, Depends(figure_visual)]
DtypeQuery = Annotated[
    Literal["float32", "float16"],
    Query(description="`float32` (the default) or `float16` (half the bytes)"),
]
