"""`glimpse explain IMAGE...`: explanations in this process (no Redis), written to folders.

Writes DIR/result.json (the `result` object of docs/api.md), DIR/attribution.npy (float32
[K, H, W]), DIR/segments.png (16-bit superpixel ids), DIR/overlay-<class_index>.png,
DIR/figure.png (every explained class side by side; both drawn as the visualisation flags
of cli/commands/explain_visual.py say), for partition_shap
DIR/hierarchy.npy (float32 [K, L, H, W], the split tree's coarse-to-fine maps) and, with
--methods, DIR/figure-compare.png (every method side by side, as figure.png?compare=true).

With several images, each gets a folder of its own under DIR (`out_dirs`), every image is
read and checked before the model loads, and the model loads once for all of them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.commands import explain_visual
from cli.commands.explain_params import (
    SEGMENTATIONS,
    naming_the_option,
    params_from_args,
)
from glimpse.cards import ModelCard, ModelRegistry
from glimpse.errors import GlimpseError, InvalidParams, NotFound, UnsupportedImage
from glimpse.params import Method

if TYPE_CHECKING:  # the worker is imported when a command runs: `glimpse --help` stays quick
    from glimpse.images import DecodedImage
    from glimpse.settings import Settings
    from glimpse.visual import Visual
    from worker.pipeline import Explained

METHODS: tuple[str, ...] = typing.get_args(Method)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="explain images in this process (no Redis)",
        description="Explain why a model classifies each IMAGE as it does (LIME, Kernel SHAP, "
        "Partition SHAP, Grad-CAM, occlusion, Integrated Gradients or XRAI).",
    )
    p.add_argument(
        "image",
        metavar="IMAGE",
        nargs="+",
        help="JPEG, PNG, WebP, BMP or TIFF file; several are explained one after the other "
        "with the model loaded once",
    )
    p.add_argument(
        "--model",
        metavar="NAME|FILE.onnx",
        help="a registered model name, or an .onnx file (default: the settings' default model)",
    )
    p.add_argument("--method", choices=METHODS, help="default: lime, or the first of --methods")
    p.add_argument(
        "--methods",
        metavar="M,M,...",
        help="compare 2-7 methods in one run on the same superpixels (the first is --method); "
        "result.json gains `comparison`, the folder figure-compare.png",
    )
    p.add_argument(
        "--window", type=int, metavar="PX", help="occlusion: window side in pixels (default 32)"
    )
    p.add_argument(
        "--stride", type=int, metavar="PX", help="occlusion: stride in pixels (default 16)"
    )
    p.add_argument(
        "--layer",
        metavar="NAME",
        help="gradcam: the feature map (tensor or node name; default: chosen automatically)",
    )
    p.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="integrated_gradients, xrai: points of the path integral (1..300, default 50)",
    )
    p.add_argument(
        "--rule",
        choices=("riemann", "gauss_legendre"),
        help="integrated_gradients, xrai: quadrature of the path integral (default riemann)",
    )
    p.add_argument(
        "--noise-samples",
        type=int,
        metavar="N",
        help="integrated_gradients, xrai: SmoothGrad noisy copies per point (default 0: off)",
    )
    p.add_argument(
        "--noise-sigma",
        type=float,
        metavar="S",
        help="integrated_gradients, xrai: SmoothGrad noise, a fraction of the input range (0.1)",
    )
    p.add_argument(
        "--samples",
        default="1000",
        metavar="N|auto",
        help='model evaluations (10..100000), or "auto": rounds until the top superpixels '
        "are settled, at most --max-samples",
    )
    p.add_argument(
        "--max-samples",
        type=int,
        metavar="N",
        help='the most "auto" may spend (default 20000)',
    )
    p.add_argument(
        "--tolerance",
        type=float,
        metavar="T",
        help='the top 5 superpixels are settled (and "auto" stops) once none outside them '
        "can exceed one inside by more than T of the weights' total (default 0.01)",
    )
    targets = p.add_mutually_exclusive_group()
    targets.add_argument(
        "--top-k", type=int, metavar="K", help="explain the K top classes (default 1)"
    )
    targets.add_argument("--classes", metavar="I,J", help="explain these class indices")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default ./glimpse-out/<image stem>); with several images, "
        "DIR/<image stem>/ each (default ./glimpse-out/<image stem>/; a stem met again "
        "gets -2, -3, ...)",
    )
    p.add_argument(
        "--segmentation",
        metavar="ALGO|JSON",
        help=f"{'|'.join(SEGMENTATIONS)} with its defaults, or a JSON object as in the API "
        "(default quickshift, lime's settings)",
    )
    p.add_argument(
        "--background",
        metavar="KIND|R,G,B|JSON",
        help="what hidden superpixels show (and the gradient methods' baseline): black "
        "(default), mean, blur, noise, inpaint_telea, inpaint_ns, R,G,B or a JSON object",
    )
    p.add_argument("--batch-size", type=int, metavar="B", help="evaluations per model call")
    p.add_argument("--output-space", choices=("probability", "logit"), default="probability")
    p.add_argument(
        "--labels", metavar="FILE", help="labels file for an .onnx --model (default: numbers)"
    )
    p.add_argument(
        "--preset",
        default="imagenet",
        help="preprocessing preset for an .onnx --model (imagenet, imagenet-squash)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    explain_visual.register(p)
    p.set_defaults(run=run)


# --- the model ------------------------------------------------------------------------------
@dataclass
class CliModel:
    name: str
    card: ModelCard
    labels: list[str]
    path: Path
    registered: bool


def resolve_model(args: argparse.Namespace, models_dir: Path, default: str) -> CliModel:
    """A registered name, or a path to an .onnx file (card built from the graph)."""
    from glimpse.modelfiles import card_from_graph, inspect_onnx, read_labels

    spec = args.model or default
    path = Path(spec)
    if spec.lower().endswith(".onnx") or (path.is_file() and "/" in spec):
        if not path.is_file():
            raise NotFound(f"no model file {spec}")
        card = card_from_graph(inspect_onnx(path), args.preset, labels_file=None)
        if args.labels:
            labels = read_labels(Path(args.labels))
            if len(labels) != card.num_classes:
                raise InvalidParams(
                    f"--labels: {args.labels} has {len(labels)} labels, "
                    f"the model has {card.num_classes} classes"
                )
        else:
            labels = [str(i) for i in range(card.num_classes)]
        return CliModel(name=path.stem, card=card, labels=labels, path=path, registered=False)
    registry = ModelRegistry(models_dir)
    try:
        registered = registry.get(spec)
    except NotFound:
        known = registry.names()
        hint = f"registered: {', '.join(known)}" if known else "none is registered"
        raise NotFound(
            f"no model named {spec!r} in {models_dir} ({hint}); see `glimpse models add`, "
            "`glimpse models fetch resnet50`, or pass --model FILE.onnx"
        ) from None
    if not registered.onnx_path.is_file():
        raise NotFound(f"model {spec!r} has no model.onnx in {registered.folder}")
    return CliModel(
        name=registered.name,
        card=registered.card,
        labels=registered.labels,
        path=registered.onnx_path,
        registered=True,
    )


# --- the command ----------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from glimpse.settings import get_settings
    from worker.pipeline import ModelInUse, check, explain_image
    from worker.runtime.loader import build_runtime

    settings = get_settings()
    paths = [Path(image) for image in args.image]
    for path in paths:
        if not path.is_file():
            raise NotFound(f"no such image file: {path}")
    params = params_from_args(args, None)
    visual = explain_visual.visual_from_args(args)
    model_ref = resolve_model(args, settings.models_dir, settings.default_model)
    if model_ref.registered:
        params = params.model_copy(update={"model": model_ref.name})
    # Every image is read and passes the API's and the worker's own checks before the model
    # loads; with several, each is decoded again when its turn comes (one held at a time).
    decoded: list[DecodedImage] = []
    for path in paths:
        image = _read_image(path, settings)
        try:
            check(params, model_ref.card, image, settings)
        except InvalidParams as exc:
            raise naming_the_option(exc, path) from None
        decoded = [image] if len(paths) == 1 else []
    runtime = build_runtime(model_ref.path, model_ref.card, settings)
    model = ModelInUse(model_ref.name, model_ref.card, model_ref.labels, runtime)
    for path, out in zip(paths, out_dirs(paths, args.out), strict=True):
        image = decoded[0] if decoded else _read_image(path, settings)
        desc = "evaluating" if len(paths) == 1 else path.name
        try:
            with _ProgressBar(disable=args.quiet, desc=desc) as bar:
                explained = explain_image(image, model, params, settings, progress=bar.update)
        except GlimpseError as exc:
            if len(paths) > 1:  # which of them
                exc.detail = f"{path}: {exc.detail}"
            raise
        result = explained.result
        _write(out, image, explained, visual)
        top = result.predictions[0]
        print(
            f"{path.name}: {top.label!r} ({top.class_index}) p={top.probability:.3f}; "
            f"{params.method} over {result.segments.count} regions, "
            f"{result.stats.model_evaluations} evaluations in {result.stats.seconds:.1f} s "
            f"-> {out}"
        )
        for warning in result.warnings:  # also in result.json
            prefix = "warning: " if len(paths) == 1 else f"warning: {path.name}: "
            print(f"{prefix}{warning}", file=sys.stderr)
    return 0


def out_dirs(paths: list[Path], out: str | None) -> list[Path]:
    """Each image's output folder. One image: DIR (default glimpse-out/<stem>). Several:
    DIR/<stem> each (default glimpse-out/<stem>); the first image of a stem keeps it, a later
    one gets <stem>-2, <stem>-3, ..., the first not taken by an earlier image or by another
    image's own stem (a.png a.jpg a-2.png: a, a-3, a-2)."""
    if len(paths) == 1:
        return [Path(out) if out else Path("glimpse-out") / paths[0].stem]
    root = Path(out) if out else Path("glimpse-out")
    stems = {path.stem for path in paths}
    taken: set[str] = set()
    dirs = []
    for path in paths:
        name, k = path.stem, 1
        while name in taken or (k > 1 and name in stems):
            k += 1
            name = f"{path.stem}-{k}"
        taken.add(name)
        dirs.append(root / name)
    return dirs


