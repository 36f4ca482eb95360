"""Explaining an image, as the worker's job, the CLI and bench all do it:

    decode → check against the model → explain (worker/engine) → result → stored artifacts

The job reads its image and params from Redis and writes what `Explained` gives back; the
CLI reads a file and writes a folder. Both call `explain_image`, so a request is checked,
explained and described by the same code wherever it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glimpse.cards import ModelCard
from glimpse.images import DecodedImage, decode_image, encode_png, encode_stored
from glimpse.limits import check_request
from glimpse.params import ExplainParams
from glimpse.result import ExplanationResult
from glimpse.settings import Settings
from worker.engine.evaluate import Progress
from worker.engine.explain import Explanation, explain
from worker.results import build_result
from worker.runtime.base import ModelRuntime


@dataclass(frozen=True)
class ModelInUse:
    """A model as the pipeline needs it: its name, card and labels, and a runtime around it."""

    name: str
    card: ModelCard
    labels: list[str]
    runtime: ModelRuntime


@dataclass(frozen=True)
class Explained:
    image: DecodedImage
    explanation: Explanation
    result: ExplanationResult

    def segments_png(self) -> bytes:
        """The superpixel ids as a 16-bit PNG at the original size."""
        return encode_png(self.explanation.segments.astype(np.uint16))

    def stored_maps(self) -> bytes | None:
        """The method's own per-pixel maps (gradcam, the gradient methods) and, for a
        comparison, every method's maps for its figure, compressed; None when there are
        neither: the other methods' maps are their weights painted on the segments."""
        comparison = self.explanation.comparison
        maps = None if comparison is None else np.stack([r.maps for r in comparison.runs])
        return encode_stored(self.explanation.pixel_maps, maps)


def decode(data: bytes, settings: Settings) -> DecodedImage:
    return decode_image(data, max_pixels=settings.max_image_pixels)


def check(params: ExplainParams, card: ModelCard, image: DecodedImage, settings: Settings) -> None:
    """Every check of a request against its model and image that can be made before a model
    is loaded (glimpse/limits.py; the API makes the same ones at submit)."""
    check_request(params, card, image.height, image.width, settings)


def explain_image(
    image: DecodedImage,
    model: ModelInUse,
    params: ExplainParams,
    settings: Settings,
    *,
    progress: Progress | None = None,
) -> Explained:
    """Check, explain and describe one image. Raises the request's GlimpseError (a 4xx for
    the API, one line for the CLI) or Cancelled from `progress`."""
    check(params, model.card, image, settings)
    explanation = explain(
        image.pixels,
        model.runtime,
        params,
        batch_size=params.batch_size or settings.batch_size,
        segment_max_side=settings.segment_max_side,
        max_design_size=settings.max_design_size,
        progress=progress,
    )
    result = build_result(
        explanation,
        model_name=model.name,
        runtime=model.runtime,
        labels=model.labels,
        image=image,
        params=params,
    )
    return Explained(image=image, explanation=explanation, result=result)
