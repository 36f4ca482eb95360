"""ONNX Runtime: warm InferenceSessions per model, on the CPU, CUDA or TensorRT providers.

`__call__(batch)` runs the model as exported. `bind(image, background, segments)` runs the
model with the perturbation fused in front of it (worker/runtime/fused.py): image,
background and segment map are bound once per explanation, on the device, with IOBinding;
each batch then sends only z.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from glimpse.cards import ModelCard
from glimpse.errors import ModelError
from worker.runtime.base import GradientModel
from worker.runtime.fused import BACKGROUND, IMAGE, SEGMENTS, Z, fuse_perturbation

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def probe_providers(providers: list[str]) -> list[str]:
    """The providers a session asking for `providers` really gets on this machine: asked of
    a one-node graph, since onnxruntime-gpu lists CUDA as available where no GPU is."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    available = set(ort.get_available_providers())
    chosen = [p for p in providers if p in available] or ["CPUExecutionProvider"]
    session = ort.InferenceSession(model.SerializeToString(), providers=chosen)
    return list(session.get_providers())


class OnnxRuntimeModel:
    runtime = "onnxruntime"

    def __init__(
        self,
        path: Path,
        card: ModelCard,
        *,
        providers: list[str] | None = None,
        intra_op_threads: int = 0,
        fused: bool = True,
    ) -> None:
        self.card = card
        self.path = Path(path)
        self.fused = fused
        available = set(ort.get_available_providers())
        chosen = [p for p in (providers or ["CPUExecutionProvider"]) if p in available]
        self._providers = chosen or ["CPUExecutionProvider"]
        self._options = ort.SessionOptions()
        self._options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            self._options.intra_op_num_threads = intra_op_threads
        self.session = self._session(str(self.path))
        self.providers: list[str] = self.session.get_providers()
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if card.input_name not in inputs or card.output_name not in outputs:
            raise ModelError(
                f"{path}: card names input {card.input_name!r} / output {card.output_name!r}, "
                f"graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}"
            )
        self.device = "cuda" if self.providers[0] in GPU_PROVIDERS else "cpu"
        self._fused_session: ort.InferenceSession | None = None
        self._extra_sessions: dict[tuple[str, ...], ort.InferenceSession] = {}
        self._lock = threading.Lock()
        self._gradients: GradientModel | None = None

    def _session(self, model: str | bytes) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(
                model, sess_options=self._options, providers=self._providers
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load {self.path}: {exc}") from exc

    @property
    def description(self) -> str:
        mode = "fused perturbation" if self.fused else "host perturbation"
        return f"onnxruntime ({', '.join(self.providers)}; {mode})"

    def gradients(self) -> GradientModel | None:
        """The same file on the PyTorch runtime (fp32, this model's device), for methods
        that need autodiff; built on first use and kept with this model, so it is reloaded
        when the model is (WarmModels, by the file's mtime). None where PyTorch or the torch
        runtime is not installed."""
        if self._gradients is None:
            if not all(importlib.util.find_spec(m) for m in ("torch", "worker.runtime.torch")):
                return None
            from worker.runtime.torch import TorchModel  # the optional PyTorch runtime

            self._gradients = TorchModel(self.path, self.card, device=self.device, precision="fp32")
        return self._gradients

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """batch: (n, 3, h, w) float32 -> (n, C) raw outputs."""
        out = self.session.run([self.card.output_name], {self.card.input_name: batch})[0]
        return np.asarray(out).reshape(len(batch), -1)

    def fused_session(self) -> ort.InferenceSession:
        """The fused graph's session, built on first use and kept for every later request."""
        with self._lock:
            if self._fused_session is None:
                graph = fuse_perturbation(onnx.load(str(self.path)), self.card.input_name)
                self._fused_session = self._session(graph.SerializeToString())
            return self._fused_session

    def run_with_outputs(self, batch: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
        """Intermediate tensors `names` of the graph for `batch` (e.g. a feature map for
        Grad-CAM): a session with them added as graph outputs, built once per set of names."""
        with self._lock:
            session = self._extra_sessions.get(names)
            if session is None:
                graph = onnx.load(str(self.path))
                present = {o.name for o in graph.graph.output}
                for name in names:
                    if name not in present:
                        graph.graph.output.append(
                            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                        )
                session = self._session(graph.SerializeToString())
                self._extra_sessions[names] = session
        outputs = session.run(list(names), {self.card.input_name: batch})
        return [np.asarray(o) for o in outputs]

    def bind(
        self, image: np.ndarray, background: np.ndarray, segments: np.ndarray
    ) -> Callable[[np.ndarray], np.ndarray]:
        """image, background: (3, h, w) float32; segments: (h, w) ids on the input grid.

        Returns f(z) with z: (n, m) {0,1} -> (n, C) raw outputs of the composed images.
        """
        session = self.fused_session()
        binding = session.io_binding()
        constants = {
            IMAGE: np.ascontiguousarray(image, np.float32),
            BACKGROUND: np.ascontiguousarray(background, np.float32),
            SEGMENTS: np.ascontiguousarray(segments[None], np.int64),
        }
        # Device-resident for the whole explanation: OrtValues live as long as the closure.
        resident = {
            k: ort.OrtValue.ortvalue_from_numpy(v, self.device, 0) for k, v in constants.items()
        }
        for name, value in resident.items():
            binding.bind_ortvalue_input(name, value)
        output = self.card.output_name

        def evaluate(z: np.ndarray) -> np.ndarray:
            binding.bind_cpu_input(Z, np.ascontiguousarray(z, np.float32))
            binding.bind_output(output, self.device)
            session.run_with_iobinding(binding)
            out = binding.copy_outputs_to_cpu()[0]
            return np.asarray(out).reshape(len(z), -1)

        evaluate.resident = resident  # type: ignore[attr-defined]
        return evaluate
