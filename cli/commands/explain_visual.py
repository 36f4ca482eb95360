"""`glimpse explain`'s visualisation flags: how overlay-<class>.png and figure.png are drawn,
the API's overlay.png and figure.png query options (glimpse/visual.py) under flag names."""

from __future__ import annotations

import argparse

from glimpse.colormaps import COLOR_MAP_NAMES
from glimpse.errors import InvalidParams
from glimpse.visual import BASES, DRAWS, POLARITIES, Visual

MIN_SIDE = 16


def register(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "visualisation", "how the overlays (and, where it applies, figure.png) are drawn"
    )
    g.add_argument(
        "--polarity", choices=POLARITIES, default="both", help="the signs coloured (both)"
    )
    g.add_argument(
        "--clip",
        metavar="LOWER,UPPER",
        help="percentiles of |attribution|: nothing shown below LOWER, full strength from "
        "UPPER (default 0,100 for overlays, 0,99.9 for the figure; 62 for LOWER with "
        "--draw outlines); one number is UPPER",
    )
    g.add_argument(
        "--color-map",
        choices=COLOR_MAP_NAMES,
        help="default red_blue for overlays, red_transparent_blue (shap's) for the figure",
    )
    g.add_argument(
        "--overlay",
        choices=BASES,
        help="the base under the colours (default muted for pixels, original for outlines)",
    )
    g.add_argument("--draw", choices=DRAWS, default="pixels", help="pixels or outlines")
    g.add_argument("--legend", action="store_true", help="a colour bar on each overlay")
    g.add_argument(
        "--max-side",
        type=int,
        metavar="PX",
        help="draw the overlays and the figure with a longer side of at most PX pixels",
    )


def _clip(text: str | None) -> tuple[float | None, float | None]:
    if text is None:
        return None, None
    parts = [part.strip() for part in text.split(",")]
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        raise InvalidParams(f"--clip: {text!r} is not LOWER,UPPER or UPPER") from None
    if len(numbers) == 1:
        return None, numbers[0]
    if len(numbers) == 2:
        return numbers[0], numbers[1]
    raise InvalidParams(f"--clip: {text!r} is not LOWER,UPPER or UPPER")


def visual_from_args(args: argparse.Namespace) -> Visual:
    """The flags as a Visual, checked as the API checks them (for the overlays and the
    figure); InvalidParams naming the flag otherwise."""
    lower, upper = _clip(args.clip)
    if args.max_side is not None and args.max_side < MIN_SIDE:
        raise InvalidParams(f"--max-side: must be at least {MIN_SIDE}, not {args.max_side}")
    visual = Visual(
        polarity=args.polarity,
        clip_upper=upper,
        clip_lower=lower,
        color_map=args.color_map,
        overlay=args.overlay,
        draw=args.draw,
        legend=args.legend,
        max_side=args.max_side,
    )
    for figure in (False, True):
        for name, msg in visual.problems(figure):
            part = "LOWER" if name == "clip_lower" else "UPPER"
            raise InvalidParams(f"--clip: {part} {msg.replace('clip_upper', 'UPPER')}")
    return visual
