"""A small ONNX interpreter in PyTorch: an ONNX graph as an `nn.Module`.

`GraphModule(model)` walks the graph's nodes in topological order and runs each with torch
ops. It is built for image classifiers (convolutions, pooling, elementwise ops, the shape
arithmetic exporters emit around them), not for every ONNX operator: an operator it does not
know is refused up front with a `ModelError` that names it.

How values are held:
  * Floating initializers and constants are buffers, so `.to(device)`, `.to(dtype)` and
    `.to(memory_format=torch.channels_last)` move and cast them with the module.
  * Integer values (shapes, indices, pads) that do not depend on a graph input stay host-side
    CPU tensors and are read as Python ints; the shape arithmetic that does depend on an
    input (Shape → Gather → Unsqueeze → Concat → Reshape) runs on small CPU int64 tensors,
    so no device round trip happens in the middle of the network.
  * Every node whose inputs are all constant is evaluated once, when the module is built
    (constant folding, in the graph's own dtypes on the CPU); only the rest runs per call.
  * Float inputs are cast to the module's floating dtype (that of its buffers), and a Cast
    to a floating type inside the graph yields the module's dtype when that is fp16/bf16, so
    a graph exported in fp32 runs consistently in reduced precision.

Fusions when the module is built (pass `fuse=False` to keep every tensor of the original
graph observable, e.g. for `execute(..., intercept=name)`): Conv → BatchNormalization with
constant parameters becomes one Conv (as ONNX Runtime does), and a zero Pad of the spatial
dims in front of a Conv becomes the Conv's own padding. Under no_grad/inference_mode,
activations and residual adds overwrite their input where nothing else reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor, nn

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


# --- elementwise -----------------------------------------------------------------------------
def _unary(fn: Callable[[Tensor], Tensor]) -> Builder:
    def build(ctx: BuildContext) -> Kernel:
        return lambda xs, rt: [fn(xs[0])]

    return build


def _unary_inplace(fn: Callable[[Tensor], Tensor], fn_: Callable[[Tensor], Tensor]) -> Builder:
    def build(ctx: BuildContext) -> Kernel:
        return with_inplace(lambda xs, rt: [fn(xs[0])], lambda xs, rt: [fn_(xs[0])])

    return build


OPS["Relu"] = _unary_inplace(torch.relu, torch.relu_)
OPS["Sigmoid"] = _unary_inplace(torch.sigmoid, torch.sigmoid_)

for _name, _fn in {
    "Tanh": torch.tanh,
    "Exp": torch.exp,
    "Log": torch.log,
    "Neg": torch.neg,
    "Abs": torch.abs,
    "Sqrt": torch.sqrt,
    "Erf": torch.erf,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Reciprocal": torch.reciprocal,
    "Identity": lambda x: x,
}.items():
    OPS[_name] = _unary(_fn)


@op("LeakyRelu")
def _leaky_relu(ctx: BuildContext) -> Kernel:
    alpha = float(ctx.attr("alpha", 0.01))
    return with_inplace(
        lambda xs, rt: [F.leaky_relu(xs[0], alpha)],
        lambda xs, rt: [F.leaky_relu(xs[0], alpha, inplace=True)],
    )


@op("HardSigmoid")
def _hard_sigmoid(ctx: BuildContext) -> Kernel:
    alpha = float(ctx.attr("alpha", 0.2))
    beta = float(ctx.attr("beta", 0.5))
    return lambda xs, rt: [(xs[0] * alpha + beta).clamp(0.0, 1.0)]


@op("HardSwish")
def _hard_swish(ctx: BuildContext) -> Kernel:
    return with_inplace(
        lambda xs, rt: [F.hardswish(xs[0])], lambda xs, rt: [F.hardswish(xs[0], inplace=True)]
    )


def _binary(
    fn: Callable[[Tensor, Tensor], Tensor], fn_: Callable[[Tensor, Tensor], Tensor] | None = None
) -> Builder:
    def build(ctx: BuildContext) -> Kernel:
        def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
            a, b = _align(xs[0], xs[1])
            return [fn(a, b)]

        if fn_ is None:
            return run

        def run_inplace(xs: list[Any], rt: Runtime) -> list[Tensor]:
            a, b = _align(xs[0], xs[1])
            if a.dtype == b.dtype and a.shape == torch.broadcast_shapes(a.shape, b.shape):
                return [fn_(a, b)]
            return [fn(a, b)]

        return with_inplace(run, run_inplace)

    return build


def _div(a: Tensor, b: Tensor) -> Tensor:
    if a.is_floating_point() or b.is_floating_point():
        return torch.div(a, b)
    return torch.div(a, b, rounding_mode="trunc")  # integer Div truncates, as in C


def _pow(a: Tensor, b: Tensor) -> Tensor:
    out = torch.pow(a, b)
    return out if out.dtype == a.dtype else out.to(a.dtype)  # Pow keeps the base's type


OPS["Add"] = _binary(torch.add, Tensor.add_)
OPS["Sub"] = _binary(torch.sub, Tensor.sub_)
OPS["Mul"] = _binary(torch.mul, Tensor.mul_)
OPS["Div"] = _binary(_div)
OPS["Pow"] = _binary(_pow)


@op("Clip")
def _clip(ctx: BuildContext) -> Kernel:
    if ctx.opset < 11:
        lo = ctx.attr("min")
        hi = ctx.attr("max")
        if lo is None and hi is None:
            return lambda xs, rt: [xs[0].clone()]  # a new tensor, as INPLACE_OPS promise
        return lambda xs, rt: [xs[0].clamp(lo, hi)]
    bounds: list[float | None] = []
    dynamic = False
    for i in (1, 2):
        c = ctx.const(i)
        if c is not None:
            bounds.append(_scalar(c))
        elif ctx.has_input(i):
            dynamic = True
            bounds.append(None)
        else:
            bounds.append(None)
    if not dynamic:
        lo, hi = bounds
        if lo is None and hi is None:
            return lambda xs, rt: [xs[0].clone()]  # a new tensor, as INPLACE_OPS promise
        return with_inplace(
            lambda xs, rt: [xs[0].clamp(lo, hi)], lambda xs, rt: [xs[0].clamp_(lo, hi)]
        )

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        x = xs[0]
        lo = xs[1] if len(xs) > 1 and xs[1] is not None else None
        hi = xs[2] if len(xs) > 2 and xs[2] is not None else None
        lo = lo.to(x.device, x.dtype).reshape(()) if lo is not None else None
        hi = hi.to(x.device, x.dtype).reshape(()) if hi is not None else None
        return [torch.clamp(x, lo, hi)]

    return run


@op("Cast")
def _cast(ctx: BuildContext) -> Kernel:
    to = int(ctx.attr("to"))
    if to not in ONNX_TO_TORCH:
        raise ctx.fail(f"cast to {TensorProto.DataType.Name(to)} is not supported")
    target = ONNX_TO_TORCH[to]

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        dtype = rt.float_type(target) if target.is_floating_point else target
        return [xs[0].to(dtype)]

    return run


# --- constants and shapes --------------------------------------------------------------------
@op("Constant")
def _constant(ctx: BuildContext) -> Kernel:
    a = ctx.node.attrs
    if "value" in a:
        value = tensor_from_proto(a["value"])
    elif "value_float" in a:
        value = torch.tensor(a["value_float"], dtype=torch.float32)
    elif "value_floats" in a:
        value = torch.tensor(list(a["value_floats"]), dtype=torch.float32)
    elif "value_int" in a:
        value = torch.tensor(a["value_int"], dtype=torch.int64)
    elif "value_ints" in a:
        value = torch.tensor(list(a["value_ints"]), dtype=torch.int64)
    else:
        raise ctx.fail(f"constant of kind {sorted(a)} is not supported")
    return lambda xs, rt: [value]


@op("ConstantOfShape")
def _constant_of_shape(ctx: BuildContext) -> Kernel:
    proto = ctx.node.attrs.get("value")
    value = tensor_from_proto(proto) if proto is not None else torch.zeros(1)
    fill = value.reshape(-1)[0].item()
    shape = _fixed_or_runtime(ctx, 0)

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        dims = shape(xs) or []
        if value.is_floating_point():
            return [torch.full(dims, fill, dtype=rt.float_type(value.dtype), device=rt.device)]
        return [torch.full(dims, fill, dtype=value.dtype)]  # integers stay host-side

    return run


@op("Shape")
def _shape(ctx: BuildContext) -> Kernel:
    start = ctx.attr("start", 0)
    end = ctx.attr("end")

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        dims = list(xs[0].shape)[start:end]
        return [torch.tensor(dims, dtype=torch.int64)]

    return run


@op("Reshape")
def _reshape(ctx: BuildContext) -> Kernel:
    allowzero = int(ctx.attr("allowzero", 0))
    shape = _fixed_or_runtime(ctx, 1)

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        x = xs[0]
        dims = list(shape(xs) or [])
        if not allowzero:
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
        return [x.reshape(dims)]

    return run


@op("Flatten")
def _flatten(ctx: BuildContext) -> Kernel:
    axis = int(ctx.attr("axis", 1))

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        x = xs[0]
        a = axis if axis >= 0 else axis + x.ndim
        return [x.reshape(_prod(x.shape[:a]), _prod(x.shape[a:]))]

    return run


@op("Transpose")
def _transpose(ctx: BuildContext) -> Kernel:
    perm = ctx.attr("perm")

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        x = xs[0]
        return [x.permute(*(perm if perm is not None else reversed(range(x.ndim))))]

    return run


def _axes_from(ctx: BuildContext, index: int) -> Callable[[list[Any]], list[int] | None]:
    """Axes of Squeeze/Unsqueeze/Reduce*: an attribute in older opsets, else input `index`."""
    if "axes" in ctx.node.attrs:
        fixed = [int(a) for a in ctx.node.attrs["axes"]]
        return lambda xs: fixed
    return _fixed_or_runtime(ctx, index)


@op("Squeeze")
def _squeeze(ctx: BuildContext) -> Kernel:
    axes = _axes_from(ctx, 1)

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        x = xs[0]
        chosen = axes(xs)
        if chosen is None:
            return [x.reshape([d for d in x.shape if d != 1])]
        dims = {a % x.ndim for a in chosen} if x.ndim else set()
        return [x.reshape([d for i, d in enumerate(x.shape) if i not in dims])]

    return run


@op("Unsqueeze")
def _unsqueeze(ctx: BuildContext) -> Kernel:
    axes = _axes_from(ctx, 1)

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        x = xs[0]
        chosen = axes(xs) or []
        rank = x.ndim + len(chosen)
        for a in sorted(a % rank for a in chosen):
            x = x.unsqueeze(a)
        return [x]

    return run


@op("Concat")
def _concat(ctx: BuildContext) -> Kernel:
    axis = int(ctx.attr("axis"))

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        parts = _align(*[x for x in xs if x is not None])
        return [torch.cat(parts, dim=axis)]

    return run


@op("Gather")
def _gather(ctx: BuildContext) -> Kernel:
    axis = int(ctx.attr("axis", 0))

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        data, indices = xs[0], xs[1]
        a = axis % data.ndim
        size = data.shape[a]
        if indices.device != data.device:
            indices = indices.to(data.device)
        indices = indices.long()
        indices = torch.where(indices < 0, indices + size, indices)
        picked = torch.index_select(data, a, indices.reshape(-1))
        shape = list(data.shape[:a]) + list(indices.shape) + list(data.shape[a + 1 :])
        return [picked.reshape(shape)]

    return run


@op("Slice")
def _slice(ctx: BuildContext) -> Kernel:
    if ctx.opset < 10:
        s_starts, s_ends = ctx.attr("starts"), ctx.attr("ends")
        s_axes = ctx.attr("axes")

        def params(xs: list[Any]) -> tuple[Any, Any, Any, Any]:
            return s_starts, s_ends, s_axes, None
    else:
        starts, ends = _fixed_or_runtime(ctx, 1), _fixed_or_runtime(ctx, 2)
        axes, steps = _fixed_or_runtime(ctx, 3), _fixed_or_runtime(ctx, 4)

        def params(xs: list[Any]) -> tuple[Any, Any, Any, Any]:
            return starts(xs), ends(xs), axes(xs), steps(xs)

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        x = xs[0]
        b, e, ax, st = params(xs)
        ax = ax if ax is not None else list(range(len(b)))
        st = st if st is not None else [1] * len(b)
        index: list[slice] = [slice(None)] * x.ndim
        flips: list[tuple[int, range]] = []
        for start, end, a, step in zip(b, e, ax, st, strict=True):
            a %= x.ndim
            if step == 0:
                raise ModelError(f"ONNX node {ctx.node.name!r} (Slice): step 0")
            # Python's slice.indices clamps exactly as the ONNX spec does, for either sign.
            lo, hi, step = slice(start, end, step).indices(x.shape[a])
            if step > 0:
                index[a] = slice(lo, max(lo, hi), step)
            else:
                flips.append((a, range(lo, hi, step)))
        out = x[tuple(index)]
        for a, picked in flips:
            idx = torch.tensor(list(picked), dtype=torch.int64, device=out.device)
            out = torch.index_select(out, a, idx)
        return [out]

    return run


@op("Expand")
def _expand(ctx: BuildContext) -> Kernel:
    shape = _fixed_or_runtime(ctx, 1)

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        x = xs[0]
        target = torch.broadcast_shapes(tuple(x.shape), tuple(shape(xs) or []))
        return [x.expand(target)]

    return run


# --- padding ---------------------------------------------------------------------------------
PAD_MODES = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def pad_tensor(x: Tensor, pads: Sequence[int], mode: str, value: float) -> Tensor:
    """ONNX Pad: pads = (x1_begin, ..., xn_begin, x1_end, ..., xn_end) over all n dims."""
    n = x.ndim
    begins, ends = list(pads[:n]), list(pads[n:])
    if not any(begins) and not any(ends):
        return x
    if mode == "constant":
        first = next(i for i in range(n) if begins[i] or ends[i])
        return F.pad(x, _torch_pads(begins[first:], ends[first:]), value=value)
    if mode not in PAD_MODES:
        raise ModelError(f"Pad mode {mode!r} is not supported")
    # Negative pads crop: pad by the positive part, then crop by the negative part.
    grow_b, grow_e = [max(p, 0) for p in begins], [max(p, 0) for p in ends]
    if any(grow_b) or any(grow_e):
        first = next(i for i in range(n) if grow_b[i] or grow_e[i])
        k = n - first  # padded trailing dims
        if k > 3:
            raise ModelError(f"Pad mode {mode!r} over {k} dims is not supported")
        lead = x.shape[:first]
        flat = x.reshape(1, _prod(lead), *x.shape[first:])
        flat = F.pad(flat, _torch_pads(grow_b[first:], grow_e[first:]), mode=PAD_MODES[mode])
        x = flat.reshape(*lead, *flat.shape[2:])
    if any(p < 0 for p in begins + ends):
        index = tuple(
            slice(-min(b, 0), size + min(e, 0))
            for size, b, e in zip(x.shape, begins, ends, strict=True)
        )
        x = x[index]
    return x


@op("Pad")
def _pad(ctx: BuildContext) -> Kernel:
    mode = ctx.attr("mode", "constant")
    if ctx.opset < 11:
        fixed_pads = [int(p) for p in ctx.attr("pads")]
        fixed_value = float(ctx.attr("value", 0.0))
        return lambda xs, rt: [pad_tensor(xs[0], fixed_pads, mode, fixed_value)]
    pads = _fixed_or_runtime(ctx, 1)
    axes = _fixed_or_runtime(ctx, 3)
    value_const = ctx.const(2)
    fixed = _scalar(value_const) if value_const is not None else None

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        x = xs[0]
        p = pads(xs) or []
        chosen = axes(xs)
        if chosen is not None:
            full = [0] * (2 * x.ndim)
            for k, a in enumerate(chosen):
                a %= x.ndim
                full[a], full[a + x.ndim] = p[k], p[k + len(chosen)]
            p = full
        if fixed is not None:
            value = fixed
        elif ctx.has_input(2) and xs[2] is not None:
            value = _scalar(xs[2])
        else:
            value = 0
        return [pad_tensor(x, p, mode, value)]

    return run


# --- convolution and pooling -----------------------------------------------------------------
def conv_pads(
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads: Sequence[int] | None,
    auto_pad: str,
) -> tuple[list[int], list[int]]:
    """(begins, ends) per spatial dim, as ONNX's auto_pad / pads say."""
    n = len(spatial)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, large = total // 2, total - total // 2
            begins.append(small if auto_pad == "SAME_UPPER" else large)
            ends.append(large if auto_pad == "SAME_UPPER" else small)
        return begins, ends
    if auto_pad == "VALID" or pads is None:
        return [0] * n, [0] * n
    return list(pads[:n]), list(pads[n:])


