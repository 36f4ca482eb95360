"""docker/: the compose file and the images, read as a deployment relies on them.

These structural checks run everywhere, Docker or not; tests/docker/test_compose_stack.py
builds the images and runs the stack.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE = DOCKER / "compose.yaml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    plugin = docker and subprocess.run([docker, "compose", "version"], capture_output=True)
    if not plugin or plugin.returncode != 0:
        pytest.skip("no docker compose here (the stack test fails in CI without it)")
    assert docker is not None
    for profile in ([], ["--profile", "gpu"]):
        done = subprocess.run(
            [docker, "compose", "-f", str(COMPOSE), *profile, "config", "--quiet"],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr


def test_services_and_their_health() -> None:
    services = compose()["services"]
    assert {"redis", "api", "worker", "worker-gpu", "models"} <= set(services)
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(v.startswith("redis-data:") for v in redis["volumes"])
    assert redis["healthcheck"]["test"][-1] == "ping"
    for name in ("api", "worker", "worker-gpu"):
        service = services[name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["depends_on"]["models"]["condition"] == "service_completed_successfully"
        assert "models:/models:ro" in service["volumes"]
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:6379")


def test_the_gpu_worker_reserves_a_gpu_behind_a_profile() -> None:
    gpu = compose()["services"]["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.worker-gpu"


def test_images_are_pinned_non_root_and_healthchecked() -> None:
    for name in ("Dockerfile.api", "Dockerfile.worker", "Dockerfile.worker-gpu"):
        text = (DOCKER / name).read_text()
        base = re.search(r"^FROM (\S+)", text, re.M)
        assert base and re.search(r":\d", base.group(1)), f"{name}: base image not pinned"
        assert re.search(r"^USER (?!root|0)\S+", text, re.M), f"{name}: runs as root"
        assert "HEALTHCHECK" in text, f"{name}: no health check"
    api = (DOCKER / "Dockerfile.api").read_text()
    assert "requirements.py api" in api and "onnxruntime" not in api.replace("onnxruntime)", "")
    gpu = (DOCKER / "Dockerfile.worker-gpu").read_text()
    assert "requirements.py gpu" in gpu and "tensorrt" in gpu.lower()
    for name in ("Dockerfile.worker", "Dockerfile.worker-gpu"):  # TORCH=1: the gradient methods
        text = (DOCKER / name).read_text()
        assert "ARG TORCH=0" in text and "requirements.py torch" in text, name
    for service in ("worker", "worker-gpu"):
        assert compose()["services"][service]["build"]["args"] == {"TORCH": "${GLIMPSE_TORCH:-0}"}
    redis_image = compose()["services"]["redis"]["image"]
    assert re.search(r":\d", redis_image), "redis image not pinned"


def test_dependencies_install_before_the_source_is_copied() -> None:
    """A code-only change must not reinstall the dependencies: their RUN comes before any
    COPY of the packages, and reads only pyproject.toml."""
    for name in ("Dockerfile.api", "Dockerfile.worker", "Dockerfile.worker-gpu"):
        lines = (DOCKER / name).read_text().splitlines()
        deps = next(
            i for i, line in enumerate(lines) if "docker/requirements.py" in line and "RUN" in line
        )
        first_source = next(
            i for i, line in enumerate(lines) if re.match(r"COPY (glimpse|app|worker)", line)
        )
        assert deps < first_source, name


def test_the_models_step_needs_nothing_beside_the_repository() -> None:
    models = compose()["services"]["models"]
    assert models["volumes"] == ["models:/models"], "no host folder (labels come with the fetch)"
    assert "glimpse models init" in " ".join(models["command"])
    assert "user" not in models, "non-root: the image's /models is the volume's owner"


@pytest.mark.parametrize("image", ["api", "worker", "gpu"])
def test_image_requirements_come_from_pyproject(image: str) -> None:
    import sys

    sys.path.insert(0, str(DOCKER))
    try:
        from requirements import WORKER_ONLY, name, requirements
    finally:
        sys.path.remove(str(DOCKER))
    pyproject = DOCKER.parent / "pyproject.toml"
    names = {name(r) for r in requirements(image, pyproject)}
    assert {"fastapi", "redis", "rq", "onnx"} <= names
    if image == "api":
        assert not names & WORKER_ONLY
    else:
        assert ("onnxruntime-gpu" if image == "gpu" else "onnxruntime") in names


def test_the_api_runs_without_the_worker_only_packages() -> None:
    """The API image leaves out WORKER_ONLY: the app must build, and render an overlay,
    with each of them impossible to import."""
    import subprocess
    import sys

    sys.path.insert(0, str(DOCKER))
    try:
        from requirements import WORKER_ONLY
    finally:
        sys.path.remove(str(DOCKER))
    modules = {"onnxruntime", "cv2", "skimage", "scipy", "sklearn", "tqdm", "httpx"}
    assert {"onnxruntime", "opencv-python-headless", "scikit-image"} <= WORKER_ONLY
    script = f"""
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {sorted(modules)!r}:
            raise ImportError("the API image has no " + name)
sys.meta_path.insert(0, Refuse())
import numpy as np
from app.main import create_app
from glimpse.render import render_overlay
from glimpse.settings import Settings
create_app(Settings(redis_url="redis://127.0.0.1:9/0"))
image = np.zeros((8, 8, 3), np.uint8)
segments = np.arange(64).reshape(8, 8) // 16
render_overlay(image, segments, np.array([1.0, -1.0, 0.5, 0.0]), style="boundaries")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=DOCKER.parent, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
