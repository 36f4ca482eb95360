"""The interpreter's core: the parsed graph, the operator registry and what kernels share.

* `Node`: an ONNX node as parsed (op, name, inputs, outputs, decoded attributes); `Step`:
  a node as `GraphModule` runs it, with its kernel, the values last used there and, where
  it may overwrite its first input, the in-place kernel.
* A `Builder` turns a node (`BuildContext`: the node, the opset and the inputs known before
  any run) into a `Kernel`: a function of the input values and the `Runtime` (the module's
  floating dtype and device) that returns the outputs. `op(...)` registers a builder in
  `OPS` under operator names; the ops_* modules register theirs when imported (the
  package imports them all), and `supported_ops()` lists them.
* Which ops may overwrite their input (`INPLACE_OPS`, kernels given an `.inplace` variant
  by `with_inplace`) and which always make a new tensor (`FRESH_OUTPUT_OPS`).
* ONNX tensors as torch tensors (`ONNX_TO_TORCH`, `tensor_from_proto`) and the small
  helpers the kernels share: integer-list inputs resolved once when constant, else read per
  call (`_fixed_or_runtime`, `_axes_from`), host-side tensors moved to the device of the
  others (`_align`), ONNX pads in F.pad's order (`_torch_pads`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor

from glimpse.errors import ModelError

ONNX_TO_TORCH: dict[int, torch.dtype] = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.INT64: torch.int64,
    TensorProto.INT32: torch.int32,
    TensorProto.INT16: torch.int16,
    TensorProto.INT8: torch.int8,
    TensorProto.UINT8: torch.uint8,
    TensorProto.BOOL: torch.bool,
}


def tensor_from_proto(proto: onnx.TensorProto) -> Tensor:
    """An ONNX tensor as a CPU torch tensor of the same dtype (a copy)."""
    if proto.data_type not in ONNX_TO_TORCH:
        name = TensorProto.DataType.Name(proto.data_type)
        raise ModelError(f"tensor {proto.name!r} has type {name}, which the torch runtime lacks")
    array = numpy_helper.to_array(proto)
    if proto.data_type == TensorProto.BFLOAT16:
        array = array.astype(np.float32)
    tensor = torch.from_numpy(np.array(array, copy=True, order="C"))
    return tensor.to(ONNX_TO_TORCH[proto.data_type])


# --- the runtime context handed to every kernel ----------------------------------------------
@dataclass(frozen=True)
class Runtime:
    """Where a run happens: the module's floating dtype and device."""

    dtype: torch.dtype
    device: torch.device

    @property
    def upcast(self) -> bool:
        """Reduced precision on the CPU: convolutions and matrix products take fp32 kernels
        on the fp16/bf16 values and round their results back. That is what a native bf16
        kernel computes (bf16 operands, fp32 accumulation, bf16 result), but PyTorch's CPU
        bf16 convolutions are emulated, and 10-30x slower, on CPUs without AVX512-BF16/AMX."""
        return self.device.type == "cpu" and self.dtype != torch.float32

    def float_type(self, wanted: torch.dtype) -> torch.dtype:
        """The dtype a graph-made float of type `wanted` gets: as asked in fp32 mode, the
        module's dtype when it runs in reduced precision."""
        return wanted if self.dtype == torch.float32 else self.dtype


FOLDING = Runtime(torch.float32, torch.device("cpu"))

Kernel = Callable[[list[Any], Runtime], list[Tensor]]


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    domain: str = ""

    @classmethod
    def from_proto(cls, proto: onnx.NodeProto) -> Node:
        attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
        return cls(
            op=proto.op_type,
            name=proto.name or f"{proto.op_type}->{proto.output[0] if proto.output else ''}",
            inputs=list(proto.input),
            outputs=list(proto.output),
            attrs=attrs,
            domain=proto.domain,
        )


