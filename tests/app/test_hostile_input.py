"""A corpus of broken and malicious submissions (issue #8), all generated here, against the
live API and worker: each gets the contract's 4xx with a reason, or, where only the worker
can tell, a job that ends `failed` with one; the worker survives them all and still works.

The basics are in test_api_errors.py (garbage bytes, a still GIF, 0 bytes by multipart, a
100,000² header, num_samples 100,001, params that are a list, `../etc` as a model).
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from api_helpers import (
    DEFAULT_MODEL,
    FAST_PARAMS,
    assert_problem,
    submit_json,
    submit_multipart,
)
from PIL import Image
from services import Api, WorkerProcess, wait_for_job

from glimpse.cards import PRESETS, ModelCard, ModelRegistry

SUBMIT = "/v1/explanations"


# --- the corpus: bytes made here ----------------------------------------------------------------
def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def photo(width: int = 96, height: int = 64) -> Image.Image:
    rng = np.random.default_rng(8)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of_zeros(width: int, height: int, rows: int | None = None) -> bytes:
    """A black RGB PNG declaring width x height; its IDAT holds `rows` rows (all by default),
    zlib-compressed: 2000x2000 is ~12 KB for 12 MB of pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    idat = b"".join(packer.compress(row) for _ in range(height if rows is None else rows))
    idat += packer.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def with_chunk_after_ihdr(png: bytes, kind: bytes, data: bytes) -> bytes:
    return png[:33] + chunk(kind, data) + png[33:]


def jpeg_with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """`jpeg` with an APP1 (EXIF) segment holding `payload` right after its SOI."""
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def exif_orientation_out_of_file() -> bytes:
    """An EXIF block whose one tag, Orientation, claims 1000 SHORTs far past its end."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1000, 0xFFFFFF)
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


def huge_exif() -> bytes:
    """A ~60 KB EXIF block (a JPEG segment holds at most 64 KB), Orientation 6 included."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription
    exif[0x0112] = 6
    return b"Exif\x00\x00" + exif.tobytes()


def animation(fmt: str) -> bytes:
    frames = [Image.fromarray(np.full((8, 8, 3), c, np.uint8)) for c in (0, 255)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:])


def tiff_with_a_broken_second_page() -> bytes:
    """A one-page TIFF whose next-page pointer points past the end (Pillow: TypeError)."""
    data = bytearray(encode(photo(24, 16), "TIFF"))
    ifd = struct.unpack("<I", data[4:8])[0]
    entries = struct.unpack("<H", data[ifd : ifd + 2])[0]
    at = ifd + 2 + 12 * entries
    data[at : at + 4] = struct.pack("<I", 0xFFFFFF)
    return bytes(data)


def cuts(data: bytes, *points: int) -> list[bytes]:
    return [data[:p] for p in points]


JPEG = encode(photo(), "JPEG", quality=90)
PNG = encode(photo(), "PNG")
HTML = b"<html><script>alert(document.cookie)</script></html>"

