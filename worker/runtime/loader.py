"""Loading models into a runtime (ONNX Runtime or PyTorch, as the settings say), keeping
them warm across jobs (reloaded when the file changes), and asking a runtime where it runs."""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from glimpse.cards import ModelCard, ModelRegistry, RegisteredModel
from glimpse.errors import ModelError
from glimpse.settings import Settings
from worker.runtime.onnx import OnnxRuntimeModel

if TYPE_CHECKING:  # torch is an optional extra: imported only when the settings ask for it
    from worker.runtime.torch import TorchModel

ModelRuntime: TypeAlias = "OnnxRuntimeModel | TorchModel"


@dataclass
class LoadedModel:
    registered: RegisteredModel
    runtime: ModelRuntime
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.registered.name


def build_runtime(path: Path, card: ModelCard, settings: Settings) -> ModelRuntime:
    """The runtime the settings name, around the ONNX file at `path`."""
    if settings.runtime == "torch":
        try:
            from worker.runtime.torch import TorchModel
        except ImportError as exc:
            raise ModelError(
                f"runtime 'torch' needs PyTorch ({exc}); install it with pip install "
                "'glimpse[torch]' or set GLIMPSE_RUNTIME=onnxruntime"
            ) from exc
        return TorchModel(
            path,
            card,
            device=settings.torch_device,
            precision=settings.precision,
            channels_last=settings.channels_last,
            fused=settings.fused_perturbation,
            threads=settings.intra_op_threads,
            mode=settings.torch_mode,
        )
    if settings.precision != "fp32":
        raise ModelError(
            f"precision {settings.precision!r} is available with runtime 'torch'; "
            "onnxruntime runs the graph as exported (fp32)"
        )
    return OnnxRuntimeModel(
        path,
        card,
        providers=settings.providers,
        intra_op_threads=settings.intra_op_threads,
        fused=settings.fused_perturbation,
    )


def load_model(registered: RegisteredModel, settings: Settings) -> LoadedModel:
    path = registered.onnx_path
    if not path.is_file():
        raise ModelError(f"model {registered.name!r} has no model.onnx in {registered.folder}")
    runtime = build_runtime(path, registered.card, settings)
    _ = registered.labels  # read and check the labels now, not in the middle of a job
    return LoadedModel(registered=registered, runtime=runtime, mtime_ns=path.stat().st_mtime_ns)


@dataclass(frozen=True)
class RuntimeReport:
    """What a worker's runtime runs on here, as /v1/models reports it."""

    runtime: str
    providers: list[str]
    device: str  # "cuda" or "cpu"
    note: str = ""  # why it is not what the settings asked for
    gradients: bool = False  # autodiff here: integrated_gradients and xrai can run


def probe_runtime(settings: Settings) -> RuntimeReport:
    """Ask the configured runtime where it would run, before any model is loaded. A GPU asked
    for and not usable here is said so in `note`; the worker then runs on the CPU."""
    if settings.runtime == "torch":
        from worker.runtime.torch import resolve_device

        device = str(resolve_device(settings.torch_device))
        return RuntimeReport(
            runtime="torch",
            providers=[device, settings.precision],
            device="cuda" if device.startswith("cuda") else "cpu",
            gradients=True,
        )
    from worker.runtime.onnx import GPU_PROVIDERS, probe_providers

    got = probe_providers(settings.providers)
    asked_gpu = [p for p in settings.providers if p in GPU_PROVIDERS]
    device = "cuda" if got[0] in GPU_PROVIDERS else "cpu"
    note = ""
    if asked_gpu and device == "cpu":
        note = f"no usable GPU here for {', '.join(asked_gpu)}: running on the CPU"
    gradients = all(importlib.util.find_spec(m) for m in ("torch", "worker.runtime.torch"))
    return RuntimeReport(
        runtime="onnxruntime", providers=got, device=device, note=note, gradients=gradients
    )


class WarmModels:
    """Sessions built once per model in the process that runs the jobs; reloaded when the
    model file changes on disk."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings.models_dir)
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> LoadedModel:
        registered = self.registry.get(name)
        with self._lock:
            cached = self._models.get(name)
            if cached is not None and cached.mtime_ns == _mtime(registered):
                return cached
            loaded = load_model(registered, self.settings)
            self._models[name] = loaded
            return loaded


def _mtime(registered: RegisteredModel) -> int:
    try:
        return registered.onnx_path.stat().st_mtime_ns
    except OSError:
        return -1