@dataclass
class BuildContext:
    """What a kernel builder sees: the node, the opset, and the inputs known in advance."""

    node: Node
    opset: int
    static: dict[str, Tensor]

    def attr(self, name: str, default: Any = None) -> Any:
        value = self.node.attrs.get(name, default)
        if isinstance(value, bytes):
            return value.decode()
        return value

    def has_input(self, i: int) -> bool:
        return len(self.node.inputs) > i and self.node.inputs[i] != ""

    def const(self, i: int) -> Tensor | None:
        """Input i when it is known before any run (an initializer or folded), else None."""
        if not self.has_input(i):
            return None
        return self.static.get(self.node.inputs[i])

    def is_const(self, i: int) -> bool:
        return not self.has_input(i) or self.node.inputs[i] in self.static

    def fail(self, why: str) -> ModelError:
        return ModelError(f"ONNX node {self.node.name!r} ({self.node.op}): {why}")


Builder = Callable[[BuildContext], Kernel]
OPS: dict[str, Builder] = {}

# Kernels of these ops may carry `.inplace`: the same op writing over its first input, used
# when nothing else can see that input (see GraphModule: saves an allocation per activation).
INPLACE_OPS = {"Relu", "Sigmoid", "Clip", "HardSwish", "LeakyRelu", "Add", "Mul", "Sub"}
# Ops whose output is a new tensor (never a view of an input): their outputs may be
# overwritten in place by the next op when it is their only consumer.
FRESH_OUTPUT_OPS = INPLACE_OPS | {
    "Conv",
    "Gemm",
    "MatMul",
    "BatchNormalization",
    "Div",
    "Pow",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
}


def with_inplace(kernel: Kernel, inplace: Kernel) -> Kernel:
    kernel.inplace = inplace  # type: ignore[attr-defined]
    return kernel


def op(*names: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        for name in names:
            OPS[name] = builder
        return builder

    return register


def supported_ops() -> list[str]:
    return sorted(OPS)


# --- small helpers ---------------------------------------------------------------------------
def _ints(t: Tensor | Sequence[int] | None) -> list[int] | None:
    if t is None:
        return None
    if isinstance(t, Tensor):
        return [int(v) for v in t.detach().reshape(-1).cpu().tolist()]
    return [int(v) for v in t]


def _scalar(t: Tensor) -> float | int | bool:
    return t.detach().reshape(-1)[0].cpu().item()


def _align(*xs: Tensor) -> list[Tensor]:
    """Move host-side tensors to the device of the first one that lives elsewhere."""
    device = next((x.device for x in xs if x.device.type != "cpu"), None)
    if device is None:
        return list(xs)
    return [x if x.device == device else x.to(device) for x in xs]


def _prod(values: Sequence[int]) -> int:
    return math.prod(int(v) for v in values)


def _torch_pads(begins: Sequence[int], ends: Sequence[int]) -> list[int]:
    """ONNX (x1_begin, x2_begin, ..., x1_end, ...) over trailing dims -> F.pad's order."""
    out: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends), strict=True):
        out += [int(b), int(e)]
    return out


def _fixed_or_runtime(ctx: BuildContext, i: int) -> Callable[[list[Any]], list[int] | None]:
    """Integer list input i, resolved once when constant, else read per call."""
    const = ctx.const(i)
    if const is not None or not ctx.has_input(i):
        fixed = _ints(const)
        return lambda xs: fixed
    return lambda xs: _ints(xs[i])


def _axes_from(ctx: BuildContext, index: int) -> Callable[[list[Any]], list[int] | None]:
    """Axes of Squeeze/Unsqueeze/Reduce*: an attribute in older opsets, else input `index`."""
    if "axes" in ctx.node.attrs:
        fixed = [int(a) for a in ctx.node.attrs["axes"]]
        return lambda xs: fixed
    return _fixed_or_runtime(ctx, index)


# --- a node as the module runs it ------------------------------------------------------------
@dataclass
class Step:
    node: Node
    kernel: Kernel
    drop: list[str] = field(default_factory=list)  # values last used here
    inplace: Kernel | None = None  # may overwrite input 0: nothing else sees it
