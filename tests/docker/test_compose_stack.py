"""docker/compose.yaml brought up for real: the images built from this working tree, the stack
started with the shared EfficientNet placed in its models volume, then driven over HTTP as a
user would (jobs, artifacts, a killed worker, a restarted Redis, `down -v`).

Needs a Docker engine with the compose plugin (`../shared/tools/docker-here.sh` makes one on
this project's machines; CI runs it first). Where Docker is missing it skips, except under
CI=true, where it fails: CI must never pass without having run it.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from services import free_port, png_bytes, wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker" / "compose.yaml"
SHARED_MODELS = (REPO.parent / "shared" / "models").resolve()
FAST = {"num_samples": 300, "segmentation": {"algorithm": "slic", "n_segments": 40}}


def docker_ready() -> str | None:
    """None when `docker compose` can run containers here, else why not."""
    if shutil.which("docker") is None:
        return "no docker client"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no Docker engine answers"
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        return "no compose plugin"
    return None


class Stack:
    """The compose project of docker/compose.yaml that the tests own. Its name is fixed, so
    each run's images replace the last run's under the same tags (and reuse their layers)."""

    def __init__(self) -> None:
        self.project = "glimpse-compose-test"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "GLIMPSE_PORT": f"127.0.0.1:{self.port}",
            "GLIMPSE_WORKER_HEARTBEAT_S": "2",  # a killed worker is dead after 6 s
            "GLIMPSE_RATE_LIMIT_PER_MINUTE": "0",
        }
        self.client = httpx.Client(base_url=self.url, timeout=30)
        self.figures: dict[str, float | int] = {}

    def compose(self, *args: str, timeout: float = 900, check: bool = True) -> str:
        argv = ["docker", "compose", "-f", str(COMPOSE), "-p", self.project, *args]
        done = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=REPO
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {done.returncode}\n{done.stderr[-4000:]}")
        return done.stdout + done.stderr

    def containers(self, service: str) -> list[str]:
        out = subprocess.run(
            [
                "docker",
                "ps",
                "-q",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
                "--filter",
                f"label=com.docker.compose.service={service}",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.split()

    def ready(self) -> bool:
        try:
            return self.client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def workers_alive(self) -> str:
        try:
            return self.client.get("/readyz").json()["checks"].get("workers", "")
        except (httpx.TransportError, ValueError):
            return ""

    def submit(self, image: bytes, params: dict) -> str:
        r = self.client.post(
            "/v1/explanations",
            files={"image": ("photo.png", image, "image/png")},
            data={"params": json.dumps({**params, "cache": False})},
        )
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def wait(self, job_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                job = self.client.get(f"/v1/explanations/{job_id}").json()
                if job.get("status") in {"finished", "failed", "canceled"}:
                    return job
            except (httpx.TransportError, ValueError):
                pass  # the API waiting for Redis to come back
            assert time.monotonic() < deadline, f"job {job_id} did not end in {timeout} s"
            time.sleep(0.3)

    def finished_total(self) -> float:
        text = self.client.get("/metrics").text
        match = re.search(r'^glimpse_jobs_total\{outcome="finished"\} (\S+)$', text, re.M)
        return float(match.group(1)) if match else 0.0


def leftovers(project: str) -> dict[str, list[str]]:
    label = f"label=com.docker.compose.project={project}"
    found = {}
    for kind in ("container", "network", "volume"):
        argv = ["docker", kind, "ls", "-q", "--filter", label]
        if kind == "container":
            argv.insert(3, "-a")
        found[kind] = subprocess.run(argv, capture_output=True, text=True).stdout.split()
    return found


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    reason = docker_ready()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"CI must run the compose test: {reason} (run ../shared/tools/docker-here.sh)"
            )
        pytest.skip(f"the compose test needs Docker: {reason}")
    assert (SHARED_MODELS / "efficientnet-lite0.onnx").is_file(), "../shared/models is missing"
    s = Stack()
    s.compose("down", "-v", "--remove-orphans", check=False)  # what an aborted run left
    try:
        started = time.monotonic()
        s.compose("build", "api", "worker")
        s.figures["build_s"] = round(time.monotonic() - started, 1)
        s.compose(
            "run",
            "--rm",
            "-v",
            f"{SHARED_MODELS}:/in:ro",
            "models",
            "glimpse",
            "models",
            "add",
            "efficientnet-lite0",
            "/in/efficientnet-lite0.onnx",
            "--labels",
            "/in/imagenet1k_labels.txt",
            "--preset",
            "imagenet-squash",
            "--default",
        )
        s.figures["up_started"] = time.monotonic()
        s.compose("up", "-d")
        wait_until(s.ready, timeout=180, what="/readyz of the compose stack")
        # the one-shot models service ran `glimpse models init` (its `|| true` hides a crash)
        init = s.compose("logs", "models")
        assert "default model 'efficientnet-lite0' is registered" in init, init[-2000:]
        yield s
    finally:
        s.client.close()
        s.compose("down", "-v", "--remove-orphans", check=False)
        print(f"compose figures: {json.dumps(s.figures)}")


@pytest.fixture(scope="module")
def photo() -> bytes:
    from skimage import data

    return png_bytes(data.chelsea())


def test_lime_and_kernel_shap_jobs_finish_with_their_artifacts(stack: Stack, photo: bytes) -> None:
    lime = stack.submit(photo, {"method": "lime", **FAST})
    job = stack.wait(lime)
    assert job["status"] == "finished", job
    stack.figures["up_to_lime300_s"] = round(time.monotonic() - stack.figures["up_started"], 1)
    assert job["result"]["predictions"][0]["class_index"] == 285  # Egyptian cat
    shap = stack.submit(photo, {"method": "kernel_shap", **FAST})
    job = stack.wait(shap)
    assert job["status"] == "finished", job
    assert job["result"]["stats"]["model_evaluations"] == 300
    for job_id in (lime, shap):
        overlay = stack.client.get(f"/v1/explanations/{job_id}/overlay.png")
        assert overlay.status_code == 200 and overlay.content[:8] == b"\x89PNG\r\n\x1a\n"
        maps = np.load(
            io.BytesIO(stack.client.get(f"/v1/explanations/{job_id}/attribution.npy").content)
        )
        assert maps.dtype == np.float32 and maps.shape == (1, 300, 451)
    models = stack.client.get("/v1/models").json()
    (default,) = [m for m in models if m["default"]]
    assert default["name"] == "efficientnet-lite0" and default["devices"] == ["cpu"]


def test_a_killed_worker_s_job_finishes_once_on_the_other(stack: Stack, photo: bytes) -> None:
    stack.compose("up", "-d", "--no-recreate", "--scale", "worker=2", "worker")
    wait_until(lambda: stack.workers_alive() == "2 alive", timeout=120, what="2 workers")
    before = stack.finished_total()
    job_id = stack.submit(photo, {"method": "kernel_shap", "num_samples": 3000, "seed": 5})

    def runner() -> str | None:
        for container in stack.containers("worker"):
            logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
            if job_id in logs.stdout + logs.stderr:
                return container
        return None

    wait_until(lambda: runner() is not None, timeout=60, what="a worker to take the job")
    victim = runner()
    assert victim is not None
    wait_until(
        lambda: stack.client.get(f"/v1/explanations/{job_id}").json()["progress"]["done"] > 0,
        timeout=60,
        what="the job's first evaluations",
    )
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
    job = stack.wait(job_id, timeout=300)
    assert job["status"] == "finished", job
    assert job["result"]["stats"]["model_evaluations"] == 3000
    assert stack.finished_total() == before + 1  # once: the killed run never finished it
    stack.compose("up", "-d", "--no-recreate", "--scale", "worker=1", "worker")


def test_a_job_queued_before_redis_restarts_still_finishes(stack: Stack, photo: bytes) -> None:
    stack.compose("stop", "worker")
    job_id = stack.submit(photo, {"method": "lime", **FAST, "seed": 11})
    assert stack.client.get(f"/v1/explanations/{job_id}").json()["status"] == "queued"
    stack.compose("restart", "redis")
    stack.compose("start", "worker")
    job = stack.wait(job_id, timeout=240)
    assert job["status"] == "finished", job


def test_the_gpu_image_builds_and_runs_on_the_cpu_without_a_gpu(stack: Stack) -> None:
    started = time.monotonic()
    stack.compose("--profile", "gpu", "build", "worker-gpu", timeout=1800)
    stack.figures["gpu_build_s"] = round(time.monotonic() - started, 1)
    image = f"{stack.project}_worker-gpu"
    name = f"{stack.project}-gpu-probe"
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "--network",
            f"{stack.project}_default",
            "-e",
            "REDIS_URL=redis://redis:6379/0",
            "-e",
            "GLIMPSE_WORKER_HEARTBEAT_S=2",
            "-v",
            f"{stack.project}_models:/models:ro",
            image,
        ],
        check=True,
        capture_output=True,
    )
    try:

        def noted() -> list[str]:
            return [n for m in stack.client.get("/v1/models").json() for n in m["notes"]]

        wait_until(lambda: bool(noted()), timeout=120, what="the GPU worker's report")
        assert noted()[0].startswith("no usable GPU here for TensorrtExecutionProvider")
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
        assert "no usable GPU here" in logs.stdout + logs.stderr
        assert "cuda" not in stack.client.get("/v1/models").json()[0]["devices"]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_images_are_non_root_and_healthy(stack: Stack) -> None:
    for service in ("api", "worker"):
        for container in stack.containers(service):
            user = subprocess.run(
                ["docker", "exec", container, "id", "-u"], capture_output=True, text=True
            ).stdout.strip()
            assert user == "10001", (service, user)

            def healthy(container: str = container) -> bool:
                state = subprocess.run(
                    ["docker", "inspect", "-f", "{{.State.Health.Status}}", container],
                    capture_output=True,
                    text=True,
                ).stdout.strip()
                return state == "healthy"

            wait_until(healthy, timeout=120, what=f"{service} healthy")
    for service in ("api", "worker", "worker-gpu"):
        size = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", f"{stack.project}_{service}"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if size:
            stack.figures[f"{service}_image_mb"] = round(int(size) / 1e6)


def test_down_v_leaves_nothing_behind(stack: Stack) -> None:
    stack.compose("down", "-v", "--remove-orphans")
    assert leftovers(stack.project) == {"container": [], "network": [], "volume": []}