def _spatial_attrs(ctx: BuildContext, rank: int) -> tuple[list[int], list[int]]:
    strides = ctx.attr("strides") or [1] * rank
    dilations = ctx.attr("dilations") or [1] * rank
    return [int(s) for s in strides], [int(d) for d in dilations]


CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


@op("Conv")
def _conv(ctx: BuildContext) -> Kernel:
    group = int(ctx.attr("group", 1))
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    pads = ctx.attr("pads")
    kernel_shape = ctx.attr("kernel_shape")

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        x, w = xs[0], xs[1]
        b = xs[2] if len(xs) > 2 else None
        rank = x.ndim - 2
        if rank not in CONV:
            raise ctx.fail(f"{rank}-D convolution is not supported")
        if rt.upcast:
            x, w = x.float(), w.float()
            b = b.float() if b is not None else None
        kernel = kernel_shape or list(w.shape[2:])
        strides, dilations = _spatial_attrs(ctx, rank)
        begins, ends = conv_pads(x.shape[2:], kernel, strides, dilations, pads, auto_pad)
        if begins != ends:
            x = F.pad(x, _torch_pads(begins, ends))
            begins = [0] * rank
        if (
            group == 1
            and x.device.type == "cpu"
            and x.is_contiguous()  # NCHW; channels_last has a fast 1×1 convolution of its own
            and all(k == 1 for k in kernel)
            and all(s == 1 for s in strides)
            and not any(begins)
        ):
            y = _pointwise_conv(x, w, b)
        else:
            y = CONV[rank](x, w, b, strides, begins, dilations, group)
        return [y.to(rt.dtype) if rt.upcast else y]

    return run


