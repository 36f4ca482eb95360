"""The visualisation options of overlay.png, figure.png and attribution.npy end to end
(uvicorn, Redis, a worker, the shared EfficientNet on chelsea), for every method: what they
draw, the size they draw at, the 422s that name them, the renderings kept under them."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from api_helpers import FAST_PARAMS, assert_problem, submit_json
from PIL import Image
from services import RedisServer, wait_for_job
from test_api_methods import METHOD_PARAMS

from glimpse.shrink import shrink_maps

PARAMS = {
    **METHOD_PARAMS,
    "lime": {**FAST_PARAMS, "targets": {"top_k": 2}},
    "kernel_shap": {**FAST_PARAMS, "targets": {"top_k": 2}},
}
CHELSEA = (451, 300)  # width, height


@pytest.fixture(scope="module", params=sorted(PARAMS))
def finished(request, client: httpx.Client, chelsea_png: bytes) -> dict:
    r = submit_json(client, chelsea_png, {"method": request.param, **PARAMS[request.param]})
    assert r.status_code in (200, 202), r.text
    job = wait_for_job(client, r.json()["id"], timeout=120)
    assert job["status"] == "finished", job
    return job


@pytest.fixture(scope="module")
def lime(client: httpx.Client, chelsea_png: bytes) -> dict:
    r = submit_json(client, chelsea_png, {"method": "lime", **PARAMS["lime"]})
    job = wait_for_job(client, r.json()["id"], timeout=120)
    assert job["status"] == "finished", job
    return job


def png(client: httpx.Client, url: str, **query: object) -> np.ndarray:
    r = client.get(url, params=query)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.mode == "RGB"
        return np.asarray(img)


def npy(client: httpx.Client, url: str, **query: object) -> np.ndarray:
    r = client.get(url, params=query)
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content), allow_pickle=False)


def test_every_option_draws_for_every_method(client: httpx.Client, finished: dict) -> None:
    base = f"/v1/explanations/{finished['id']}"
    shown = png(
        client,
        f"{base}/overlay.png",
        polarity="positive",
        color_map="viridis",
        overlay="grayscale",
        legend="true",
        max_side=200,
        clip_upper=99,
        clip_lower=10,
    )
    assert shown.shape == (133, 200, 3)
    outlined = png(client, f"{base}/overlay.png", draw="outlines", color_map="pink_green")
    assert outlined.shape == (300, 451, 3)
    figure = png(client, f"{base}/figure.png", polarity="negative", max_side=600)
    assert max(figure.shape[:2]) <= 600
    for style in ("boundaries", "highlight", "grid"):
        small = png(client, f"{base}/overlay.png", style=style, max_side=300)
        assert max(small.shape[:2]) <= 300


def test_attribution_npy_as_float16_and_area_averaged(client: httpx.Client, finished: dict) -> None:
    url = f"/v1/explanations/{finished['id']}/attribution.npy"
    full = npy(client, url)
    assert full.dtype == np.float32 and full.shape[1:] == (300, 451)  # the default, as ever
    np.testing.assert_array_equal(npy(client, url, dtype="float32"), full)
    half = npy(client, url, dtype="float16")
    assert half.dtype == np.float16 and half.shape == full.shape
    np.testing.assert_allclose(half, full, rtol=1e-3, atol=1e-6)
    small = npy(client, url, max_side=100)
    assert small.dtype == np.float32 and small.shape == (len(full), 67, 100)
    np.testing.assert_allclose(small, shrink_maps(full, 100), rtol=1e-6)
    means = small.mean(axis=(1, 2)), full.mean(axis=(1, 2))
    spread = float(np.abs(full).mean())
    np.testing.assert_allclose(*means, atol=0.02 * spread)  # an area average keeps the mean


def test_positive_polarity_leaves_the_negative_superpixels_as_the_photo(
    client: httpx.Client, lime: dict, chelsea: np.ndarray
) -> None:
    base = f"/v1/explanations/{lime['id']}"
    with Image.open(io.BytesIO(client.get(f"{base}/segments.png").content)) as img:
        segments = np.asarray(img).astype(np.int64)
    weights = np.asarray(lime["result"]["explanations"][0]["weights"])
    out = png(client, f"{base}/overlay.png", polarity="positive", overlay="original")
    negative = weights[segments] <= 0
    assert negative.any() and (~negative).any()
    np.testing.assert_array_equal(out[negative], chelsea[negative])
    assert (out[~negative] != chelsea[~negative]).any(axis=1).mean() > 0.9
    gray = png(client, f"{base}/overlay.png", polarity="positive", overlay="grayscale")
    assert (gray[negative].max(axis=1) - gray[negative].min(axis=1) == 0).all()


def test_uncertain_hatch_hatches_the_superpixels_within_two_standard_errors(
    client: httpx.Client, lime: dict, chelsea_png: bytes
) -> None:
    base = f"/v1/explanations/{lime['id']}"
    with Image.open(io.BytesIO(client.get(f"{base}/segments.png").content)) as img:
        segments = np.asarray(img).astype(np.int64)
    explained = lime["result"]["explanations"][0]
    weights, se = np.asarray(explained["weights"]), np.asarray(explained["weights_se"])
    uncertain = (np.abs(weights) < 2 * se)[segments]
    assert uncertain.any() and (~uncertain).any()  # 60 evaluations: some, not all
    plain = png(client, f"{base}/overlay.png")
    hatched = png(client, f"{base}/overlay.png", uncertain="hatch")
    changed = (hatched != plain).any(axis=2)
    assert not changed[~uncertain].any()
    assert 0.1 < changed[uncertain].mean() < 0.6  # lines, not a fill
    dark = (hatched[changed] == (25, 25, 25)).all(axis=1)
    light = (hatched[changed] == (245, 245, 245)).all(axis=1)
    assert (dark | light).all()  # the two lines and nothing else
    assert 0.4 < dark.mean() < 0.7  # a dark line and a light one of the same width
    # A method without standard errors cannot say which signs are uncertain.
    r = submit_json(client, chelsea_png, {"method": "gradcam"})
    job = wait_for_job(client, r.json()["id"], timeout=120)
    refused = client.get(f"/v1/explanations/{job['id']}/overlay.png", params={"uncertain": "hatch"})
    assert assert_problem(refused, 422)["errors"][0]["loc"] == ["query", "uncertain"]
    assert "weights_se" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("path", "query", "loc"),
    [
        ("overlay.png", {"polarity": "sideways"}, "polarity"),
        ("overlay.png", {"clip_upper": 101}, "clip_upper"),
        ("overlay.png", {"clip_lower": -1}, "clip_lower"),
        ("overlay.png", {"clip_lower": 70, "clip_upper": 60}, "clip_lower"),
        ("overlay.png", {"clip_lower": 99.95, "style": "grid"}, "clip_lower"),
        ("overlay.png", {"color_map": "jet"}, "color_map"),
        ("overlay.png", {"overlay": "sepia"}, "overlay"),
        ("overlay.png", {"draw": "crayons"}, "draw"),
        ("overlay.png", {"legend": "maybe"}, "legend"),
        ("overlay.png", {"max_side": 3}, "max_side"),
        ("overlay.png", {"uncertain": "blur"}, "uncertain"),
        ("figure.png", {"clip_lower": 99.95}, "clip_lower"),
        ("figure.png", {"color_map": "jet"}, "color_map"),
        ("figure.png", {"max_side": "big"}, "max_side"),
        ("attribution.npy", {"dtype": "float64"}, "dtype"),
        ("attribution.npy", {"max_side": 0}, "max_side"),
    ],
)
def test_a_bad_option_is_422_naming_it(
    client: httpx.Client, lime: dict, path: str, query: dict, loc: str
) -> None:
    r = client.get(f"/v1/explanations/{lime['id']}/{path}", params=query)
    body = assert_problem(r, 422)
    assert body["errors"][0]["loc"] == ["query", loc], body


def test_defaults_keep_their_rendering_and_options_get_their_own(
    client: httpx.Client, lime: dict, redis_server: RedisServer
) -> None:
    base = f"/v1/explanations/{lime['id']}"
    renders = f"glimpse:job:{lime['id']}:renders"
    redis_server.client.delete(renders)
    plain = client.get(f"{base}/overlay.png").content
    spelled = {
        "polarity": "both",
        "clip_upper": 100,
        "clip_lower": 0,
        "color_map": "red_blue",
        "overlay": "muted",
        "draw": "pixels",
        "legend": "false",
    }
    assert client.get(f"{base}/overlay.png", params=spelled).content == plain
    legend = client.get(f"{base}/overlay.png", params={"legend": "true"}).content
    assert legend != plain
    figure = client.get(f"{base}/figure.png").content
    assert client.get(f"{base}/figure.png", params={"clip_upper": 99.9}).content == figure
    viridis = client.get(f"{base}/figure.png", params={"color_map": "viridis"}).content
    assert viridis != figure
    small = client.get(f"{base}/overlay.png", params={"style": "highlight", "max_side": 64})
    assert small.status_code == 200
    assert sorted(redis_server.client.hkeys(renders)) == [
        b"figure",
        b"figure;color_map='viridis'",
        b"overlay:heatmap;class_index=",
        b"overlay:heatmap;class_index=;legend=1",
        b"overlay:highlight;class_index=;percentile=95.0;max_side=64",
    ]
