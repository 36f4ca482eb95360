"""The artifacts of a finished job as the API serves them: segments.png as the worker stored
it; attribution.npy, hierarchy.npy, figure.png and overlay.png drawn on request by
glimpse/artifacts.py (as `glimpse explain` draws them).

Each request reads the store once (`JobStore.artifacts`: the job, its segments, its maps and
its image in one round trip) and decodes the image at most once. The figure and overlays,
seconds of work on a 12-megapixel photo, are kept in the job's renders hash under the options
that drew them (`render_key`) and answered from there when asked for again; they go with the
job, when it expires or is deleted.
"""

from __future__ import annotations

import logging

import numpy as np
from redis.exceptions import RedisError

from glimpse import artifacts
from glimpse.errors import GlimpseError, InvalidParams, NotFound
from glimpse.images import decode_image, decode_segments_png, decode_stored
from glimpse.render import OverlayStyle
from glimpse.result import ExplanationResult
from glimpse.settings import Settings
from glimpse.shrink import shrink_maps
from glimpse.store import JobArtifacts, JobStore
from glimpse.visual import FIGURE_OPTIONS, HEATMAP_OPTIONS, SIZE_OPTIONS, Visual

log = logging.getLogger("glimpse.api")

#: The renders-hash field of the class grid figure (figure.png, overlay.png?style=grid).
FIGURE = "figure"


class NotFinished(GlimpseError):
    status = 409
    title = "Not finished"


def finished(
    store: JobStore, job_id: str, *, render: str = "", maps: bool = False, image: bool = False
) -> JobArtifacts:
    """A finished job and what was asked for of it (`JobStore.artifacts`), in one round trip;
    404 for an unknown job, 409 for one not finished."""
    found = store.artifacts(job_id, render=render, maps=maps, image=image)
    if found is None:
        raise NotFound(f"no explanation job {job_id!r}")
    job = found.job
    if job.status != "finished" or job.result_json is None:
        raise NotFinished(f"job {job_id} is {job.status}; its artifacts exist once it is finished")
    return found


def _result(found: JobArtifacts) -> ExplanationResult:
    return ExplanationResult.model_validate_json(found.job.result_json or "")


def _segments(found: JobArtifacts) -> np.ndarray:
    if found.segments_png is None:
        raise NotFound(f"the segments of job {found.job.id} are gone")
    return decode_segments_png(found.segments_png)


def _pixel_maps(found: JobArtifacts) -> np.ndarray | None:
    """(K, H, W) float32: the method's own maps where it stored them (gradcam, the gradient
    methods), else None."""
    return decode_stored(found.attribution)[0]


def _segments_if_needed(
    found: JobArtifacts, style: OverlayStyle | None, pixel_maps: np.ndarray | None
) -> np.ndarray | None:
    needed = artifacts.needs_segments(style, pixel_maps is not None)
    return _segments(found) if needed else None


def _image(found: JobArtifacts, settings: Settings) -> np.ndarray:
    if found.image is None:
        raise NotFound(f"the image of job {found.job.id} is gone")
    return decode_image(found.image, max_pixels=settings.max_image_pixels).pixels


def _keep(store: JobStore, job_id: str, render: str, png: bytes) -> None:
    """Cache a rendering. The response never waits on the cache: a write that fails costs
    only a rendering on the next request."""
    try:
        store.cache_render(job_id, render, png)
    except RedisError as exc:
        log.warning("rendering %s of job %s not cached: %s", render, job_id, exc)


def segments_png(store: JobStore, job_id: str) -> bytes:
    found = finished(store, job_id)
    if found.segments_png is None:
        raise NotFound(f"the segments of job {job_id} are gone")
    return found.segments_png


def attribution_npy(
    store: JobStore, job_id: str, *, dtype: str = "float32", max_side: int | None = None
) -> bytes:
    """float32 [K, H, W] (glimpse/artifacts.py `attribution_maps`); as float16, or
    area-averaged to a longer side of at most max_side, when asked."""
    found = finished(store, job_id, maps=True)
    pixel_maps = _pixel_maps(found)
    segments = _segments_if_needed(found, None, pixel_maps)
    maps = artifacts.attribution_maps(_result(found), segments, pixel_maps)
    return artifacts.npy(shrink_maps(maps, max_side), dtype)


