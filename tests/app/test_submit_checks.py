"""Everything that the params, the model's card (and graph) and the image size decide is
answered at submit time: a 422/413/415 with the reason and `errors[].loc`, and nothing
queued, on `POST /v1/explanations` (multipart and JSON) and on KServe `:explain`/`:predict`.

In-process app variants on the real Redis: their own queue and key prefix, no worker, so
every job they accept stays queued and is counted."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from api_helpers import (
    DEFAULT_MODEL,
    FAST_PARAMS,
    assert_problem,
    png_bytes,
    submit_json,
    submit_multipart,
)
from onnx_models import region_model, tiny_card
from services import RedisServer

from glimpse.cards import ModelRegistry
from glimpse.limits import MIN_IMAGE_SIDE

METHODS = ["lime", "kernel_shap", "partition_shap", "gradcam", "occlusion"]
EXPLAIN = f"/v1/models/{DEFAULT_MODEL}:explain"
PREDICT = f"/v1/models/{DEFAULT_MODEL}:predict"
DENSE = "dense"  # a registered model without a convolution (y = W · x + b)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image(height: int, width: int) -> bytes:
    rng = np.random.default_rng(height * 1000 + width)
    return png_bytes(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def check_models(service_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service's EfficientNet plus `dense`, a linear model: no layer for Grad-CAM."""
    root = tmp_path_factory.mktemp("check-models")
    (root / DEFAULT_MODEL).symlink_to(service_models_dir / DEFAULT_MODEL)
    folder = root / DENSE
    folder.mkdir()
    region_model(folder / "model.onnx", 32, 32, slice(0, 16), slice(0, 16))
    ModelRegistry(root).write(DENSE, tiny_card(32, 32, 2))
    return root


@pytest.fixture
def variant(app_client, check_models: Path) -> Callable[..., httpx.Client]:
    def make(**settings: object) -> httpx.Client:
        return app_client(models_dir=check_models, **settings)

    return make


@pytest.fixture
def api(variant) -> httpx.Client:
    return variant()


@pytest.fixture
def nothing_queued(redis_server: RedisServer) -> Iterator[Callable[[], None]]:
    """`nothing_queued()`: asserts that the variant's queue and jobs are as they were when the
    test began (RQ's queue list, and every job, image and cache key of the variant)."""

    def snapshot() -> tuple[int, int]:
        r = redis_server.client
        return int(r.llen("rq:queue:variant")), len(r.keys("variant:*"))

    before = snapshot()

    def check() -> None:
        assert snapshot() == before

    yield check
    check()


def both_ways(client: httpx.Client, data: bytes, params: dict) -> list[dict]:
    """The problem bodies of the same submission as multipart and as JSON."""
    return [
        assert_problem(submit(client, data, {**params, "cache": False}), 422)
        for submit in (submit_multipart, submit_json)
    ]


def kserve_explain(client: httpx.Client, data: list[bytes], parameters: dict) -> httpx.Response:
    return client.post(
        EXPLAIN, json={"instances": [b64(d) for d in data], "parameters": parameters}
    )


# --- the control: the counter sees a job that is queued ------------------------------------------
def test_an_accepted_submission_is_counted(api, redis_server: RedisServer) -> None:
    before = redis_server.client.llen("rq:queue:variant")
    r = submit_json(api, image(MIN_IMAGE_SIDE, MIN_IMAGE_SIDE), {**FAST_PARAMS, "cache": False})
    assert r.status_code == 202, r.text
    assert redis_server.client.llen("rq:queue:variant") == before + 1
    assert api.delete(r.headers["location"]).status_code == 204
    assert redis_server.client.llen("rq:queue:variant") == before


# --- the image ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("height", "width"), [(1, 1), (31, 64), (64, 8)])
def test_an_image_too_small_to_segment_is_422_at_image(
    api, nothing_queued, height: int, width: int
) -> None:
    for method in METHODS:
        for body in both_ways(api, image(height, width), {**FAST_PARAMS, "method": method}):
            assert body["errors"] == [
                {
                    "loc": ["image"],
                    "msg": f"{width}x{height} pixels: each side must be at least {MIN_IMAGE_SIDE}",
                }
            ]
            assert f"{width}x{height} pixels" in body["detail"]
            assert f"at least {MIN_IMAGE_SIDE} pixels" in body["detail"]
    nothing_queued()


def test_kserve_explain_checks_every_instance_before_queueing_any(api, nothing_queued) -> None:
    ok, tiny = image(48, 64), image(1, 1)
    body = assert_problem(kserve_explain(api, [ok, tiny], FAST_PARAMS), 422)
    assert body["errors"][0]["loc"] == ["body", "instances", "1"]
    assert body["detail"].startswith("instance 1: ") and "1x1 pixels" in body["detail"]
    body = assert_problem(kserve_explain(api, [ok, b"GIF89a no"], FAST_PARAMS), 415)
    assert body["errors"][0]["loc"] == ["body", "instances", "1"]
    nothing_queued()


def test_kserve_predict_reads_every_instance_before_queueing_any(api, nothing_queued) -> None:
    body = {"instances": [b64(image(48, 64)), b64(b"GIF89a not really")]}
    problem = assert_problem(api.post(PREDICT, json=body), 415)
    assert problem["errors"][0]["loc"] == ["body", "instances", "1"]
    nothing_queued()


# --- the model's card and graph, on both paths, for every method -------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_classes_out_of_range_are_422_on_both_paths(api, nothing_queued, method: str) -> None:
    params = {**FAST_PARAMS, "method": method, "targets": {"classes": [285, 1000]}}
    if method == "occlusion":
        params["occlusion"] = {"window": 32, "stride": 32}
    bodies = [
        *both_ways(api, image(48, 64), params),
        assert_problem(kserve_explain(api, [image(48, 64)], params), 422),
    ]
    for body in bodies:
        assert body["errors"] == [
            {"loc": ["params", "targets", "classes"], "msg": "must be < 1000"}
        ]
        assert "[1000] out of range" in body["detail"]
    nothing_queued()


