"""Matrix products and reductions: Gemm, MatMul, ReduceMax/ReduceMin/ReduceMean/ReduceSum
(axes as an attribute or, in later opsets, an input), Softmax and LogSoftmax (before opset
13: over the trailing dims flattened). In reduced precision on the CPU, Gemm and MatMul
compute in fp32 and round back (`Runtime.upcast`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from worker.runtime.torch_graph.ir import (
    FOLDING,
    OPS,
    BuildContext,
    Builder,
    Kernel,
    Runtime,
    _align,
    _axes_from,
    _prod,
    op,
)
from worker.runtime.torch_graph.ops_elementwise import _binary


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
