"""Elementwise kernels: activations (Relu, Sigmoid, Tanh, LeakyRelu, HardSigmoid,
HardSwish), unary math (Exp, Log, Neg, Abs, Sqrt, Erf, Floor, Ceil, Reciprocal), the
broadcasting binary ops (Add, Sub, Mul, Div, Pow), Clip, Cast, and Identity and Dropout (the
identity at inference).

Relu, Sigmoid, LeakyRelu, HardSwish, Clip and Add/Sub/Mul carry in-place variants
(`with_inplace`): under no_grad/inference_mode `GraphModule` lets them overwrite their input
where nothing else reads it. A Cast to a floating type yields the module's dtype when that is
fp16/bf16, so a graph exported in fp32 runs consistently in reduced precision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from onnx import TensorProto
from torch import Tensor

from worker.runtime.torch_graph.ir import (
    ONNX_TO_TORCH,
    OPS,
    BuildContext,
    Builder,
    Kernel,
    Runtime,
    _align,
    _scalar,
    op,
    with_inplace,
)


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


@op("Dropout")
def _dropout(ctx: BuildContext) -> Kernel:
    def run(xs: list[Any], rt: Runtime) -> list[Tensor]:  # inference: the identity
        x = xs[0]
        return [x, torch.ones(x.shape, dtype=torch.bool, device=x.device)]

    return run
