"""Convolution, pooling and normalization kernels: Conv (1-D to 3-D, grouped, strided,
dilated, explicit pads or auto_pad), MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool
and BatchNormalization (inference only).

Pads that torch's symmetric `padding` argument cannot express are applied with F.pad first
(`conv_pads` reads ONNX's pads and auto_pad). On the CPU a contiguous (NCHW) 1×1 convolution
runs as a matrix product, and in reduced precision convolutions take fp32 kernels on the
fp16/bf16 values (`Runtime.upcast`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from worker.runtime.torch_graph.ir import BuildContext, Kernel, Runtime, _torch_pads, op


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
