"""End-to-end fixtures of the API and worker tests (a pytest plugin: tests/conftest.py names
it in `pytest_plugins`; it is not a conftest.py, whose module name would shadow the root
conftest that other tests import from): one real redis-server, one uvicorn serving
create_app and one RQ worker for the whole session, on free ports; in-process app variants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from services import (
    BROKEN_MODEL,
    DEFAULT_MODEL,
    Api,
    InProcessApi,
    RedisServer,
    WorkerProcess,
    png_bytes,
)
from skimage import data as skdata

from glimpse.keys import hash_key, new_key
from glimpse.settings import Settings


@pytest.fixture(scope="session")
def service_models_dir(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared EfficientNet plus a registered model whose model.onnx is garbage."""
    root = tmp_path_factory.mktemp("service-models")
    (root / DEFAULT_MODEL).symlink_to(models_dir / DEFAULT_MODEL, target_is_directory=True)
    broken = root / BROKEN_MODEL
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"this is not an onnx model")
    card = (models_dir / DEFAULT_MODEL / "model.json").read_text()
    (broken / "model.json").write_text(card)
    (broken / "labels.txt").write_text((models_dir / DEFAULT_MODEL / "labels.txt").read_text())
    return root


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service_env(service_models_dir: Path, redis_server: RedisServer) -> dict[str, str]:
    return {
        "GLIMPSE_MODELS_DIR": str(service_models_dir),
        "GLIMPSE_DEFAULT_MODEL": DEFAULT_MODEL,
        "REDIS_URL": redis_server.url,
        "GLIMPSE_BATCH_SIZE": "32",
        # The tests submit many jobs from one address; tests/app/test_api_access.py turns the
        # limit on where it is tested.
        "GLIMPSE_RATE_LIMIT_PER_MINUTE": "0",
    }


@pytest.fixture(scope="session")
def worker(service_env: dict[str, str], redis_server: RedisServer) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(service_env, redis_server.client)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def api(service_env: dict[str, str]) -> Iterator[Api]:
    server = Api(service_env)
    yield server
    output = server.output()
    server.stop()
    # Never a 500 for anything a client sent: the API logged no unhandled error.
    assert "Traceback" not in output and "Internal error" not in output, output


@pytest.fixture(scope="session")
def api_keys() -> tuple[str, str]:
    """Two API keys, made as `glimpse keys new` makes them."""
    return new_key(), new_key()


@pytest.fixture(scope="session")
def keyed_api(service_env: dict[str, str], api_keys: tuple[str, str]) -> Iterator[Api]:
    """A second API on the same Redis, queue and worker, with the two keys configured (their
    digests, comma-separated, as an operator would set them)."""
    digests = ",".join(hash_key(key) for key in api_keys)
    server = Api({**service_env, "GLIMPSE_API_KEY_HASHES": digests})
    yield server
    output = server.output()
    server.stop()
    assert "Traceback" not in output and "Internal error" not in output, output
    assert not any(key in output for key in api_keys), "an API key was logged in clear"


@pytest.fixture(scope="session")
def client(api: Api, worker: WorkerProcess) -> httpx.Client:
    """A client of the live API, with a worker behind it."""
    return api.client


@pytest.fixture(scope="session")
def settings_for(service_models_dir: Path, redis_server: RedisServer):
    """Settings of an in-process app variant (own queue and key prefix: no worker sees it)."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "models_dir": service_models_dir,
            "default_model": DEFAULT_MODEL,
            "redis_url": redis_server.url,
            "queue_name": "variant",
            "key_prefix": "variant",
            "rate_limit_per_minute": 0,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def app_client(settings_for) -> Iterator:
    """`app_client(**settings)`: an httpx client of create_app(those settings), served by
    uvicorn in a thread of this process."""
    servers: list[InProcessApi] = []

    def make(**overrides: object) -> httpx.Client:
        from app.main import create_app

        server = InProcessApi(create_app(settings_for(**overrides)))
        servers.append(server)
        return server.client

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    return skdata.chelsea()


@pytest.fixture(scope="session")
def chelsea_png(chelsea: np.ndarray) -> bytes:
    return png_bytes(chelsea)


@pytest.fixture(scope="session")
def small_png() -> bytes:
    rng = np.random.default_rng(0)
    return png_bytes(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
