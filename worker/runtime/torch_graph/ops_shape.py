"""Constant and shape kernels: Constant, ConstantOfShape, Shape, Reshape, Flatten,
Transpose, Squeeze, Unsqueeze, Concat, Gather, Slice (ONNX's clamping, negative steps) and
Expand.

Integer values (shapes, indices) that do not depend on a graph input are folded when the
module is built; the shape arithmetic that does depend on an input (Shape → Gather →
Unsqueeze → Concat → Reshape) runs on small CPU int64 tensors, so no device round trip
happens in the middle of the network.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from glimpse.errors import ModelError
from worker.runtime.torch_graph.ir import (
    BuildContext,
    Kernel,
    Runtime,
    _align,
    _axes_from,
    _fixed_or_runtime,
    _prod,
    op,
    tensor_from_proto,
)


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
