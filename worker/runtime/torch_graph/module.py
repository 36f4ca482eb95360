"""`GraphModule`: an ONNX graph as an `nn.Module`, built once, run per call.

How values are held:
  * Floating initializers and constants are buffers, so `.to(device)`, `.to(dtype)` and
    `.to(memory_format=torch.channels_last)` move and cast them with the module.
  * Integer values (shapes, indices, pads) that do not depend on a graph input stay host-side
    CPU tensors and are read as Python ints; the shape arithmetic that does depend on an
    input runs on small CPU int64 tensors (see ops_shape).
  * Every node whose inputs are all constant is evaluated once, when the module is built
    (constant folding, in the graph's own dtypes on the CPU); only the rest runs per call.
  * Float inputs are cast to the module's floating dtype (that of its buffers), and a Cast
    to a floating type inside the graph yields the module's dtype when that is fp16/bf16, so
    a graph exported in fp32 runs consistently in reduced precision.

Building also runs the graph passes (see passes: Conv+BN folding and Pad absorbed into Conv
unless `fuse=False`). Under no_grad/inference_mode, activations and residual adds overwrite
their input where nothing else reads it, and every value is dropped after its last use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx
import torch
from torch import Tensor, nn

from glimpse.errors import ModelError
from worker.runtime.torch_graph.ir import (
    FOLDING,
    FRESH_OUTPUT_OPS,
    OPS,
    BuildContext,
    Node,
    Runtime,
    Step,
    tensor_from_proto,
)
from worker.runtime.torch_graph.passes import absorb_pad, fold_conv_batchnorm, toposort


class GraphModule(nn.Module):
    """An ONNX graph run by torch. `forward(*inputs)` takes the graph's inputs in order (those
    that are not initializers) and returns its outputs (one tensor, or a tuple)."""

    def __init__(self, model: onnx.ModelProto, *, fuse: bool = True) -> None:
        super().__init__()
        graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        initializers = {t.name: tensor_from_proto(t) for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in initializers]
        self.output_names = [o.name for o in graph.output]
        nodes = [Node.from_proto(n) for n in graph.node]
        for node in nodes:
            if node.domain not in ("", "ai.onnx"):
                raise ModelError(
                    f"ONNX node {node.name!r} is {node.domain}::{node.op}: the torch runtime "
                    "runs the default ONNX domain only"
                )
        unsupported = sorted({n.op for n in nodes} - set(OPS))
        if unsupported:
            raise ModelError(
                f"the torch runtime does not support the ONNX operator(s) {', '.join(unsupported)}"
            )
        self.folded: dict[str, str] = {}  # tensors fused away -> the tensor made instead
        if fuse:
            nodes, self.folded = fold_conv_batchnorm(nodes, initializers, set(self.output_names))
        nodes = toposort(nodes, set(self.input_names) | set(initializers))
        consumers: dict[str, int] = {}
        for name in [i for n in nodes for i in n.inputs] + self.output_names:
            consumers[name] = consumers.get(name, 0) + 1

        static: dict[str, Tensor] = dict(initializers)
        steps: list[Step] = []
        for node in nodes:
            if fuse and node.op == "Conv":
                absorbed = absorb_pad(node, steps, static, consumers)
                if absorbed is not None:
                    node, gone = absorbed
                    self.folded[gone] = node.outputs[0]
            ctx = BuildContext(node, self.opset, static)
            kernel = OPS[node.op](ctx)
            if all(name == "" or name in static for name in node.inputs):
                try:
                    outs = kernel([static.get(n) if n else None for n in node.inputs], FOLDING)
                except ModelError:
                    raise
                except Exception as exc:
                    raise ctx.fail(f"cannot evaluate: {exc}") from exc
                for name, value in zip(node.outputs, outs, strict=False):
                    if name:
                        static[name] = value
            else:
                steps.append(Step(node, kernel))
        self.steps = steps
        self.dynamic_names = [n for s in steps for n in s.node.outputs if n]

        # Constants a run needs: floats as buffers (moved and cast with the module), the
        # rest as host-side tensors.
        needed = {n for s in steps for n in s.node.inputs if n in static}
        needed |= {n for n in self.output_names if n in static}
        self._buffer_of: dict[str, str] = {}
        self._host: dict[str, Tensor] = {}
        for k, name in enumerate(sorted(needed)):
            value = static[name]
            if value.is_floating_point():
                attr = f"c{k}"
                self.register_buffer(attr, value.contiguous(), persistent=False)
                self._buffer_of[name] = attr
            else:
                self._host[name] = value
        self._probe: Tensor  # a buffer: it moves with .to(), so it tells dtype and device
        self.register_buffer("_probe", torch.zeros(0), persistent=False)

        # In-place variants where input 0 is a fresh tensor that nothing else reads.
        made_by = {out: s.node.op for s in steps for out in s.node.outputs}
        for step in steps:
            first = step.node.inputs[0] if step.node.inputs else ""
            if (
                hasattr(step.kernel, "inplace")
                and made_by.get(first) in FRESH_OUTPUT_OPS
                and consumers.get(first, 0) == 1
            ):
                step.inplace = step.kernel.inplace

        last_use: dict[str, int] = {}
        for k, step in enumerate(steps):
            for name in step.node.inputs:
                last_use[name] = k
        keep = set(self.output_names) | set(static)
        for name, k in last_use.items():
            if name not in keep:
                steps[k].drop.append(name)

    @property
    def dtype(self) -> torch.dtype:
        return self._probe.dtype

    @property
    def device(self) -> torch.device:
        return self._probe.device

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        outs, _ = self.execute(dict(zip(self.input_names, inputs, strict=True)))
        return outs[0] if len(outs) == 1 else tuple(outs)

    def execute(
        self,
        feeds: dict[str, Tensor],
        fetch: Sequence[str] | None = None,
        *,
        intercept: str | None = None,
    ) -> tuple[list[Tensor], Tensor | None]:
        """Run the graph. `fetch`: names to return (the graph outputs by default).
        `intercept`: a tensor to detach and mark as requiring grad where it is made, so that
        gradients of the outputs with respect to it can be taken; returned second."""
        rt = Runtime(self.dtype, self.device)
        wanted = list(fetch) if fetch is not None else self.output_names
        keep = set(wanted) | ({intercept} if intercept else set())
        env: dict[str, Any] = dict(self._host)
        for name, attr in self._buffer_of.items():
            env[name] = self._buffers[attr]
        for name in self.input_names:
            if name not in feeds:
                raise ModelError(f"the graph needs input {name!r}")
            x = feeds[name]
            if x.is_floating_point() and x.dtype != rt.dtype:
                x = x.to(rt.dtype)
            env[name] = x
        captured: Tensor | None = None
        if intercept is not None and intercept in env:
            captured = env[intercept] = env[intercept].detach().requires_grad_(True)
        inplace = not torch.is_grad_enabled()
        for step in self.steps:
            node = step.node
            kernel = step.kernel
            if inplace and step.inplace is not None and node.inputs[0] not in keep:
                kernel = step.inplace
            outs = kernel([env[n] if n else None for n in node.inputs], rt)
            for name, value in zip(node.outputs, outs, strict=False):
                if name:
                    if name == intercept:
                        value = value.detach().requires_grad_(True)
                        captured = value
                    env[name] = value
            for name in step.drop:
                if name not in keep:
                    env.pop(name, None)
        missing = [n for n in wanted if n not in env]
        if missing:
            raise ModelError(f"the graph has no tensor named {missing[0]!r}")
        return [env[n] for n in wanted], captured