def test_an_unknown_gradcam_layer_is_422_on_both_paths(api, nothing_queued) -> None:
    params = {"method": "gradcam", "gradcam": {"layer": "no/such/layer"}}
    bodies = [
        *both_ways(api, image(48, 64), params),
        assert_problem(kserve_explain(api, [image(48, 64)], params), 422),
    ]
    for body in bodies:
        assert body["errors"][0]["loc"] == ["params", "gradcam", "layer"]
        assert "no/such/layer" in body["detail"]
    nothing_queued()


def test_gradcam_of_a_model_without_a_convolution_is_422(api, nothing_queued) -> None:
    params = {"method": "gradcam", "model": DENSE}
    bodies = [
        *both_ways(api, image(32, 32), params),
        assert_problem(
            api.post(
                f"/v1/models/{DENSE}:explain",
                json={"instances": [b64(image(32, 32))], "parameters": {"method": "gradcam"}},
            ),
            422,
        ),
    ]
    for body in bodies:
        assert body["errors"] == [{"loc": ["params", "method"], "msg": "no convolutional layer"}]
        assert "no convolution" in body["detail"] and "'dense'" in body["detail"]
    nothing_queued()
    r = submit_json(api, image(32, 32), {**FAST_PARAMS, "model": DENSE, "cache": False})
    assert r.status_code == 202, r.text  # the other methods need no layer
    assert api.delete(r.headers["location"]).status_code == 204


# --- occlusion ---------------------------------------------------------------------------------
def test_occlusion_over_its_budget_is_422_suggesting_a_stride(api, nothing_queued) -> None:
    """README: windows + 1 ≤ budget, else 422 suggesting a larger stride (it was a 202 and a
    job that failed in the worker)."""
    params = {"method": "occlusion", "occlusion": {"window": 8, "stride": 4}, "num_samples": 100}
    chelsea_like = image(300, 451)
    bodies = [
        *both_ways(api, chelsea_like, params),
        assert_problem(kserve_explain(api, [chelsea_like], params), 422),
    ]
    for body in bodies:
        assert body["errors"] == [
            {
                "loc": ["params", "occlusion", "stride"],
                "msg": "8288 windows exceed the budget of 100",
            }
        ]
        assert "larger stride (at least " in body["detail"] and "8289 evaluations" in body["detail"]
    nothing_queued()
    fits = int(bodies[0]["detail"].split("at least ")[1].split(")")[0])
    fitting = {**params, "occlusion": {"window": 8, "stride": fits}, "cache": False}
    r = submit_multipart(api, chelsea_like, fitting)
    assert r.status_code == 202, r.text
    assert api.delete(r.headers["location"]).status_code == 204


def test_occlusion_with_one_window_over_the_whole_image_is_422(api, nothing_queued) -> None:
    params = {"method": "occlusion", "occlusion": {"window": 64, "stride": 16}}
    for body in both_ways(api, image(48, 64), params):
        assert body["errors"] == [
            {"loc": ["params", "occlusion", "window"], "msg": "must be below 64 here"}
        ]
        assert "covers the whole 64x48 image" in body["detail"]
    nothing_queued()


def test_occlusions_matrix_is_held_to_the_design_limit(variant, nothing_queued) -> None:
    client = variant(max_design_size=1000)
    params = {"method": "occlusion", "occlusion": {"window": 16, "stride": 8}, "num_samples": 500}
    for body in both_ways(client, image(96, 96), params):
        assert body["errors"][0]["loc"] == ["params", "occlusion", "stride"]
        assert "121 windows × 144 cells = 17424 entries" in body["detail"]
        assert "GLIMPSE_MAX_DESIGN_SIZE" in body["detail"]
    nothing_queued()


# --- segmentation ------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lime", "kernel_shap", "partition_shap"])
def test_a_grid_of_one_cell_is_422(api, nothing_queued, method: str) -> None:
    params = {"method": method, "segmentation": {"algorithm": "grid", "cell_size": 64}}
    for body in both_ways(api, image(48, 64), params):
        assert body["errors"] == [
            {
                "loc": ["params", "segmentation", "cell_size"],
                "msg": "must be below 64 on this image",
            }
        ]
    nothing_queued()


def test_a_grid_of_more_cells_than_can_be_explained_is_422(api, nothing_queued) -> None:
    """The worker's segmentation refuses more than 4000 superpixels: a grid's are known."""
    params = {"num_samples": 10, "segmentation": {"algorithm": "grid", "cell_size": 2}}
    for body in both_ways(api, image(300, 451), params):
        assert body["errors"][0]["loc"] == ["params", "segmentation", "cell_size"]
        assert "33900 cells" in body["detail"] and "at most 4000" in body["detail"]
    nothing_queued()


# --- params the engine cannot run --------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "loc"),
    [
        (
            {"segmentation": {"algorithm": "quickshift", "kernel_size": 0.5}},
            ["params", "segmentation", "quickshift", "kernel_size"],
        ),
        ({"lime": {"kernel_width": 1e-300}}, ["params", "lime", "kernel_width"]),
    ],
)
def test_params_that_crashed_the_engine_are_422(
    api, nothing_queued, params: dict, loc: list
) -> None:
    for body in both_ways(api, image(48, 64), params):
        assert body["errors"][0]["loc"] == loc
    assert (
        assert_problem(kserve_explain(api, [image(48, 64)], params), 422)["errors"][0]["loc"] == loc
    )
    nothing_queued()
