"""partition_shap, occlusion, gradcam, integrated_gradients and xrai end to end (uvicorn,
Redis, a worker, the shared EfficientNet on chelsea), their artifacts, and the class grid
figure."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from api_helpers import CAT, assert_problem, submit_json, submit_multipart
from PIL import Image
from services import RedisServer, wait_for_job

METHOD_PARAMS = {
    "partition_shap": {
        "num_samples": 100,
        "segmentation": {"algorithm": "slic", "n_segments": 20},
        "background": {"kind": "blur", "kernel_size": 128},
        "quality": False,
    },
    "occlusion": {"occlusion": {"window": 64, "stride": 64}, "quality": False},
    "gradcam": {"targets": {"top_k": 2}},
    "integrated_gradients": {
        "integrated_gradients": {"steps": 8},
        "segmentation": {"algorithm": "slic", "n_segments": 20},
        "quality": False,
    },
    "xrai": {
        "integrated_gradients": {"steps": 4},
        "segmentation": {"algorithm": "slic", "n_segments": 20},
        "targets": {"top_k": 2},
    },
}
#: Methods whose attribution.npy is their own per-pixel map, not the weights painted.
PIXEL_MAP_METHODS = {"gradcam", "integrated_gradients", "xrai"}


@pytest.fixture(scope="module", params=sorted(METHOD_PARAMS))
def finished(request, client: httpx.Client, chelsea_png: bytes) -> dict:
    params = {"method": request.param, **METHOD_PARAMS[request.param]}
    r = submit_json(client, chelsea_png, params)
    assert r.status_code in (200, 202), r.text
    job = wait_for_job(client, r.json()["id"], timeout=120)
    assert job["status"] == "finished", job
    return job


def npy(client: httpx.Client, url: str) -> np.ndarray:
    r = client.get(url)
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content), allow_pickle=False)


def segments(client: httpx.Client, job_id: str) -> np.ndarray:
    with Image.open(
        io.BytesIO(client.get(f"/v1/explanations/{job_id}/segments.png").content)
    ) as img:
        return np.asarray(img).astype(np.int64)


def test_each_method_explains_the_cat(client: httpx.Client, finished: dict) -> None:
    result = finished["result"]
    method = finished["params"]["method"]
    assert result["method"] == method
    assert result["predictions"][0]["class_index"] == CAT
    first = result["explanations"][0]
    assert first["class_index"] == CAT
    count = result["segments"]["count"]
    assert len(first["weights"]) == count
    assert set(np.unique(segments(client, finished["id"]))) == set(range(count))
    evaluations = result["stats"]["model_evaluations"]
    assert finished["progress"] == {"done": evaluations, "total": evaluations}
    if method == "partition_shap":
        assert evaluations <= 100
        # Efficiency: Σ φ = f(x) − f(background), in probability space.
        assert sum(first["weights"]) == pytest.approx(
            first["probability"] - first["base_value"], abs=1e-6
        )
        assert len(result["hierarchy"]) == count - 1
    if method == "occlusion":
        # 451×300, window = stride = 64: ceil((451-64)/64)+1 = 8 by ceil((300-64)/64)+1 = 5.
        assert evaluations == 8 * 5 + 1
        assert result["segments"]["algorithm"] == "occlusion_cells"
    if method == "gradcam":
        assert count == 7 * 7  # EfficientNet-Lite0's last feature map on 224×224
        assert result["layer"] and result["segments"]["algorithm"] == "feature_cells"
        assert min(first["weights"]) >= 0
    if method in ("integrated_gradients", "xrai"):
        steps = METHOD_PARAMS[method]["integrated_gradients"]["steps"]
        k = len(result["explanations"])
        assert result["stats"]["backward_passes"] == steps * k
        assert evaluations == steps * k + 2  # and f(image), f(baseline)
        closed = first["completeness"]
        assert closed["attribution_sum"] == pytest.approx(
            closed["score_difference"] + closed["gap"]
        )
        assert closed["score_difference"] == pytest.approx(
            first["probability"] - first["base_value"], abs=1e-6
        )
    if method == "integrated_gradients":
        assert sum(first["weights"]) == pytest.approx(closed["attribution_sum"], rel=1e-5)
        assert first["regions"] is None
    if method == "xrai":
        areas = [r["area"] for r in first["regions"]]
        assert sum(areas) == pytest.approx(1.0)
        densities = [r["density"] for r in first["regions"]]
        assert densities == sorted(densities, reverse=True)


def test_attribution_npy(client: httpx.Client, finished: dict) -> None:
    base = f"/v1/explanations/{finished['id']}"
    maps = npy(client, f"{base}/attribution.npy")
    explanations = finished["result"]["explanations"]
    assert maps.dtype == np.float32 and maps.shape == (len(explanations), 300, 451)
    weights = np.array([e["weights"] for e in explanations], np.float32)
    painted = weights[:, segments(client, finished["id"])]
    method = finished["params"]["method"]
    if method in PIXEL_MAP_METHODS:  # the method's own per-pixel map, not the regions painted
        assert not np.array_equal(maps, painted) and np.isfinite(maps).all()
    if method == "gradcam":  # smooth, upsampled from the cells
        assert (maps >= 0).all()
        assert np.corrcoef(maps.ravel(), painted.ravel())[0, 1] > 0.8
    if method not in PIXEL_MAP_METHODS:
        np.testing.assert_array_equal(maps, painted)


def test_figure_png_shows_the_image_and_every_class(client: httpx.Client, finished: dict) -> None:
    base = f"/v1/explanations/{finished['id']}"
    r = client.get(f"{base}/figure.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.format == "PNG" and img.mode == "RGB"
        k = len(finished["result"]["explanations"])
        assert img.size[0] > 451 * (k + 1) and img.size[1] > 300
    alias = client.get(f"{base}/overlay.png", params={"style": "grid"})
    assert alias.status_code == 200 and alias.content == r.content
    heatmap = client.get(f"{base}/overlay.png")
    assert heatmap.status_code == 200
    with Image.open(io.BytesIO(heatmap.content)) as img:
        assert img.size == (451, 300)


def test_hierarchy_npy_only_for_partition_shap(client: httpx.Client, finished: dict) -> None:
    base = f"/v1/explanations/{finished['id']}"
    if finished["params"]["method"] != "partition_shap":
        assert_problem(client.get(f"{base}/hierarchy.npy"), 404)
        return
    levels = npy(client, f"{base}/hierarchy.npy")
    first = finished["result"]["explanations"][0]
    assert levels.shape[0] == 1 and levels.shape[2:] == (300, 451) and levels.shape[1] >= 3
    np.testing.assert_allclose(levels[0, 0], first["probability"] - first["base_value"], atol=1e-5)
    np.testing.assert_allclose(levels[:, -1], npy(client, f"{base}/attribution.npy"), atol=1e-6)


def test_unknown_gradcam_layer_is_422_at_submit(client: httpx.Client, small_png: bytes) -> None:
    params = {"method": "gradcam", "gradcam": {"layer": "no/such/layer"}}
    body = assert_problem(submit_multipart(client, small_png, params), 422)
    assert body["errors"][0]["loc"] == ["params", "gradcam", "layer"]


def test_too_many_occlusion_windows_are_refused_at_submit(
    client: httpx.Client, chelsea_png: bytes
) -> None:
    params = {"method": "occlusion", "occlusion": {"window": 8, "stride": 4}, "num_samples": 100}
    r = submit_json(client, chelsea_png, params)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert "larger stride" in problem["detail"]
    assert problem["errors"][0]["loc"] == ["params", "occlusion", "stride"]


def test_gradcam_maps_are_deleted_with_the_job(
    client: httpx.Client, small_png: bytes, redis_server: RedisServer
) -> None:
    r = submit_multipart(client, small_png, {"method": "gradcam", "cache": False, "quality": False})
    job_id = r.json()["id"]
    assert wait_for_job(client, job_id)["status"] == "finished"
    key = f"glimpse:job:{job_id}:attribution"
    assert redis_server.client.exists(key) == 1
    assert 0 < redis_server.client.ttl(key) <= 24 * 3600
    assert client.delete(f"/v1/explanations/{job_id}").status_code == 204
    assert redis_server.client.keys(f"glimpse:job:{job_id}*") == []


def test_models_list_the_methods_the_workers_offer(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    assert {"lime", "integrated_gradients", "xrai"} <= set(models[0]["methods"])


def test_gradient_methods_are_422_at_submit_when_no_live_worker_has_pytorch(
    client: httpx.Client, small_png: bytes, redis_server: RedisServer
) -> None:
    """The live workers' reports decide: said without gradients, the API refuses the gradient
    methods before queueing anything, names what is missing, and still takes the others."""
    key = "glimpse:runtimes"
    reports = redis_server.client.hgetall(key)
    assert reports, "the test worker has reported its runtime"
    try:
        for name, report in reports.items():
            without = {**json.loads(report), "gradients": False}
            redis_server.client.hset(key, name, json.dumps(without))
        waiting = redis_server.client.llen("rq:queue:glimpse")
        for method in ("integrated_gradients", "xrai"):
            params = {"method": method, "cache": False}
            body = assert_problem(submit_multipart(client, small_png, params), 422)
            assert body["errors"][0]["loc"] == ["params", "method"]
            assert "PyTorch" in body["detail"]
        compared = {"methods": ["lime", "xrai"], "cache": False}  # a comparison, as much
        body = assert_problem(submit_multipart(client, small_png, compared), 422)
        assert body["errors"][0]["loc"] == ["params", "methods"] and "xrai" in body["detail"]
        assert redis_server.client.llen("rq:queue:glimpse") == waiting
        listed = client.get("/v1/models").json()[0]["methods"]
        assert "lime" in listed and "xrai" not in listed
        assert submit_multipart(client, small_png, {"num_samples": 50}).status_code in (200, 202)
    finally:
        redis_server.client.hset(key, mapping=reports)
