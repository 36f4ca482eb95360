"""Print an image's third-party requirements, read from pyproject.toml (one list to keep).

    python docker/requirements.py api        the API: no model runtime
    python docker/requirements.py worker     every dependency (ONNX Runtime on the CPU)
    python docker/requirements.py gpu        the same with onnxruntime-gpu for onnxruntime
    python docker/requirements.py torch      the torch extra (TORCH=1: the gradient methods)

Images install these in a layer of their own, before the source is copied, so a change to
the code rebuilds in seconds.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

#: What only the workers and the CLI import: the API validates, queues and renders without it
#: (the `onnx` package stays: the API reads graphs for Grad-CAM layer names, it runs none).
#: tests/docker/test_compose.py imports the API with these blocked.
WORKER_ONLY = frozenset(
    {"onnxruntime", "opencv-python-headless", "scikit-image", "scikit-learn", "tqdm", "httpx"}
)


def name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match.group(0).lower()


def requirements(image: str, pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    deps: list[str] = project["dependencies"]
    if image == "api":
        return [d for d in deps if name(d) not in WORKER_ONLY]
    if image == "worker":
        return list(deps)
    if image == "gpu":
        gpu = project["optional-dependencies"]["gpu"]
        return [d for d in deps if name(d) != "onnxruntime"] + gpu
    if image == "torch":
        return list(project["optional-dependencies"]["torch"])
    raise SystemExit(f"requirements.py: unknown image {image!r} (api, worker, gpu, torch)")


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    print("\n".join(requirements(sys.argv[1], root / "pyproject.toml")))
