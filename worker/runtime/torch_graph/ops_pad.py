"""Pad: the constant, reflect, edge and wrap modes, negative pads (which crop), the pads
and value as attributes (opset < 11) or inputs, and the `axes` input (opset 18).
`pad_tensor` pads a tensor as ONNX says; F.pad does the work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from glimpse.errors import ModelError
from worker.runtime.torch_graph.ir import (
    BuildContext,
    Kernel,
    Runtime,
    _fixed_or_runtime,
    _prod,
    _scalar,
    _torch_pads,
    op,
)

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