#: (id, bytes, status, words the detail says)
REFUSED: list[tuple[str, bytes, int, str]] = [
    *(
        (f"jpeg-cut-at-{len(cut)}", cut, 415, "")
        for cut in cuts(JPEG, 2, 20, len(JPEG) // 3, len(JPEG) // 2, len(JPEG) - 2)
    ),
    *(
        (f"png-cut-at-{len(cut)}", cut, 415, "")
        for cut in cuts(PNG, 8, 20, 40, len(PNG) // 2, len(PNG) - 100)
    ),
    ("png-magic-on-a-jpeg", b"\x89PNG\r\n\x1a\n" + JPEG[8:], 415, "format"),
    ("jpeg-magic-on-a-png", b"\xff\xd8\xff\xe0" + PNG[4:], 415, "format"),
    ("png-with-a-bad-ihdr-crc", PNG[:29] + b"\x00\x00\x00\x00" + PNG[33:], 415, ""),
    ("png-of-0-columns", png_of_zeros(0, 10, rows=0), 415, ""),
    ("polyglot-jpeg-soi-then-html", b"\xff\xd8\xff\xe0" + HTML, 415, ""),
    ("polyglot-png-signature-then-html", b"\x89PNG\r\n\x1a\n" + HTML, 415, ""),
    ("svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', 415, ""),
    ("animated-gif", animation("GIF"), 415, "GIF"),
    ("animated-png", animation("PNG"), 415, "animated"),
    ("animated-webp", animation("WEBP"), 415, "animated"),
    ("two-page-tiff", animation("TIFF"), 415, "multi-frame"),
    ("tiff-with-a-broken-second-page", tiff_with_a_broken_second_page(), 415, "decodable"),
    (
        "png-ztxt-bomb",
        with_chunk_after_ihdr(
            png_of_zeros(8, 8), b"zTXt", b"k\x00\x00" + zlib.compress(b"a" * 50_000_000, 9)
        ),
        415,
        "too large",
    ),
    (
        "png-iccp-bomb",
        with_chunk_after_ihdr(
            png_of_zeros(8, 8), b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * 50_000_000, 9)
        ),
        415,
        "too large",
    ),
    ("png-bomb-50000x50000", png_of_zeros(50_000, 50_000, rows=4), 413, "pixels"),
    ("png-bomb-7000x7000", png_of_zeros(7_000, 7_000, rows=4), 413, "limit is 40000000"),
]


@pytest.fixture(scope="module")
def live(api: Api) -> httpx.Client:
    return api.client


@pytest.mark.parametrize(
    ("data", "status", "says"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_the_corpus_gets_its_4xx_with_a_reason(
    live: httpx.Client, data: bytes, status: int, says: str
) -> None:
    for submit in (submit_multipart, submit_json):
        body = assert_problem(submit(live, data, FAST_PARAMS), status)
        assert says in body["detail"], body
        assert " at 0x" not in body["detail"], body  # no object reprs


def test_kserve_instances_get_the_same_4xx(live: httpx.Client) -> None:
    for data, status in ((tiff_with_a_broken_second_page(), 415), (animation("PNG"), 415)):
        b64 = base64.b64encode(data).decode()
        for verb in ("predict", "explain"):
            r = live.post(f"/v1/models/{DEFAULT_MODEL}:{verb}", json={"instances": [{"b64": b64}]})
            assert_problem(r, status)


# --- the body and its params -------------------------------------------------------------------
def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_deeply_nested_json_is_400_not_a_crash(live: httpx.Client, small_png: bytes) -> None:
    b64 = base64.b64encode(small_png).decode()
    deep = nested(10_000)
    bodies = [
        f'{{"image_b64": "{b64}", "params": {deep}}}',
        f'{{"image_b64": "{b64}", "params": {{"seed": {deep}}}}}',
        '{"a":' * 10_000 + "1" + "}" * 10_000,
    ]
    for text in bodies:
        r = live.post(SUBMIT, content=text, headers={"content-type": "application/json"})
        assert "nested too deeply" in assert_problem(r, 400)["detail"]
    r = live.post(SUBMIT, files={"image": ("a.png", small_png, "image/png")}, data={"params": deep})
    body = assert_problem(r, 400)
    assert "nested too deeply" in body["detail"] and body["errors"][0]["loc"] == ["body", "params"]
    r = live.post(f"/v1/models/{DEFAULT_MODEL}:predict", content=deep)
    assert "nested too deeply" in assert_problem(r, 400)["detail"]


def test_nesting_the_parser_reads_is_an_invalid_param(live: httpx.Client, small_png: bytes) -> None:
    for params in (
        {"seed": json.loads(nested(200))},
        {"targets": json.loads('{"a":' * 200 + "1" + "}" * 200)},
    ):
        for submit in (submit_multipart, submit_json):
            body = assert_problem(submit(live, small_png, params), 422)
            assert body["errors"][0]["loc"][:2] == ["params", next(iter(params))]


@pytest.mark.parametrize(
    ("params_text", "says"),
    [
        ('{"num_samples": NaN}', "NaN is not JSON"),
        ('{"num_samples": Infinity}', "Infinity is not JSON"),
        ('{"lime": {"alpha": 1e400}}', "out of range"),
        ('{"seed": ' + "9" * 5000 + "}", "digits"),
    ],
    ids=["nan", "infinity", "1e400", "5000-digit-integer"],
)
def test_numbers_json_does_not_have_are_400(
    live: httpx.Client, small_png: bytes, params_text: str, says: str
) -> None:
    b64 = base64.b64encode(small_png).decode()
    text = f'{{"image_b64": "{b64}", "params": {params_text}}}'
    r = live.post(SUBMIT, content=text, headers={"content-type": "application/json"})
    assert says in assert_problem(r, 400)["detail"]
    r = live.post(
        SUBMIT, files={"image": ("a.png", small_png, "image/png")}, data={"params": params_text}
    )
    assert says in assert_problem(r, 400)["detail"]


@pytest.mark.parametrize(
    ("params", "loc", "says"),
    [
        ({"num_samples": 10**12}, ["params", "num_samples"], "100000"),
        ({"num_samples": 1e12}, ["params", "num_samples"], "100000"),
        ({"num_samples": "auto", "max_samples": 10**12}, ["params", "max_samples"], "100000"),
        ({"num_samples": True}, ["params", "num_samples"], "num_samples"),
        (
            {"segmentation": {"algorithm": "felzenszwalb", "sigma": 1e6}},
            ["params", "segmentation", "felzenszwalb", "sigma"],
            "100",
        ),
        (
            {"num_samples": 100_000, "segmentation": {"algorithm": "grid", "cell_size": 2}},
            ["params", "num_samples"],
            "GLIMPSE_MAX_DESIGN_SIZE",
        ),
    ],
    ids=["1e12-int", "1e12-float", "auto-max-1e12", "boolean", "felzenszwalb-sigma", "grid-2"],
)
def test_enormous_budgets_are_422_with_the_limit(
    live: httpx.Client, small_png: bytes, params: dict, loc: list[str], says: str
) -> None:
    for submit in (submit_multipart, submit_json):
        body = assert_problem(submit(live, small_png, params), 422)
        assert body["errors"][0]["loc"] == loc and says in body["detail"], body


def test_the_budget_limit_is_a_setting(app_client, small_png: bytes) -> None:
    client = app_client(max_num_samples=500)
    for params in ({"num_samples": 501}, {"num_samples": "auto", "max_samples": 501}):
        body = assert_problem(submit_json(client, small_png, params), 422)
        assert "at most 500 (GLIMPSE_MAX_NUM_SAMPLES)" in body["detail"], body
    r = submit_json(client, small_png, {"num_samples": 500, "cache": False})
    assert r.status_code == 202, r.text
    client.delete(r.headers["location"])


def test_samples_times_pixels_of_inpainting_is_422(live: httpx.Client) -> None:
    """Inpainting composes every sample at full size: 100,000 samples of a 1000x1000 image
    would be hours of OpenCV; a 10x10 image with the same params is fine."""
    params = {"num_samples": 100_000, "background": {"kind": "inpaint_telea"}, "cache": False}
    image = png_of_zeros(1000, 1000)
    for submit in (submit_multipart, submit_json):
        body = assert_problem(submit(live, image, params), 422)
        assert "GLIMPSE_MAX_COMPOSED_PIXELS" in body["detail"] and "pixels" in body["detail"]
        assert body["errors"][0]["loc"] == ["params", "num_samples"]


@pytest.mark.parametrize("params", ["just a string", 42, True], ids=["string", "number", "bool"])
def test_params_that_are_not_an_object_are_422(
    live: httpx.Client, small_png: bytes, params: object
) -> None:
    for submit in (submit_multipart, submit_json):
        body = assert_problem(submit(live, small_png, params), 422)  # type: ignore[arg-type]
        assert body["errors"][0]["loc"] == ["params"] and "object" in body["detail"]


def test_params_that_are_not_utf8(live: httpx.Client, small_png: bytes) -> None:
    b64 = base64.b64encode(small_png).decode().encode()
    r = live.post(
        SUBMIT,
        content=b'{"image_b64": "' + b64 + b'", "params": {"model": "\xff\xfe"}}',
        headers={"content-type": "application/json"},
    )
    assert "not valid JSON" in assert_problem(r, 400)["detail"]
    # A params file part is decoded leniently: the replacement character breaks the JSON.
    r = live.post(
        SUBMIT,
        files={
            "image": ("a.png", small_png, "image/png"),
            "params": ("p.json", b'{"seed": 1}\xff', "application/json"),
        },
    )
    assert "not valid JSON" in assert_problem(r, 400)["detail"]
    # A params field is read as Latin-1 (Starlette): a model name no folder can have.
    r = live.post(
        SUBMIT,
        files={"image": ("a.png", small_png, "image/png")},
        data={"params": '{"model": "caf\xe9"}'.encode("latin-1")},  # type: ignore[dict-item]
    )
    body = assert_problem(r, 422)
    assert body["errors"][0]["loc"] == ["params", "model"]


# --- model names that try to leave the models folder ---------------------------------------
ESCAPES = [
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    ".",
    "a/b",
    f"{DEFAULT_MODEL}/../broken",
    "..\\..\\windows",
    "a\x00b",
    f"{DEFAULT_MODEL}\n",
    "a..b",
]


@pytest.mark.parametrize("name", ESCAPES, ids=[repr(n) for n in ESCAPES])
def test_model_names_cannot_leave_the_models_folder(
    live: httpx.Client, small_png: bytes, name: str
) -> None:
    for submit in (submit_multipart, submit_json):
        body = assert_problem(submit(live, small_png, {**FAST_PARAMS, "model": name}), 422)
        assert body["errors"] == [{"loc": ["params", "model"], "msg": "not a valid model name"}]
        assert "not a valid model name" in body["detail"]


def test_kserve_model_paths_cannot_leave_the_models_folder(live: httpx.Client) -> None:
    for name in ("..", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "a%00b", "..%5C.."):
        assert live.get(f"/v1/models/{name}").status_code == 404
        r = live.post(f"/v1/models/{name}:predict", json={"instances": ["AAAA"]})
        assert r.status_code == 404, r.text


# --- limits that depend on the model: an in-process API whose default model crops --------
@pytest.fixture(scope="module")
def cropping_models(service_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service's models plus `cropper`, a card with a shorter_side resize (ResNet50's);
    the API only reads cards, so its model.onnx is never opened."""
    root = tmp_path_factory.mktemp("cropping-models")
    (root / DEFAULT_MODEL).symlink_to(service_models_dir / DEFAULT_MODEL)
    card = ModelCard(
        input_name="x",
        output_name="y",
        num_classes=1000,
        labels_file=None,
        **PRESETS["imagenet"],  # type: ignore[arg-type]
    )
    ModelRegistry(root).write("cropper", card)
    return root


def test_an_extreme_aspect_ratio_is_413_for_a_cropping_model(
    app_client, cropping_models: Path
) -> None:
    """A 40000x32 strip has 1.3 M pixels, but scaled to a shorter side of 256 it is
    320000x256: 82 million floats per sample, once enough to kill the worker (MemoryError)."""
    client = app_client(models_dir=cropping_models)
    strip = png_of_zeros(40_000, 32)
    for submit in (submit_multipart, submit_json):
        body = assert_problem(submit(client, strip, {**FAST_PARAMS, "model": "cropper"}), 413)
        assert "320000x256" in body["detail"], body
    r = submit_multipart(client, strip, {**FAST_PARAMS, "cache": False})  # squash: fine
    assert r.status_code == 202, r.text
    client.delete(r.headers["location"])


# --- what only the worker can tell, and the worker afterwards ------------------------------
@pytest.fixture(scope="module")
def worker_log_start(worker: WorkerProcess) -> int:
    return len(worker.output())


def test_accepted_oddities_run_or_fail_with_a_reason(
    client: httpx.Client, worker: WorkerProcess, worker_log_start: int
) -> None:
    """Files that are valid images however odd they look, and params whose cost shows only
    once the superpixels are counted: each job ends finished, or failed with the reason."""
    fast = {**FAST_PARAMS, "cache": False}
    runs = {
        # name: (image, params, "finished" or words of the failure)
        "corrupt-exif": (jpeg_with_app1(JPEG, exif_orientation_out_of_file()), fast, "finished"),
        "60-kb-exif": (jpeg_with_app1(JPEG, huge_exif()), fast, "finished"),
        "png-zip-polyglot": (PNG + b"PK\x03\x04" + b"\x00" * 26 + HTML, fast, "finished"),
        "12-kb-for-12-mb": (png_of_zeros(2000, 2000), fast, "finished"),
        "budget-x-superpixels": (
            PNG,
            {"num_samples": 100_000, "segmentation": {"algorithm": "slic", "n_segments": 1000}},
            "GLIMPSE_MAX_DESIGN_SIZE",
        ),
        "too-many-superpixels": (
            PNG,
            {**fast, "segmentation": {"algorithm": "felzenszwalb", "scale": 0.001, "min_size": 1}},
            "superpixels",
        ),
    }
    ended = {}
    for name, (image, params, outcome) in runs.items():
        r = submit_multipart(client, image, {**params, "cache": False})
        assert r.status_code == 202, (name, r.text)
        job = ended[name] = wait_for_job(client, r.json()["id"], timeout=120)
        if outcome == "finished":
            assert job["status"] == "finished", (name, job)
        else:
            assert job["status"] == "failed", (name, job)
            assert job["error"]["title"] == "Invalid parameters", (name, job)
            assert outcome in job["error"]["detail"], (name, job)
    # EXIF orientation 6 turns the 96x64 photo upright; a corrupt EXIF block is ignored.
    assert ended["60-kb-exif"]["result"]["image"]["width"] == 64
    assert ended["corrupt-exif"]["result"]["image"]["width"] == 96
    assert "Traceback" not in worker.output()[worker_log_start:]


def test_a_png_sent_as_jpeg_is_read_for_what_it_is(live: httpx.Client) -> None:
    """The part's name and Content-Type are not trusted, nor needed: the bytes decide."""
    r = live.post(
        SUBMIT,
        files={"image": ("photo.jpg", PNG, "image/jpeg")},
        data={"params": json.dumps({**FAST_PARAMS, "cache": False})},
    )
    assert r.status_code == 202, r.text
    assert live.delete(r.headers["location"]).status_code == 204


def test_the_worker_survives_the_corpus_and_still_works(
    client: httpx.Client, worker: WorkerProcess, worker_log_start: int, chelsea_png: bytes
) -> None:
    assert worker.proc.poll() is None, worker.output()[-3000:]
    r = submit_json(client, chelsea_png, {**FAST_PARAMS, "seed": 88, "cache": False})
    assert r.status_code == 202, r.text
    job = wait_for_job(client, r.json()["id"])
    assert job["status"] == "finished", job
    assert job["result"]["predictions"][0]["class_index"] == 285
    assert client.get("/readyz").status_code == 200
    assert worker.proc.poll() is None
    assert "Traceback" not in worker.output()[worker_log_start:]
