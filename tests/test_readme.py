"""README.md's "Using it" section, run as written against a real service started the
README's way (`bash scripts/serve.sh`), in a user's environment: no GLIMPSE_ settings, a HOME
of its own, `.venv/bin` first on PATH (the Set-up's `source .venv/bin/activate`). Only the
port is substituted. Each ```bash block runs under `bash -euo pipefail -c`, each ```python
block under the venv's Python, in a folder holding `cat.jpg` (skimage's chelsea), and each
is checked for what it says it does. A block may be left out only when an HTML comment
right before it says `not run by tests/test_readme.py`, and only one or two may be."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from onnx_models import pooled_classifier
from PIL import Image
from services import REPO, free_port, fresh_env, wait_until
from skimage import data as skdata

pytestmark = pytest.mark.slow

SHARED_MODELS = REPO.parent / "shared" / "models"
VENV_BIN = REPO / ".venv" / "bin"
README_PORT = "127.0.0.1:8000"
SKIP_MARK = re.compile(r"<!--\s*not run by tests/test_readme\.py:\s*(.+?)\s*-->")
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
PNG = b"\x89PNG\r\n\x1a\n"
CHELSEA = (300, 451)  # height, width


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # 1-based line of the opening fence in README.md
    skip_reason: str | None


def using_it_blocks() -> list[Block]:
    """The ```bash and ```python blocks from `## Using it` up to `## Methods`."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("## Using it")
    end = lines.index("## Methods")
    blocks: list[Block] = []
    i = start
    while i < end:
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, language = opening.groups()
        j = i + 1
        while not (lines[j].strip() == "```" and lines[j].startswith(indent)):
            j += 1
        previous = next((line for line in reversed(lines[start:i]) if line.strip()), "")
        skip = SKIP_MARK.search(previous)
        if language in ("bash", "python"):
            code = textwrap.dedent("\n".join(lines[i + 1 : j])) + "\n"
            blocks.append(Block(language, code, i + 1, skip.group(1) if skip else None))
        i = j + 1
    return blocks


BLOCKS = using_it_blocks()


@dataclass
class Service:
    port: int
    home: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The shell of a user who ran `source .venv/bin/activate`."""
        env = fresh_env(self.home)
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        return env


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("readme")
    home = root / "home"
    home.mkdir()
    # The README's offline route: register a model as the default, then serve.sh serves it.
    subprocess.run(
        [
            str(VENV_BIN / "glimpse"),
            *("models", "add", "efficientnet-lite0"),
            str(SHARED_MODELS / "efficientnet-lite0.onnx"),
            *("--labels", str(SHARED_MODELS / "imagenet1k_labels.txt")),
            *("--preset", "imagenet-squash", "--default"),
        ],
        cwd=root,
        env=fresh_env(home),
        check=True,
        capture_output=True,
    )
    port = free_port()
    log_path = root / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["bash", "scripts/serve.sh", "--port", str(port)],
            cwd=REPO,
            env=fresh_env(home),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        served = Service(port, home)

        def ready() -> bool:
            try:
                return httpx.get(f"{served.url}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        try:
            try:
                wait_until(ready, timeout=120, what="serve.sh's service", proc=proc)
            except (RuntimeError, TimeoutError) as exc:
                pytest.fail(f"{exc}\n{log_path.read_text()}")
            yield served
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    assert proc.returncode == 0, log_path.read_text()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A user's folder: cat.jpg and coffee.jpg (any photos will do), and for the `--model
    mynet.onnx` example a classifier of their own and its labels."""
    Image.fromarray(skdata.chelsea()).save(tmp_path / "cat.jpg", quality=90)
    Image.fromarray(skdata.coffee()).save(tmp_path / "coffee.jpg", quality=90)
    pooled_classifier(tmp_path / "mynet.onnx")
    (tmp_path / "labels.txt").write_text("".join(f"class {i}\n" for i in range(1000)))
    return tmp_path