def _pointwise_conv(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """A 1×1 convolution of a contiguous (NCHW) x as a batched matrix product: on the CPU,
    GEMM is several times faster than the NCHW convolution kernels for it."""
    n, c_in, *spatial = x.shape
    weight = w.reshape(w.shape[0], c_in)
    y = torch.matmul(weight, x.reshape(n, c_in, -1))
    if b is not None:
        y += b[:, None]
    return y.reshape(n, w.shape[0], *spatial)


def _pool_padding(
    ctx: BuildContext, x: Tensor, kernel: list[int], fill: float
) -> tuple[Tensor, list[int], list[int], list[int]]:
    """Returns (x, padding for torch, strides, dilations); pads x itself where torch's
    symmetric `padding` argument cannot express the ONNX pads."""
    rank = x.ndim - 2
    strides, dilations = _spatial_attrs(ctx, rank)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    begins, ends = conv_pads(x.shape[2:], kernel, strides, dilations, ctx.attr("pads"), auto_pad)
    fits = all(p * 2 <= k for p, k in zip(begins, kernel, strict=True))
    if begins == ends and fits:
        return x, begins, strides, dilations
    x = F.pad(x, _torch_pads(begins, ends), value=fill)
    return x, [0] * rank, strides, dilations


@op("MaxPool")
def _max_pool(ctx: BuildContext) -> Kernel:
    if len(ctx.node.outputs) > 1 and ctx.node.outputs[1]:
        raise ctx.fail("the Indices output is not supported")
    kernel = [int(k) for k in ctx.attr("kernel_shape")]
    ceil_mode = bool(ctx.attr("ceil_mode", 0))

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        x, padding, strides, dilations = _pool_padding(ctx, xs[0], kernel, -math.inf)
        pool = MAX_POOL[len(kernel)]
        return [pool(x, kernel, strides, padding, dilations, ceil_mode=ceil_mode)]

    return run


@op("AveragePool")
def _average_pool(ctx: BuildContext) -> Kernel:
    kernel = [int(k) for k in ctx.attr("kernel_shape")]
    ceil_mode = bool(ctx.attr("ceil_mode", 0))
    include_pad = bool(ctx.attr("count_include_pad", 0))
    if any(int(d) != 1 for d in ctx.attr("dilations") or []):
        raise ctx.fail("dilated average pooling is not supported")

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        x = xs[0]
        padded, padding, strides, _ = _pool_padding(ctx, x, kernel, 0.0)
        pool = AVG_POOL[len(kernel)]
        if padded is x:  # torch pads symmetrically itself
            return [pool(x, kernel, strides, padding, ceil_mode, include_pad)]
        out = pool(padded, kernel, strides, 0, ceil_mode, True)
        if include_pad:
            return [out]
        # Divide by the number of real (not padded) elements in each window.
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        mask, _, _, _ = _pool_padding(ctx, ones, kernel, 0.0)
        share = pool(mask, kernel, strides, 0, ceil_mode, True)
        return [out / share]

    return run


@op("GlobalAveragePool")
def _global_average_pool(ctx: BuildContext) -> Kernel:
    return lambda xs, rt: [xs[0].mean(dim=tuple(range(2, xs[0].ndim)), keepdim=True)]


@op("GlobalMaxPool")
def _global_max_pool(ctx: BuildContext) -> Kernel:
    return lambda xs, rt: [xs[0].amax(dim=tuple(range(2, xs[0].ndim)), keepdim=True)]


@op("BatchNormalization")
def _batch_norm(ctx: BuildContext) -> Kernel:
    eps = float(ctx.attr("epsilon", 1e-5))
    if int(ctx.attr("training_mode", 0)):
        raise ctx.fail("training_mode=1 is not supported")
    if any(ctx.node.outputs[1:]):
        raise ctx.fail("running mean/var outputs (training) are not supported")

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        x, scale, bias, mean, var = xs[:5]
        return [F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)]

    return run