def _read_image(path: Path, settings: Settings) -> DecodedImage:
    """The decoded image of a file, or one line naming it."""
    from worker.pipeline import decode

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}") from None
    try:
        return decode(data, settings)
    except UnsupportedImage as exc:
        detail = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", exc.detail)
        raise UnsupportedImage(f"{path}: {detail}") from None


def _write(out: Path, image: DecodedImage, explained: Explained, visual: Visual) -> None:
    """The files of one explanation (the module docstring) in folder `out`."""
    import numpy as np

    from glimpse import artifacts

    explanation, result = explained.explanation, explained.result
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(
            json.dumps(result.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
        )
        # Drawn as the API draws them (glimpse/artifacts.py), from the result and the arrays
        # a job stores: segments, and the method's own maps where it has them.
        segments, pixel_maps = explanation.segments, explanation.pixel_maps
        maps = artifacts.attribution_maps(result, segments, pixel_maps)
        (out / "attribution.npy").write_bytes(artifacts.npy(maps))
        (out / "segments.png").write_bytes(explained.segments_png())
        for k, e in enumerate(result.explanations):
            overlay = artifacts.overlay_png(
                image.pixels, result, segments, pixel_maps, index=k, visual=visual
            )
            (out / f"overlay-{e.class_index}.png").write_bytes(overlay)
        figure = artifacts.figure_png(image.pixels, result, maps, visual)
        (out / "figure.png").write_bytes(figure)
        if explanation.comparison is not None:
            compared = np.stack([run.maps for run in explanation.comparison.runs])
            figure = artifacts.comparison_png(image.pixels, result, compared, visual)
            (out / "figure-compare.png").write_bytes(figure)
        if result.hierarchy is not None:
            levels = artifacts.hierarchy_maps(result, segments)
            (out / "hierarchy.npy").write_bytes(artifacts.npy(levels))
    except OSError as exc:
        raise GlimpseError(f"cannot write to {out}: {exc}") from None


class _ProgressBar:
    """tqdm on stderr, driven by the engine's progress(done, total) callback."""

    def __init__(self, *, disable: bool, desc: str = "evaluating") -> None:
        self.disable = disable
        self.desc = desc
        self.bar: Any = None

    def __enter__(self) -> _ProgressBar:
        if not self.disable:
            from tqdm import tqdm

            self.bar = tqdm(total=1, unit="eval", file=sys.stderr, desc=self.desc, leave=True)
        return self

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
