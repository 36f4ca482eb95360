"""PyTorch runtime: the ONNX graph interpreted by torch (worker/runtime/torch_graph.py), on
the CPU or CUDA, in fp32, fp16 (CUDA only) or bf16, optionally channels_last.

For hosts that have PyTorch with CUDA but not onnxruntime-gpu. Same interface as
`OnnxRuntimeModel`: `__call__(batch)` runs the model; `bind(image, background, segments)`
keeps the three on the device for a whole explanation and composes each perturbed batch
there, so per batch only z crosses; `activations_and_gradients` serves Grad-CAM.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch

from glimpse.cards import ModelCard
from glimpse.errors import ModelError
from worker.runtime.torch_graph import GraphModule

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when torch sees a GPU, else cpu; 'cuda' -> the current CUDA device."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"torch device {device!r} is not a device: {exc}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"torch device {device!r}: this PyTorch sees no CUDA device")
        index = resolved.index if resolved.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ModelError(f"torch device {device!r}: there is no CUDA device {index}")
        resolved = torch.device("cuda", index)
    elif resolved.type != "cpu":
        raise ModelError(f"torch device {device!r}: only cpu and cuda are supported")
    return resolved


def host_tensor(array: np.ndarray, dtype: type) -> torch.Tensor:
    """A CPU tensor over `array` as `dtype` (no copy when it already is one and writable)."""
    array = np.ascontiguousarray(array, dtype)
    if not array.flags.writeable:  # torch warns on read-only memory; copy instead
        array = array.copy()
    return torch.from_numpy(array)


class TorchModel:
    runtime = "torch"

    def __init__(
        self,
        path: Path,
        card: ModelCard,
        *,
        device: str = "auto",
        precision: str = "fp32",
        channels_last: bool = False,
        fused: bool = True,
        threads: int = 0,
    ) -> None:
        self.card = card
        self.path = Path(path)
        self.fused = fused
        if precision not in PRECISIONS:
            raise ModelError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        self._device = resolve_device(device)
        if precision == "fp16" and self._device.type == "cpu":
            raise ModelError(
                "precision fp16 needs a CUDA device: PyTorch's CPU kernels lack fp16 "
                "convolutions; use bf16 (or fp32) on the CPU"
            )
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.channels_last = channels_last
        if threads:
            torch.set_num_threads(threads)  # process-wide, unlike ONNX Runtime's per session
        self.graph = self._build(fuse=True)
        self._unfolded: GraphModule | None = None
        self._lock = threading.Lock()
        inputs, outputs = set(self.graph.input_names), set(self.graph.output_names)
        if card.input_name not in inputs or card.output_name not in outputs:
            raise ModelError(
                f"{path}: card names input {card.input_name!r} / output {card.output_name!r}, "
                f"graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}"
            )
        others = sorted(inputs - {card.input_name})
        if others:
            raise ModelError(f"{path}: the graph needs inputs besides the image: {others}")
        self.device = str(self._device)
        self.providers: list[str] = [self.device, precision]
        if channels_last:
            self.providers.append("channels_last")

    def _build(self, *, fuse: bool) -> GraphModule:
        try:
            proto = onnx.load(str(self.path))
        except Exception as exc:  # protobuf and file errors alike
            raise ModelError(f"cannot load {self.path}: {exc}") from exc
        graph = GraphModule(proto, fuse=fuse).eval()
        del proto  # the weights now live in the module's buffers
        graph = graph.to(self._device)
        if self.dtype != torch.float32:
            graph = graph.to(self.dtype)
        if self.channels_last:
            graph = graph.to(memory_format=torch.channels_last)
        return graph

    @property
    def description(self) -> str:
        mode = "fused perturbation" if self.fused else "host perturbation"
        return f"torch ({', '.join(self.providers)}; {mode})"

    def layers(self) -> list[str]:
        """Tensors computed per call, in execution order (candidates for Grad-CAM)."""
        return list(self.graph.dynamic_names)

    def _to_device(self, batch: np.ndarray) -> torch.Tensor:
        x = host_tensor(np.asarray(batch), np.float32).to(self._device, self.dtype)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _run(self, graph: GraphModule, x: torch.Tensor) -> torch.Tensor:
        outs, _ = graph.execute({self.card.input_name: x}, [self.card.output_name])
        return outs[0]

    @staticmethod
    def _host(t: torch.Tensor, n: int) -> np.ndarray:
        return t.detach().float().reshape(n, -1).cpu().numpy()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """batch: (n, 3, h, w) float32 -> (n, C) raw outputs, float32."""
        with torch.inference_mode():
            return self._host(self._run(self.graph, self._to_device(batch)), len(batch))

    def bind(
        self, image: np.ndarray, background: np.ndarray, segments: np.ndarray
    ) -> Callable[[np.ndarray], np.ndarray]:
        """image, background: (3, h, w) float32; segments: (h, w) ids on the input grid.

        Returns f(z) with z: (n, m) {0,1} -> (n, C) raw outputs of the composed images. The
        three arrays go to the device once; each call sends z only and composes
        `bg + (x - bg) * z[:, segments]` there, in fp32 (as the host would), then casts.
        """
        with torch.inference_mode():
            bg = host_tensor(background, np.float32).to(self._device)
            x = host_tensor(image, np.float32).to(self._device)
            diff = x - bg
            seg = host_tensor(segments, np.int64).to(self._device)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format

        def evaluate(z: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                zt = host_tensor(z, np.asarray(z).dtype).to(self._device)
                mask = zt.to(torch.float32)[:, seg]  # (n, h, w)
                batch = mask[:, None] * diff[None]
                batch += bg[None]
                batch = batch.to(self.dtype).contiguous(memory_format=memory_format)
                return self._host(self._run(self.graph, batch), len(z))

        evaluate.resident = (x, bg, diff, seg)  # type: ignore[attr-defined]
        return evaluate

    def _graph_with(self, layer: str) -> GraphModule:
        if layer in self.graph.folded:  # fused away: a graph that keeps every tensor
            with self._lock:
                if self._unfolded is None:
                    self._unfolded = self._build(fuse=False)
            return self._unfolded
        if layer in self.graph.input_names or layer in self.graph.dynamic_names:
            return self.graph
        raise ModelError(
            f"layer {layer!r} is not a tensor computed by {self.path.name}; "
            f"the last few are {self.graph.dynamic_names[-5:]}"
        )

    def run_with_outputs(self, batch: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
        """Intermediate tensors `names` for `batch`, float32 on the host (as
        OnnxRuntimeModel.run_with_outputs)."""
        graphs = [self._graph_with(name) for name in names]  # validates every name
        graph = next((g for g in graphs if g is not self.graph), self.graph)
        with torch.inference_mode():
            outs, _ = graph.execute({self.card.input_name: self._to_device(batch)}, list(names))
        return [np.ascontiguousarray(o.float().cpu().numpy()) for o in outs]

    def activations_and_gradients(
        self, batch: np.ndarray, layer: str, classes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Activations A of the tensor `layer`, the gradient of Σ_i raw[i, classes[i]] with
        respect to A (same shape), and the raw outputs (n, C); all float32 on the host."""
        n = len(batch)
        classes = np.asarray(classes, np.int64).reshape(-1)
        if len(classes) != n:
            raise ValueError(f"{len(classes)} classes for a batch of {n}")
        graph = self._graph_with(layer)
        with torch.inference_mode(False), torch.enable_grad():
            x = self._to_device(batch)
            outs, activations = graph.execute(
                {self.card.input_name: x}, [self.card.output_name], intercept=layer
            )
            raw = outs[0].reshape(n, -1)
            if activations is None:
                raise ModelError(f"layer {layer!r} was not computed")
            rows = torch.arange(n, device=raw.device)
            picked = raw[rows, torch.as_tensor(classes).to(raw.device)]
            (gradient,) = torch.autograd.grad(picked.sum(), activations)
        return (
            np.ascontiguousarray(activations.detach().float().cpu().numpy()),
            np.ascontiguousarray(gradient.detach().float().cpu().numpy()),
            self._host(raw, n),
        )