# --- dense layers, reductions ----------------------------------------------------------------
@op("Gemm")
def _gemm(ctx: BuildContext) -> Kernel:
    alpha = float(ctx.attr("alpha", 1.0))
    beta = float(ctx.attr("beta", 1.0))
    trans_a = bool(ctx.attr("transA", 0))
    trans_b = bool(ctx.attr("transB", 0))

    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
        if rt.upcast and xs[0].is_floating_point():
            y = run([x.float() if x is not None else None for x in xs], FOLDING)[0]
            return [y.to(rt.dtype)]
        a, b = _align(xs[0], xs[1])
        c = xs[2] if len(xs) > 2 else None
        if trans_a:
            a = a.t()
        n = b.shape[0] if trans_b else b.shape[1]
        if c is not None and c.device != a.device:
            c = c.to(a.device)
        if trans_b and alpha == 1.0 and (c is None or (beta == 1.0 and tuple(c.shape) == (n,))):
            return [F.linear(a, b, c)]
        y = a @ (b.t() if trans_b else b)
        if alpha != 1.0:
            y = y * alpha
        if c is not None:
            y = y + (c * beta if beta != 1.0 else c)
        return [y]

    return run


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    if a.device.type == "cpu" and a.dtype in (torch.float16, torch.bfloat16):
        return torch.matmul(a.float(), b.float()).to(a.dtype)  # see Runtime.upcast
    return torch.matmul(a, b)


