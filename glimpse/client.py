"""A Python client for the Glimpse API.

    from glimpse.client import GlimpseClient

    with GlimpseClient("http://127.0.0.1:8000") as glimpse:
        explained = glimpse.explain("cat.jpg", method="kernel_shap", num_samples=2000)
        print(explained.result.explanations[0].label)
        open("overlay.png", "wb").write(explained.overlays[explained.class_indices[0]])

Errors answered by the service arrive as typed exceptions mapped from problem+json:

    GlimpseAPIError                 any problem+json answer (status, title, detail, errors)
    ├── BadRequestError (400)
    ├── UnauthorizedError (401)      the server wants an API key (api_key=), or another one
    ├── NotFoundError (404)
    ├── ConflictError (409)          artifact of a job that has not finished
    ├── PayloadTooLargeError (413)
    ├── UnsupportedImageError (415)
    ├── InvalidParamsError (422)
    ├── RateLimitedError (429)       carries retry_after
    └── ServiceUnavailableError (503) carries retry_after
    JobFailedError                  the job ended failed (carries the job)
    JobCanceledError                the job was canceled or deleted while waited on
    WaitTimeoutError                wait() ran out of time (the job goes on)
    BatchWaitTimeoutError           wait_batch() ran out of time (glimpse/client_batches.py)
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from glimpse import sse
from glimpse.client_batches import Batch, BatchMethods, BatchWaitTimeoutError  # noqa: F401
from glimpse.result import ExplanationResult

ImageLike = str | Path | bytes | np.ndarray
Progress = Callable[[int, int], None]
FINAL = frozenset({"finished", "failed", "canceled"})


class GlimpseAPIError(Exception):
    status = 0

    def __init__(self, status: int, title: str, detail: str, errors: list[dict] | None = None):
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []


class BadRequestError(GlimpseAPIError):
    pass


class UnauthorizedError(GlimpseAPIError):
    pass


class NotFoundError(GlimpseAPIError):
    pass


class ConflictError(GlimpseAPIError):
    pass


class PayloadTooLargeError(GlimpseAPIError):
    pass


class UnsupportedImageError(GlimpseAPIError):
    pass


class InvalidParamsError(GlimpseAPIError):
    pass


class _RetryLater(GlimpseAPIError):
    retry_after: float | None = None


class RateLimitedError(_RetryLater):
    pass


class ServiceUnavailableError(_RetryLater):
    pass


class JobFailedError(Exception):
    def __init__(self, job: Job) -> None:
        error = job.error or {}
        super().__init__(f"job {job.id} failed: {error.get('title')}: {error.get('detail')}")
        self.job = job


class JobCanceledError(Exception):
    pass


class WaitTimeoutError(TimeoutError):
    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(f"job {job.id} still {job.status} after {timeout:g} s")
        self.job = job


_BY_STATUS: dict[int, type[GlimpseAPIError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedImageError,
    422: InvalidParamsError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}


@dataclass(frozen=True)
class Job:
    """The job resource (docs/api.md)."""

    id: str
    status: str
    progress: dict[str, int]
    params: dict[str, Any]
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error: dict[str, str] | None = None
    result: ExplanationResult | None = None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Job:
        result = doc.get("result")
        return cls(
            id=doc["id"],
            status=doc["status"],
            progress=doc.get("progress") or {},
            params=doc.get("params") or {},
            created_at=doc.get("created_at"),
            started_at=doc.get("started_at"),
            finished_at=doc.get("finished_at"),
            error=doc.get("error"),
            result=None if result is None else ExplanationResult.model_validate(result),
        )


@dataclass
class Explained:
    """A finished explanation: the result, and the heatmap overlay of each explained class."""

    job: Job
    overlays: dict[int, bytes] = field(default_factory=dict)

    @property
    def result(self) -> ExplanationResult:
        assert self.job.result is not None
        return self.job.result

    @property
    def class_indices(self) -> list[int]:
        return [e.class_index for e in self.result.explanations]


class GlimpseClient(BatchMethods):  # submit_batch, wait_batch, explain_many: client_batches.py
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, headers=headers, transport=transport
        )

    def __enter__(self) -> GlimpseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- jobs -----------------------------------------------------------------------------
    def submit(self, image: ImageLike, **params: Any) -> Job:
        """Upload an image with explainer params (docs/api.md); returns the queued job, or an
        identical earlier one (cache)."""
        name, data = _image_bytes(image)
        response = self._http.post(
            "/v1/explanations",
            files={"image": (name, data, "application/octet-stream")},
            data={"params": json.dumps(params)} if params else None,
        )
        return Job.from_json(self._json(response))

    def get(self, job_id: str) -> Job:
        return Job.from_json(self._json(self._http.get(f"/v1/explanations/{job_id}")))

    def wait(
        self,
        job: Job | str,
        *,
        timeout: float = 600.0,
        poll_interval: float = 0.25,
        progress: Progress | None = None,
    ) -> Job:
        """The finished job, following its events (else polling every `poll_interval` s), or
        JobFailedError, JobCanceledError, WaitTimeoutError; `progress(done, total)` on changes."""
        current = job if isinstance(job, Job) else self.get(job)
        deadline = time.monotonic() + timeout
        seen: tuple[int, int] | None = None
        states = sse.job_states(self._http, current.id, deadline, slack_s=poll_interval)
        while True:
            done_total = (current.progress.get("done", 0), current.progress.get("total", 0))
            if progress and done_total != seen:
                progress(*done_total)
                seen = done_total
            if current.status == "finished":
                return current
            if current.status == "failed":
                raise JobFailedError(current)
            if current.status == "canceled":
                raise JobCanceledError(f"job {current.id} was canceled")
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(current, timeout)
            state = next(states, None)  # from the events stream while it lasts, else polled
            if state is not None and state["status"] not in sse.FINAL:
                current = replace(current, status=state["status"], progress=state["progress"])
                continue
            time.sleep(0 if state else poll_interval)
            try:  # after a final event too: the job whole, with its result or error
                current = self.get(current.id)
            except NotFoundError:
                raise JobCanceledError(f"job {current.id} was deleted") from None

    def explain(
        self,
        image: ImageLike,
        *,
        timeout: float = 600.0,
        progress: Progress | None = None,
        overlays: bool = True,
        **params: Any,
    ) -> Explained:
        """Submit, wait, and fetch the heatmap overlay of each explained class."""
        job = self.wait(self.submit(image, **params), timeout=timeout, progress=progress)
        explained = Explained(job=job)
        if overlays:
            for index in explained.class_indices:
                explained.overlays[index] = self.overlay(job.id, class_index=index)
        return explained

    def delete(self, job_id: str) -> None:
        self._check(self._http.delete(f"/v1/explanations/{job_id}"))

    # --- artifacts ------------------------------------------------------------------------
    def overlay(
        self,
        job_id: str,
        *,
        class_index: int | None = None,
        style: str = "heatmap",
        polarity: str | None = None,
        clip_upper: float | None = None,
        clip_lower: float | None = None,
        color_map: str | None = None,
        overlay: str | None = None,
        draw: str | None = None,
        legend: bool | None = None,
        max_side: int | None = None,
        **options: Any,
    ) -> bytes:
        """overlay.png of one explained class (default the first) in `style`. The heatmap's
        visualisation options (docs/api.md): polarity (positive|negative|both), clip_upper and
        clip_lower (percentiles of |attribution|), color_map (red_blue|pink_green|viridis|
        grays|red_transparent_blue), overlay (the base: muted|original|grayscale|mask_black|
        none), draw (pixels|outlines), legend, max_side (every style). None: the server's
        default. Other `options` (num_features, negative, percentile) go as they are."""
        visual = {
            "polarity": polarity,
            "clip_upper": clip_upper,
            "clip_lower": clip_lower,
            "color_map": color_map,
            "overlay": overlay,
            "draw": draw,
            "legend": legend,
            "max_side": max_side,
        }
        query: dict[str, Any] = {"style": style, **_given(visual), **options}
        if class_index is not None:
            query["class_index"] = class_index
        return self._png(f"/v1/explanations/{job_id}/overlay.png", query)

    def figure(
        self,
        job_id: str,
        *,
        polarity: str | None = None,
        clip_upper: float | None = None,
        clip_lower: float | None = None,
        color_map: str | None = None,
        max_side: int | None = None,
        compare: bool = False,
    ) -> bytes:
        """figure.png: the photo and every explained class side by side, one colour bar; with
        `compare`, a comparison job's (params.methods) every method side by side."""
        visual = {
            "polarity": polarity,
            "clip_upper": clip_upper,
            "clip_lower": clip_lower,
            "color_map": color_map,
            "max_side": max_side,
            "compare": "true" if compare else None,
        }
        return self._png(f"/v1/explanations/{job_id}/figure.png", _given(visual))

    def attribution(
        self, job_id: str, *, dtype: str | None = None, max_side: int | None = None
    ) -> np.ndarray:
        """float32 [K, H, W]: one map per explained class (float16 with dtype="float16";
        area-averaged to a longer side of at most max_side)."""
        query = _given({"dtype": dtype, "max_side": max_side})
        url = f"/v1/explanations/{job_id}/attribution.npy"
        data = self._check(self._http.get(url, params=query)).content
        return np.load(io.BytesIO(data), allow_pickle=False)

    def segments(self, job_id: str) -> np.ndarray:
        """int32 [H, W] superpixel ids."""
        from PIL import Image

        data = self._check(self._http.get(f"/v1/explanations/{job_id}/segments.png")).content
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img).astype(np.int32)

    def models(self) -> list[dict[str, Any]]:
        return self._json(self._http.get("/v1/models"))

    # --- plumbing -------------------------------------------------------------------------
    def _png(self, url: str, query: dict[str, Any]) -> bytes:
        query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()}
        return self._check(self._http.get(url, params=query)).content

    def _json(self, response: httpx.Response) -> Any:
        return self._check(response).json()

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        if not isinstance(problem, dict):
            problem = {}
        cls = _BY_STATUS.get(response.status_code, GlimpseAPIError)
        error = cls(
            response.status_code,
            str(problem.get("title") or response.reason_phrase),
            str(problem.get("detail") or response.text[:200]),
            problem.get("errors"),
        )
        if isinstance(error, _RetryLater):
            retry = response.headers.get("retry-after")
            error.retry_after = float(retry) if retry and retry.isdigit() else None
        raise error


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The options that were given (not None)."""
    return {k: v for k, v in options.items() if v is not None}


def _image_bytes(image: ImageLike) -> tuple[str, bytes]:
    if isinstance(image, bytes):
        return "image", image
    if isinstance(image, np.ndarray):
        from glimpse.images import encode_png

        pixels = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
        return "image.png", encode_png(np.ascontiguousarray(pixels, np.uint8))
    path = Path(image)
    return path.name, path.read_bytes()
