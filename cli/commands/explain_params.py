"""`glimpse explain`'s flags turned into the API's params (glimpse/params.py), and its errors
turned back into the flags' names."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from glimpse.errors import InvalidParams
from glimpse.params import ExplainParams, parse_params

SEGMENTATIONS = ("quickshift", "slic", "felzenszwalb", "grid")


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidParams(f"--{what}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidParams(f"--{what}: expected a JSON object")
    return value


def _segmentation(text: str) -> dict[str, Any]:
    text = text.strip()
    if text.startswith("{"):
        return _json_object(text, "segmentation")
    if text not in SEGMENTATIONS:
        raise InvalidParams(
            f"--segmentation: unknown algorithm {text!r}; use {', '.join(SEGMENTATIONS)} or JSON"
        )
    return {"algorithm": text}


def _background(text: str) -> dict[str, Any]:
    text = text.strip()
    if text.startswith("{"):
        return _json_object(text, "background")
    if text in {"black", "constant"}:
        return {"kind": "constant", "rgb": [0, 0, 0]}
    if text in {"mean", "blur", "noise", "inpaint_telea", "inpaint_ns"}:
        return {"kind": text}
    parts = text.split(",")
    if len(parts) == 3:
        try:
            return {"kind": "constant", "rgb": [int(v) for v in parts]}
        except ValueError:
            pass
    raise InvalidParams(
        f"--background: {text!r} is not black, mean, blur, noise, inpaint_telea, inpaint_ns, "
        "R,G,B or JSON"
    )


def _classes(text: str) -> list[int]:
    try:
        classes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InvalidParams(
            f"--classes: {text!r} is not a comma-separated list of integers"
        ) from None
    if not classes:
        raise InvalidParams("--classes: give at least one class index")
    return classes


def _samples(text: str) -> int | str:
    """`--samples`: an integer or "auto" (its range is checked by the API's rules)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise InvalidParams(f'--samples: {text!r} is neither an integer nor "auto"') from None


def params_from_args(args: argparse.Namespace, model_name: str | None) -> ExplainParams:
    raw: dict[str, Any] = {
        "num_samples": _samples(args.samples),
        "seed": args.seed,
        "output_space": args.output_space,
    }
    if args.method is not None:
        raw["method"] = args.method
    if args.methods is not None:
        raw["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.max_samples is not None:
        raw["max_samples"] = args.max_samples
    if args.tolerance is not None:
        raw["tolerance"] = args.tolerance
    if model_name is not None:
        raw["model"] = model_name
    if args.classes is not None:
        raw["targets"] = {"classes": _classes(args.classes)}
    elif args.top_k is not None:
        raw["targets"] = {"top_k": args.top_k}
    if args.segmentation:
        raw["segmentation"] = _segmentation(args.segmentation)
    if args.background:
        raw["background"] = _background(args.background)
    if args.batch_size is not None:
        raw["batch_size"] = args.batch_size
    occlusion = {
        key: value
        for key, value in (("window", args.window), ("stride", args.stride))
        if value is not None
    }
    if occlusion:
        raw["occlusion"] = occlusion
    if args.layer is not None:
        raw["gradcam"] = {"layer": args.layer}
    integral = {
        key: value
        for key, value in (
            ("steps", args.steps),
            ("rule", args.rule),
            ("noise_samples", args.noise_samples),
            ("noise_sigma", args.noise_sigma),
        )
        if value is not None
    }
    if integral:
        raw["integrated_gradients"] = integral
    try:
        return parse_params(raw, loc_prefix=())
    except InvalidParams as exc:  # name the option, not the API's key
        first = (exc.errors or [{"loc": [], "msg": exc.detail}])[0]
        key = str(first["loc"][0]) if first["loc"] else ""
        flag = _FLAGS.get(key, key)
        raise InvalidParams(f"{flag}: {first['msg']}", errors=exc.errors) from None


_FLAGS = {
    "num_samples": "--samples",
    "max_samples": "--max-samples",
    "tolerance": "--tolerance",
    "targets": "--top-k/--classes",
    "seed": "--seed",
    "method": "--method",
    "methods": "--methods",
    "segmentation": "--segmentation",
    "background": "--background",
    "batch_size": "--batch-size",
    "output_space": "--output-space",
    "model": "--model",
    "occlusion": "--window/--stride",
    "gradcam": "--layer",
    "integrated_gradients": "--steps/--rule/--noise-samples/--noise-sigma",
}


def naming_the_option(exc: InvalidParams, image_path: Path) -> InvalidParams:
    """A shared check's error ("params.occlusion.stride: …", "image: …") naming the option
    or the file instead of the API's key, where there is one."""
    loc = [str(part) for part in (exc.errors or [{"loc": []}])[0]["loc"]]
    if loc == ["image"]:
        name = str(image_path)
    elif loc[:1] == ["params"] and len(loc) > 1 and loc[1] in _FLAGS:
        name = _FLAGS[loc[1]]
    else:
        return exc
    detail = re.sub(r"^[\w.]+: ", "", exc.detail)
    return InvalidParams(f"{name}: {detail}", errors=exc.errors)