OPS["MatMul"] = _binary(_matmul)


def _reduce(fn: Callable[..., Tensor], axes_input_from: int) -> Builder:
    def build(ctx: BuildContext) -> Kernel:
        keepdims = bool(ctx.attr("keepdims", 1))
        noop = bool(ctx.attr("noop_with_empty_axes", 0))
        axes = _axes_from(ctx, 1) if ctx.opset >= axes_input_from else _attr_axes(ctx)

        def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
            x = xs[0]
            chosen = axes(xs)
            if not chosen:
                if noop:
                    return [x]
                chosen = list(range(x.ndim))
            return [fn(x, dim=tuple(a % x.ndim for a in chosen), keepdim=keepdims)]

        return run

    return build


def _attr_axes(ctx: BuildContext) -> Callable[[list[Any]], list[int] | None]:
    fixed = ctx.attr("axes")
    fixed = [int(a) for a in fixed] if fixed is not None else None
    return lambda xs: fixed


OPS["ReduceMax"] = _reduce(torch.amax, 18)
OPS["ReduceMin"] = _reduce(torch.amin, 18)
OPS["ReduceMean"] = _reduce(torch.mean, 18)
OPS["ReduceSum"] = _reduce(torch.sum, 13)


def _softmax(fn: Callable[..., Tensor]) -> Builder:
    def build(ctx: BuildContext) -> Kernel:
        if ctx.opset >= 13:
            axis = int(ctx.attr("axis", -1))
            return lambda xs, rt: [fn(xs[0], dim=axis)]
        axis = int(ctx.attr("axis", 1))

        def run(xs: list[Any], rt: Runtime) -> list[Tensor]:
            x = xs[0]
            a = axis % x.ndim
            flat = x.reshape(_prod(x.shape[:a]), _prod(x.shape[a:]))
            return [fn(flat, dim=1).reshape(x.shape)]

        return run

    return build