def run_block(block: Block, service: Service, cwd: Path) -> str:
    code = block.code.replace(README_PORT, f"127.0.0.1:{service.port}")
    if block.language == "bash":
        argv = ["bash", "-euo", "pipefail", "-c", code]
    else:
        argv = [str(VENV_BIN / "python"), "-c", code]
    done = subprocess.run(
        argv, cwd=cwd, env=service.env(), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, (
        f"README.md:{block.line} exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}"
        f"\n--- stderr\n{done.stderr[-3000:]}"
    )
    return done.stdout


# --- what each block promises ------------------------------------------------------------------
def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        return image.height, image.width


def check_curl(out: str, cwd: Path, service: Service) -> None:
    job = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert job["status"] == "finished", job.get("error")
    assert job["params"]["num_samples"] == 500 and len(job["result"]["explanations"]) == 2
    for name in ("overlay.png", "boundaries.png", "segments.png"):
        assert is_png(cwd / name), name
        assert png_size(cwd / name) == CHELSEA
    maps = np.load(cwd / "attribution.npy")
    assert maps.dtype == np.float32 and maps.shape == (2, *CHELSEA)
    # the last line deleted the job
    assert httpx.get(f"{service.url}/v1/explanations/{job['id']}").status_code == 404


def check_httpx(out: str, cwd: Path, service: Service) -> None:
    label, probability, top_weight = out.strip().splitlines()[-1].rsplit(" ", 2)
    assert "cat" in label and 0 < float(probability) <= 1 and float(top_weight) > 0
    assert is_png(cwd / "overlay.png") and png_size(cwd / "overlay.png") == CHELSEA


def check_cli(out: str, cwd: Path, service: Service) -> None:
    result = json.loads((cwd / "out" / "result.json").read_text())
    assert result["method"] == "kernel_shap" and len(result["explanations"]) == 2
    assert result["model"]["name"] == "efficientnet-lite0"  # the folder's default
    assert np.load(cwd / "out" / "attribution.npy").shape == (2, *CHELSEA)
    for e in result["explanations"]:
        assert is_png(cwd / "out" / f"overlay-{e['class_index']}.png")
    assert is_png(cwd / "out" / "segments.png") and is_png(cwd / "out" / "figure.png")
    mine = json.loads((cwd / "glimpse-out" / "cat" / "result.json").read_text())
    assert mine["model"]["name"] == "mynet" and mine["segments"]["algorithm"] == "slic"
    assert mine["predictions"][0]["label"].startswith("class ")
    compared = json.loads((cwd / "compared" / "result.json").read_text())
    methods = [m["method"] for m in compared["comparison"]["methods"]]
    assert methods == ["gradcam", "lime", "kernel_shap"]
    assert is_png(cwd / "compared" / "figure-compare.png")
    for name in ("cat", "coffee"):  # several images: a folder each
        many = json.loads((cwd / "many" / name / "result.json").read_text())
        photo = (cwd / f"{name}.jpg").read_bytes()
        assert many["image"]["sha256"] == hashlib.sha256(photo).hexdigest()
        assert many["stats"]["model_evaluations"] <= 200


def check_batch(out: str, cwd: Path, service: Service) -> None:
    batch = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert batch["status"] == "finished", batch
    assert batch["counts"]["finished"] == len(batch["jobs"]) == 2
    assert batch["progress"]["done"] == batch["progress"]["total"] > 0
    # the last line deleted the batch and its jobs
    assert httpx.get(f"{service.url}/v1/batches/{batch['id']}").status_code == 404
    for job in batch["jobs"]:
        assert httpx.get(f"{service.url}/v1/explanations/{job['id']}").status_code == 404


def check_client(out: str, cwd: Path, service: Service) -> None:
    lines = out.strip().splitlines()
    assert "cat" in lines[-1]  # the top label
    assert any(re.fullmatch(r"\d+ 500", line) for line in lines[:-1])  # progress
    assert is_png(cwd / "overlay.png")


def check_kserve(out: str, cwd: Path, service: Service) -> None:
    (top5,) = json.loads(out)["predictions"]
    assert len(top5) == 5 and "cat" in top5[0]["label"]


def check_keys(out: str, cwd: Path, service: Service) -> None:
    card = dict(line.split(":", 1) for line in (cwd / "new-key.txt").read_text().splitlines())
    key = (cwd / "key.txt").read_text().strip()
    assert key == card["key"].strip() and key.startswith("gk_")
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert card["sha256"].strip() == digest
    assert out.strip().splitlines()[-1] == digest  # `keys hash` agrees with `keys new`


Check = Callable[[str, Path, Service], None]
# A block is recognised by a line of its own; each runnable block must match exactly one.
CHECKS: dict[str, Check] = {
    "/v1/explanations | python3": check_curl,
    "/v1/batches | python3": check_batch,
    "api = httpx.Client(": check_httpx,
    "glimpse explain cat.jpg --method kernel_shap": check_cli,
    "from glimpse.client import GlimpseClient": check_client,
    ":predict": check_kserve,
    "glimpse keys new": check_keys,
}


def check_for(block: Block) -> Check:
    found = [check for needle, check in CHECKS.items() if needle in block.code]
    assert len(found) == 1, f"README.md:{block.line}: {len(found)} checks match this block"
    return found[0]


RUNNABLE = [b for b in BLOCKS if b.skip_reason is None]


def test_the_section_has_its_examples_and_skips_at_most_two() -> None:
    assert len(RUNNABLE) >= len(CHECKS)
    assert len(BLOCKS) - len(RUNNABLE) <= 2, [b.line for b in BLOCKS if b.skip_reason]
    for block in RUNNABLE:
        check_for(block)


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"README.md:{b.line}" for b in RUNNABLE])
def test_a_readme_block_runs_as_written(block: Block, service: Service, workdir: Path) -> None:
    check = check_for(block)
    check(run_block(block, service, workdir), workdir, service)
