"""scripts/serve.sh, the README's first command, as a fresh GitHub clone runs it: no
../shared, a models folder that does not exist yet, ResNet50 fetched (from a local HTTP server
standing in for the model zoo, with its files' checksums pinned in the settings), or, offline,
one line saying how to add a model."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from onnx_models import pooled_classifier
from services import REPO, FileServer, free_port, fresh_env, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def zoo(tmp_path: Path) -> Iterator[tuple[FileServer, dict[str, str]]]:
    site = tmp_path / "site"
    site.mkdir()
    model = pooled_classifier(
        site / "resnet50-v2-7.onnx", output_name="resnetv24_dense0_fwd", weights_as_inputs=True
    )
    labels = site / "synset.txt"
    labels.write_text("".join(f"n{i:08d} thing {i}\n" for i in range(1000)))
    server = FileServer(site)
    settings = {
        "GLIMPSE_RESNET50_URL": f"{server.url}/resnet50-v2-7.onnx",
        "GLIMPSE_RESNET50_SHA256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "GLIMPSE_RESNET50_LABELS_URL": f"{server.url}/synset.txt",
        "GLIMPSE_RESNET50_LABELS_SHA256": hashlib.sha256(labels.read_bytes()).hexdigest(),
    }
    yield server, settings
    server.stop()


def test_a_fresh_clone_fetches_resnet50_and_serves_it(
    tmp_path: Path, zoo: tuple[FileServer, dict[str, str]]
) -> None:
    server, sources = zoo
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        ["bash", "scripts/serve.sh", "--port", str(port)],
        cwd=REPO,
        env=fresh_env(home, **sources),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def ready() -> bool:
        try:
            return client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout=120, what="serve.sh's service", proc=proc)
        (model,) = client.get("/v1/models").json()
        assert model["name"] == "resnet50" and model["default"] is True
        folder = home / ".local" / "share" / "glimpse" / "models"  # the absolute default
        assert (folder / ".default").read_text() == "resnet50\n"
        assert (folder / "resnet50" / "labels.txt").read_text().splitlines()[7] == "thing 7"
        assert server.requests == {"/synset.txt": 1, "/resnet50-v2-7.onnx": 1}
        # The CLI, from another folder, sees the same models and the same default.
        listed = subprocess.run(
            [str(REPO / ".venv" / "bin" / "glimpse"), "models", "list"],
            cwd=tmp_path,
            env=fresh_env(home),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert listed.splitlines()[1].startswith("* resnet50")
    finally:
        client.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()


def test_offline_without_a_model_it_says_in_one_line_what_to_do(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    offline = {
        "GLIMPSE_RESNET50_URL": "http://127.0.0.1:9/resnet50-v2-7.onnx",
        "GLIMPSE_RESNET50_LABELS_URL": "http://127.0.0.1:9/synset.txt",
    }
    done = subprocess.run(
        ["bash", "scripts/serve.sh"],
        cwd=REPO,
        env=fresh_env(home, **offline),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("serve: ") and "cannot be fetched" in lines[0]
    assert "glimpse models add NAME FILE.onnx --labels FILE --default" in lines[0]