OPS["Softmax"] = _softmax(torch.softmax)
OPS["LogSoftmax"] = _softmax(torch.log_softmax)


@op("Dropout")
def _dropout(ctx: BuildContext) -> Kernel:
    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:  # inference: the identity
        x = xs[0]
        return [x, torch.ones(x.shape, dtype=torch.bool, device=x.device)]

    return run


# --- Conv + BatchNormalization folding -------------------------------------------------------
def fold_conv_batchnorm(
    nodes: list[Node], initializers: dict[str, Tensor], keep: set[str]
) -> tuple[list[Node], dict[str, str]]:
    """Fold BatchNormalization into the Conv in front of it, where the Conv's output feeds
    nothing else and every parameter is an initializer. Returns the new node list and, for
    each tensor folded away, the tensor that now follows it."""
    consumers: dict[str, int] = {}
    for node in nodes:
        for name in node.inputs:
            consumers[name] = consumers.get(name, 0) + 1
    producer = {out: node for node in nodes for out in node.outputs}
    dropped: set[int] = set()
    folded: dict[str, str] = {}
    for bn in nodes:
        if bn.op != "BatchNormalization" or any(bn.outputs[1:]) or len(bn.inputs) < 5:
            continue
        conv = producer.get(bn.inputs[0])
        if conv is None or conv.op != "Conv" or conv.outputs[0] in keep:
            continue
        if consumers.get(conv.outputs[0], 0) != 1 or int(bn.attrs.get("training_mode", 0)):
            continue
        names = [*conv.inputs[1:], *bn.inputs[1:5]]
        if not all(n in initializers for n in names if n):
            continue
        w = initializers[conv.inputs[1]].double()
        b = (
            initializers[conv.inputs[2]].double()
            if len(conv.inputs) > 2 and conv.inputs[2]
            else torch.zeros(w.shape[0], dtype=torch.float64)
        )
        scale, shift, mean, var = (initializers[n].double() for n in bn.inputs[1:5])
        factor = scale / torch.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        dtype = initializers[conv.inputs[1]].dtype
        w_name, b_name = f"{conv.outputs[0]}::folded_w", f"{conv.outputs[0]}::folded_b"
        initializers[w_name] = (w * factor.reshape(-1, *[1] * (w.ndim - 1))).to(dtype)
        initializers[b_name] = ((b - mean) * factor + shift).to(dtype)
        folded[conv.outputs[0]] = bn.outputs[0]
        conv.inputs = [conv.inputs[0], w_name, b_name]
        conv.outputs = [bn.outputs[0]]
        dropped.add(id(bn))
    return [n for n in nodes if id(n) not in dropped], folded


