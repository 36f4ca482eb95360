"""params.methods end to end (uvicorn, Redis, a worker, the shared EfficientNet on chelsea):
one job runs every method on the same superpixels and targets, its result compares them,
figure.png?compare=true draws them side by side, and what cannot run is refused at submit."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from api_helpers import CAT, assert_problem, submit_json
from PIL import Image
from services import wait_for_job

from glimpse.client import GlimpseClient
from glimpse.compare_figure import PANEL_SIDE
from glimpse.shrink import fitted_size

METHODS = ["gradcam", "lime", "partition_shap", "integrated_gradients"]
PARAMS = {
    "methods": METHODS,
    "num_samples": 80,
    "targets": {"top_k": 2},
    "segmentation": {"algorithm": "slic", "n_segments": 20},
    "integrated_gradients": {"steps": 4},
}


@pytest.fixture(scope="module")
def compared(client: httpx.Client, chelsea_png: bytes) -> dict:
    r = submit_json(client, chelsea_png, PARAMS)
    assert r.status_code in (200, 202), r.text
    job = wait_for_job(client, r.json()["id"], timeout=180)
    assert job["status"] == "finished", job
    return job


def test_every_method_is_compared_on_the_same_superpixels(compared: dict) -> None:
    result = compared["result"]
    assert compared["params"]["method"] == result["method"] == "gradcam"
    comparison = result["comparison"]
    assert [m["method"] for m in comparison["methods"]] == METHODS
    m = result["segments"]["count"]
    classes = [e["class_index"] for e in result["explanations"]]
    assert classes[0] == CAT and len(classes) == 2
    for method in comparison["methods"]:
        assert [e["class_index"] for e in method["explanations"]] == classes
        for e in method["explanations"]:
            assert len(e["importance"]) == m and all(np.isfinite(e["importance"]))
            quality = e["quality"]
            assert 0 <= quality["deletion_auc"] <= 1 and 0 <= quality["insertion_auc"] <= 1
        assert method["seconds"] > 0 and method["model_evaluations"] >= 1
    by = {x["method"]: x for x in comparison["methods"]}
    assert by["integrated_gradients"]["backward_passes"] == 4 * 2
    pairs = [(tuple(a["methods"]), a["class_index"]) for a in comparison["agreement"]]
    expected = [(a, b) for i, a in enumerate(METHODS) for b in METHODS[i + 1 :]]
    assert pairs == [(pair, c) for pair in expected for c in classes]
    for a in comparison["agreement"]:
        assert -1 <= a["spearman"] <= 1 and 0 <= a["top_k_overlap"] <= 1 and a["k"] == min(10, m)
    spent = sum(x["model_evaluations"] for x in comparison["methods"]) - (len(METHODS) - 1)
    assert result["stats"]["model_evaluations"] == spent
    assert compared["progress"] == {"done": spent, "total": spent}


def test_the_comparison_figure_draws_the_photo_and_each_method(
    client: httpx.Client, compared: dict
) -> None:
    url = f"/v1/explanations/{compared['id']}/figure.png"
    r = client.get(url, params={"compare": "true"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as img:
        width, height = img.size
        pixels = np.asarray(img.convert("RGB"))
    ph, pw = fitted_size(300, 451, PANEL_SIDE)
    assert width == 10 + (len(METHODS) + 1) * (pw + 10)
    assert height > 2 * ph  # a row per explained class
    assert (pixels != 255).any(axis=2).mean() > 0.3  # panels drawn, not a blank page
    assert client.get(url, params={"compare": "true"}).content == r.content  # kept
    assert client.get(url).content != r.content  # the class grid figure is another picture
    small = client.get(url, params={"compare": "true", "max_side": 400})
    with Image.open(io.BytesIO(small.content)) as img:
        assert max(img.size) <= 400 + 10 * (len(METHODS) + 2)


def test_compare_on_a_one_method_job_is_404(client: httpx.Client, chelsea_png: bytes) -> None:
    r = submit_json(client, chelsea_png, {"method": "gradcam"})
    job = wait_for_job(client, r.json()["id"], timeout=60)
    r = client.get(f"/v1/explanations/{job['id']}/figure.png", params={"compare": "true"})
    assert "submit with params.methods" in assert_problem(r, 404)["detail"]


@pytest.mark.parametrize(
    "params, loc, says",
    [
        ({"methods": ["lime", "lime"]}, ["params", "methods"], "at most once"),
        ({"method": "lime", "methods": ["gradcam", "lime"]}, ["params", "methods"], "first"),
        (
            {"methods": ["lime", "occlusion"], "num_samples": 50},
            ["params", "occlusion", "stride"],
            "occlusion",
        ),
        (
            {"methods": ["lime", "xrai"], "background": {"kind": "inpaint_telea"}},
            ["params", "background"],
            "xrai",
        ),
    ],
)
def test_a_comparison_that_cannot_run_is_refused_at_submit(
    client: httpx.Client, chelsea_png: bytes, params: dict, loc: list[str], says: str
) -> None:
    body = assert_problem(submit_json(client, chelsea_png, params), 422)
    assert body["errors"][0]["loc"] == loc and says in body["detail"]


def test_the_client_asks_for_a_comparison_and_its_figure(api, compared: dict) -> None:
    with GlimpseClient(api.url, timeout=30) as glimpse:
        job = glimpse.get(compared["id"])
        assert job.result is not None and job.result.comparison is not None
        assert [m.method for m in job.result.comparison.methods] == METHODS
        url = f"/v1/explanations/{compared['id']}/figure.png"
        served = httpx.get(api.url + url, params={"compare": "true"}).content
        assert glimpse.figure(compared["id"], compare=True) == served
