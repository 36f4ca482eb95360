"""PyTorch runtime: the ONNX graph interpreted by torch (the worker/runtime/torch_graph
package), on the CPU or CUDA, in fp32, tf32 or fp16 (CUDA only) or bf16, optionally
channels_last, eagerly or as CUDA graphs and/or through torch.compile (`MODES`).

For hosts that have PyTorch with CUDA but not onnxruntime-gpu. Same interface as
`OnnxRuntimeModel`: `__call__(batch)` runs the model; `bind(image, background, segments)`
keeps the three on the device for a whole explanation and composes each perturbed batch
there, so per batch only z crosses; `activations_and_gradients` serves Grad-CAM.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import onnx
import torch

from glimpse.cards import ModelCard
from glimpse.errors import ModelError
from worker.runtime.torch_graph import GraphModule

PRECISIONS = {
    "fp32": torch.float32,
    "tf32": torch.float32,  # fp32 values, TF32 tensor-core convolutions and matrix products
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
CUDA_ONLY_PRECISIONS = {
    "fp16": "PyTorch's CPU kernels lack fp16 convolutions; use bf16 (or fp32) on the CPU",
    "tf32": "TF32 is a mode of NVIDIA's tensor cores; use fp32 on the CPU",
}
#: How each batch runs: eager (one PyTorch call per ONNX node), cuda_graphs (each input shape
#: captured once as a CUDA graph, then replayed: one launch per batch; CUDA only), compile
#: (torch.compile, once per input shape), compile_cuda_graphs (the compiled code, captured).
MODES = ("eager", "cuda_graphs", "compile", "compile_cuda_graphs")
#: Input shapes captured per model at most; batches of other shapes then run uncaptured.
MAX_CUDA_GRAPHS = 16

T = TypeVar("T")


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


def host_tensor(array: np.ndarray, dtype: npt.DTypeLike) -> torch.Tensor:
    """A CPU tensor over `array` as `dtype` (no copy when it already is one and writable)."""
    array = np.ascontiguousarray(array, dtype)
    if not array.flags.writeable:  # torch warns on read-only memory; copy instead
        array = array.copy()
    return torch.from_numpy(array)


def _shape_key(x: torch.Tensor) -> tuple[object, ...]:
    return (tuple(x.shape), x.dtype, x.is_contiguous(memory_format=torch.channels_last))


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
        mode: str | None = None,
    ) -> None:
        """`mode`: one of MODES; None takes GLIMPSE_TORCH_MODE (`torch_mode` in the settings)."""
        if mode is None:
            from glimpse.settings import get_settings

            mode = get_settings().torch_mode
        if mode not in MODES:
            raise ModelError(f"torch mode {mode!r}: choose one of {', '.join(MODES)}")
        self.card = card
        self.path = Path(path)
        self.fused = fused
        if precision not in PRECISIONS:
            raise ModelError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        self._device = resolve_device(device)
        if precision in CUDA_ONLY_PRECISIONS and self._device.type == "cpu":
            raise ModelError(
                f"precision {precision} needs a CUDA device: {CUDA_ONLY_PRECISIONS[precision]}"
            )
        if "cuda_graphs" in mode and self._device.type != "cuda":
            raise ModelError(f"torch mode {mode} needs a CUDA device; use eager or compile")
        self.mode = mode
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
        if mode != "eager":
            self.providers.append(mode)
        self._compiled: dict[tuple[object, ...], Callable[[torch.Tensor], torch.Tensor]] = {}
        self._cuda_graphs: dict[tuple[object, ...], tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self._graph_pool: Any = None
        self._replay_lock = threading.Lock()

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
        self._math_mode()
        outs, _ = graph.execute({self.card.input_name: x}, [self.card.output_name])
        return outs[0]

    def _math_mode(self) -> None:
        """TF32 on or off for this model's CUDA convolutions and matrix products. The switches
        are process-wide, so they are set before every run (fp32 means IEEE fp32 here, not
        cuDNN's default of TF32 convolutions). The legacy switches: PyTorch refuses a mix of
        them and the newer fp32_precision ones, and only these exist in every version."""
        if self._device.type == "cuda":
            tf32 = self.precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32

    def _eager_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.graph, x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """One forward pass, compiled or not as `mode` says (not yet captured)."""
        if "compile" in self.mode:
            return self._compiled_forward(x)
        return self._eager_forward(x)

    def _compiled_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass through torch.compile, traced and compiled once per input shape.
        The interpreter's loop is first flattened into one FX graph by running it (make_fx):
        dynamo itself stops at the interpreter's shape arithmetic, and a break inside the
        loop leaves the whole loop uncompiled."""
        key = _shape_key(x)
        compiled = self._compiled.get(key)
        if compiled is None:
            from torch.fx.experimental.proxy_tensor import make_fx

            self._math_mode()
            traced = make_fx(lambda t: self._eager_forward(t))(x)
            compiled = self._compiled[key] = torch.compile(traced, dynamic=False)
        self._math_mode()
        return compiled(x)

    def _forward_batch(self, x: torch.Tensor, consume: Callable[[torch.Tensor], T]) -> T:
        """`consume(outputs)` of the model on device batch x, run as `mode` says. A replayed
        graph writes its outputs into the same tensor every time, so they are consumed (copied
        to the host) before another batch of that shape may run."""
        if "cuda_graphs" not in self.mode:
            return consume(self._forward(x))
        with self._replay_lock:
            captured = self._captured(x)
            if captured is None:
                return consume(self._forward(x))
            graph, static_in, static_out = captured
            self._math_mode()
            static_in.copy_(x)
            graph.replay()
            return consume(static_out)

    def _captured(self, x: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor] | None:
        """The CUDA graph of the forward pass for x's shape, dtype and layout, captured on
        first use (after two warm-up runs on a side stream, as PyTorch's docs do); None once
        MAX_CUDA_GRAPHS shapes are held. All graphs share one memory pool: they only ever
        replay one at a time, and each keeps its own input and output tensors."""
        key = _shape_key(x)
        found = self._cuda_graphs.get(key)
        if found is not None or len(self._cuda_graphs) >= MAX_CUDA_GRAPHS:
            return found
        if self._graph_pool is None:
            self._graph_pool = torch.cuda.graph_pool_handle()
        static_in = x.clone(memory_format=torch.preserve_format)
        side = torch.cuda.Stream(device=self._device)
        side.wait_stream(torch.cuda.current_stream(self._device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(static_in)
        torch.cuda.current_stream(self._device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self._graph_pool):
                static_out = self._forward(static_in)
        except RuntimeError as exc:
            raise ModelError(f"{self.path.name}: CUDA graph capture failed: {exc}") from exc
        self._cuda_graphs[key] = (graph, static_in, static_out)
        return self._cuda_graphs[key]

    @staticmethod
    def _host(t: torch.Tensor, n: int) -> np.ndarray:
        return t.detach().float().reshape(n, -1).cpu().numpy()

    def forward_device(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, 3, h, w) on the device, in the model's dtype and layout -> the raw outputs
        there, run as `mode` says, with no host transfer either way (benchmarks). Under CUDA
        graphs the result is the graph's own output: the next batch of that shape overwrites
        it."""
        with torch.inference_mode():
            return self._forward_batch(x, lambda out: out)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """batch: (n, 3, h, w) float32 -> (n, C) raw outputs, float32."""
        n = len(batch)
        with torch.inference_mode():
            return self._forward_batch(self._to_device(batch), lambda out: self._host(out, n))

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
                n = len(z)
                return self._forward_batch(batch, lambda out: self._host(out, n))

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

    def input_gradients(
        self, batch: np.ndarray, classes: np.ndarray, output_space: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """The gradient of each row's score for its class with respect to that row's input,
        and the scores (worker/runtime/base.py GradientModel): one forward and one backward
        pass over the batch, in fp32 outputs whatever the model's precision."""
        n = len(batch)
        classes = np.asarray(classes, np.int64).reshape(-1)
        if len(classes) != n:
            raise ValueError(f"{len(classes)} classes for a batch of {n}")
        with torch.inference_mode(False), torch.enable_grad():
            x = self._to_device(batch).requires_grad_(True)
            raw = self._run(self.graph, x).reshape(n, -1).float()
            scores = _in_output_space(raw, self.card.output_kind, output_space)
            rows = torch.arange(n, device=raw.device)
            picked = scores[rows, torch.as_tensor(classes).to(raw.device)]
            (gradient,) = torch.autograd.grad(picked.sum(), x)
        return (
            np.ascontiguousarray(gradient.detach().float().cpu().numpy()),
            picked.detach().double().cpu().numpy(),
        )


def _in_output_space(raw: torch.Tensor, output_kind: str, space: str) -> torch.Tensor:
    """Raw outputs (n, C) -> probabilities or logits, as the engine's to_output_space."""
    if output_kind == "logits":
        return torch.softmax(raw, dim=1) if space == "probability" else raw
    return raw if space == "probability" else torch.log(raw.clamp_min(1e-12))