def toposort(nodes: list[Node], available: set[str]) -> list[Node]:
    """Kahn's algorithm, stable: the file's order wherever it is already topological."""
    known = set(available) | {""}
    pending = list(nodes)
    ordered: list[Node] = []
    while pending:
        rest = []
        for node in pending:
            if all(name in known for name in node.inputs):
                ordered.append(node)
                known.update(node.outputs)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted({i for n in rest for i in n.inputs if i not in known})
            raise ModelError(f"the ONNX graph cannot be ordered: no producer of {missing[:5]}")
        pending = rest
    return ordered


# --- the module ------------------------------------------------------------------------------
@dataclass
class Step:
    node: Node
    kernel: Kernel
    drop: list[str] = field(default_factory=list)  # values last used here
    inplace: Kernel | None = None  # may overwrite input 0: nothing else sees it


def absorb_pad(
    conv: Node, steps: list[Step], static: dict[str, Tensor], consumers: dict[str, int]
) -> tuple[Node, str] | None:
    """Conv fed by a zero constant Pad of its spatial dims only (EfficientNet's "same"
    padding, exported as Pad → Conv): the Conv with the pads added to its own, reading the
    Pad's input, and the name of the tensor no longer made. None where that does not apply."""
    if conv.attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    pad = next((s.node for s in steps if conv.inputs[0] in s.node.outputs), None)
    if pad is None or pad.op != "Pad" or consumers.get(pad.outputs[0], 0) != 1:
        return None
    if pad.attrs.get("mode", b"constant") not in (b"constant", "constant"):
        return None
    inputs = pad.inputs + [""] * (4 - len(pad.inputs))
    if "pads" in pad.attrs:  # opset < 11
        pads, value = list(pad.attrs["pads"]), float(pad.attrs.get("value", 0.0))
    else:
        if inputs[1] not in static or inputs[3] or (inputs[2] and inputs[2] not in static):
            return None
        pads = _ints(static[inputs[1]]) or []
        value = float(_scalar(static[inputs[2]])) if inputs[2] else 0.0
    rank = len(pads) // 2 - 2
    if value != 0.0 or rank < 1 or any(p < 0 for p in pads):
        return None
    if pads[0] or pads[1] or pads[rank + 2] or pads[rank + 3]:
        return None  # pads the batch or channel dim
    own = [int(p) for p in conv.attrs.get("pads") or [0] * (2 * rank)]
    begins = [own[i] + pads[2 + i] for i in range(rank)]
    ends = [own[rank + i] + pads[rank + 4 + i] for i in range(rank)]
    attrs = {**conv.attrs, "pads": begins + ends}
    fused = Node(conv.op, conv.name, [pad.inputs[0], *conv.inputs[1:]], conv.outputs, attrs)
    steps[:] = [s for s in steps if s.node is not pad]
    return fused, pad.outputs[0]


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
