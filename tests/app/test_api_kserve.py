"""KServe V1 shapes: request bodies as KServe's documentation and samples send them.

- TF Serving / KServe image classifiers: {"instances": [{"image_bytes": {"b64": ...}, "key": "1"}]}
- TorchServe-style (KServe's torchserve samples): {"instances": [{"data": "<base64>"}]}
- Alibi's image explainer sample: {"instances": image.tolist()} with H×W×3 pixel arrays
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np
from api_helpers import assert_problem
from services import DEFAULT_MODEL, png_bytes
from skimage.transform import resize

FAST = {"num_samples": 60, "segmentation": {"algorithm": "slic", "n_segments": 12}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_model_ready(client) -> None:
    r = client.get(f"/v1/models/{DEFAULT_MODEL}")
    assert r.status_code == 200
    assert r.json() == {"name": DEFAULT_MODEL, "ready": True}
    assert_problem(client.get("/v1/models/nope"), 404)


def test_predict_with_image_bytes(client, chelsea_png: bytes) -> None:
    body = {"instances": [{"image_bytes": {"b64": b64(chelsea_png)}, "key": "1"}]}
    r = client.post(f"/v1/models/{DEFAULT_MODEL}:predict", json=body)
    assert r.status_code == 200, r.text
    (top,) = r.json()["predictions"]
    assert len(top) == 5
    assert top[0]["class_index"] == 285 and top[0]["label"] == "Egyptian cat"
    assert top[0]["probability"] > 0.5


def test_predict_with_data_and_pixel_arrays(client, chelsea, chelsea_png: bytes) -> None:
    small = (resize(chelsea, (150, 225), preserve_range=True)).round().astype(int)
    body = {"instances": [{"data": b64(chelsea_png)}, small.tolist(), b64(chelsea_png)]}
    r = client.post(f"/v1/models/{DEFAULT_MODEL}:predict", json=body)
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert [p[0]["class_index"] for p in predictions] == [285, 285, 285]


def test_explain_is_synchronous(client, chelsea_png: bytes) -> None:
    body = {
        "instances": [{"image_bytes": {"b64": b64(chelsea_png)}}],
        "parameters": {"method": "kernel_shap", "seed": 21, **FAST},
    }
    r = client.post(f"/v1/models/{DEFAULT_MODEL}:explain", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    (explanation,) = doc["explanations"]
    assert doc["predictions"][0][0]["class_index"] == 285
    assert explanation["method"] == "kernel_shap"
    assert explanation["model"]["name"] == DEFAULT_MODEL
    weights = np.asarray(explanation["explanations"][0]["weights"])
    assert len(weights) == explanation["segments"]["count"]


def test_bad_requests(client, chelsea_png: bytes) -> None:
    url = f"/v1/models/{DEFAULT_MODEL}:predict"
    assert_problem(
        client.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400
    )
    assert_problem(client.post(url, json={"instances": []}), 400)
    assert_problem(client.post(url, json={"instances": [{"key": "1"}]}), 400)
    assert_problem(client.post(url, json={"instances": ["%%% not base64"]}), 400)
    assert_problem(client.post(url, json={"instances": [[[1, 2], [3, 4, 5]]]}), 400)
    assert_problem(client.post(url, json={"instances": [[[[300, 0, 0]]]]}), 400)
    assert_problem(client.post(url, json={"instances": [b64(b"GIF89a not really")]}), 415)
    assert_problem(
        client.post("/v1/models/nope:predict", json={"instances": [b64(chelsea_png)]}), 404
    )
    bad = {"instances": [b64(chelsea_png)], "parameters": {"num_samples": 1}}
    problem = assert_problem(client.post(f"/v1/models/{DEFAULT_MODEL}:explain", json=bad), 422)
    assert problem["errors"][0]["loc"] == ["params", "num_samples"]


def test_sync_calls_time_out_with_504(app_client, chelsea_png: bytes) -> None:
    client = app_client(sync_timeout_s=0.3)  # its own queue: no worker will answer
    body = {"instances": [b64(chelsea_png)], "parameters": FAST}
    problem = assert_problem(client.post(f"/v1/models/{DEFAULT_MODEL}:explain", json=body), 504)
    assert "poll /v1/explanations/" in problem["detail"]
    assert_problem(client.post(f"/v1/models/{DEFAULT_MODEL}:predict", json=body), 504)


def test_explain_with_several_instances_answers_each_in_order(client, chelsea) -> None:
    """One job per instance, queued together; the answers in instance order."""
    images = [png_bytes(np.ascontiguousarray(chelsea[:, ::-1])), png_bytes(chelsea[::2, ::2])]
    body = {
        "instances": [{"b64": b64(data)} for data in images],
        "parameters": {"seed": 22, **FAST},
    }
    r = client.post(f"/v1/models/{DEFAULT_MODEL}:explain", json=body, timeout=120)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert len(doc["explanations"]) == len(doc["predictions"]) == 2
    for data, explanation, top5 in zip(
        images, doc["explanations"], doc["predictions"], strict=True
    ):
        assert explanation["image"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert explanation["predictions"] == top5 and top5[0]["class_index"] == 285


def test_more_instances_than_a_batch_takes_are_413(app_client, chelsea_png: bytes) -> None:
    client = app_client(max_batch_images=2)
    body = {"instances": [b64(chelsea_png)] * 3, "parameters": FAST}
    for verb in ("predict", "explain"):
        problem = assert_problem(client.post(f"/v1/models/{DEFAULT_MODEL}:{verb}", json=body), 413)
        assert problem["errors"] == [{"loc": ["body", "instances"], "msg": "at most 2 instances"}]
        assert problem["detail"] == "3 instances in one request; the limit is 2"
