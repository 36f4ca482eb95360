"""docker/: the compose file and the images, checked as a deployment would rely on them.

Docker's engine does not run here; `docker compose config` validates the file wherever the
compose plugin exists, and the structural checks below run everywhere.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE = DOCKER / "compose.yaml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        return  # no docker client on this machine: the structural tests below still run
    plugin = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if plugin.returncode != 0:
        return  # the client has no compose plugin (this workplace's machines)
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
        assert any(v.startswith("models:/models") for v in service["volumes"])
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
    installs = " ".join(re.findall(r"^RUN (.*(?:\\\n.*)*)", api, re.M))
    assert "pip install --no-deps ." in installs, "the package goes in without its runtime deps"
    assert "onnxruntime" not in installs and "torch" not in installs, "API image: no model runtime"
    gpu = (DOCKER / "Dockerfile.worker-gpu").read_text()
    assert "onnxruntime-gpu" in gpu and "tensorrt" in gpu.lower()
    redis_image = compose()["services"]["redis"]["image"]
    assert re.search(r":\d", redis_image), "redis image not pinned"