def hierarchy_npy(store: JobStore, job_id: str) -> bytes:
    """partition_shap's coarse-to-fine maps: float32 [K, L, H, W] (glimpse/hierarchy.py)."""
    found = finished(store, job_id)
    result = _result(found)
    if result.hierarchy is None:
        raise NotFound(
            f"job {job_id} used method {result.method!r}, which has no hierarchy; "
            "only partition_shap has one"
        )
    return artifacts.npy(artifacts.hierarchy_maps(result, _segments(found)))


def figure_key(visual: Visual) -> str:
    """The renders-hash field of the figure: `figure`, then the visualisation options it
    reads that differ from their defaults (so the default keeps the field it always had)."""
    return ";".join([FIGURE, *visual.key(FIGURE_OPTIONS, figure=True)])


def figure_png(
    store: JobStore,
    settings: Settings,
    job_id: str,
    visual: Visual | None = None,
    *,
    compare: bool = False,
) -> bytes:
    """The image and every explained class side by side on one colour scale, as shap's
    image_plot draws them; with `compare`, every method of a comparison job side by side
    (glimpse/compare_figure.py)."""
    visual = visual or Visual()
    render = figure_key(visual) + (";compare" if compare else "")
    found = finished(store, job_id, render=render, maps=True, image=True)
    if found.render is not None:
        return found.render
    result = _result(found)
    if compare:
        maps = decode_stored(found.attribution)[1]
        if result.comparison is None or maps is None:
            raise NotFound(
                f"job {job_id} ran one method ({result.method}); submit with params.methods "
                "to compare several"
            )
        png = artifacts.comparison_png(_image(found, settings), result, maps, visual)
        _keep(store, job_id, render, png)
        return png
    pixel_maps = _pixel_maps(found)
    maps = artifacts.attribution_maps(
        result, _segments_if_needed(found, None, pixel_maps), pixel_maps
    )
    png = artifacts.figure_png(_image(found, settings), result, maps, visual)
    _keep(store, job_id, render, png)
    return png


def render_key(
    style: OverlayStyle,
    class_index: int | None,
    *,
    negative: bool,
    num_features: int,
    percentile: float,
    visual: Visual | None = None,
) -> str:
    """The renders-hash field of an overlay: its style, its class (empty: the first explained)
    and the options that style reads, so that options it ignores share one rendering. The
    visualisation options (the heatmap's; max_side for the others) are named only where
    they differ from their defaults, so a default rendering keeps the field it always had."""
    visual = visual or Visual()
    parts = [f"overlay:{style}", f"class_index={'' if class_index is None else class_index}"]
    if style == "boundaries":
        parts += [f"num_features={num_features}", f"negative={int(negative)}"]
    elif style == "highlight":
        parts.append(f"percentile={float(percentile)!r}")
    parts += visual.key(HEATMAP_OPTIONS if style == "heatmap" else SIZE_OPTIONS)
    return ";".join(parts)


def overlay_png(
    store: JobStore,
    settings: Settings,
    job_id: str,
    *,
    class_index: int | None,
    style: OverlayStyle,
    negative: bool,
    num_features: int,
    percentile: float,
    visual: Visual | None = None,
) -> bytes:
    visual = visual or Visual()
    if style == "grid":
        return figure_png(store, settings, job_id, visual)
    render = render_key(
        style,
        class_index,
        negative=negative,
        num_features=num_features,
        percentile=percentile,
        visual=visual,
    )
    found = finished(store, job_id, render=render, maps=True, image=True)
    if found.render is not None:
        return found.render
    result = _result(found)
    index = _index(result, class_index)
    image = _image(found, settings)
    pixel_maps = _pixel_maps(found)
    segments = _segments_if_needed(found, style, pixel_maps)
    png = artifacts.overlay_png(
        image,
        result,
        segments,
        pixel_maps,
        index=index,
        style=style,
        negative=negative,
        num_features=num_features,
        percentile=percentile,
        visual=visual,
    )
    _keep(store, job_id, render, png)
    return png


def _index(result: ExplanationResult, class_index: int | None) -> int:
    """The position in `result.explanations` of class `class_index` (None: the first)."""
    if class_index is None:
        return 0
    for k, e in enumerate(result.explanations):
        if e.class_index == class_index:
            return k
    explained = [e.class_index for e in result.explanations]
    raise InvalidParams(
        f"class_index {class_index} was not explained; this job explains {explained}",
        errors=[{"loc": ["query", "class_index"], "msg": f"must be one of {explained}"}],
    )
