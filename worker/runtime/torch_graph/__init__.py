"""A small ONNX interpreter in PyTorch: an ONNX graph as an `nn.Module`.

`GraphModule(model)` walks the graph's nodes in topological order and runs each with torch
ops. It is built for image classifiers (convolutions, pooling, elementwise ops, the shape
arithmetic exporters emit around them), not for every ONNX operator: an operator it does not
know is refused up front with a `ModelError` that names it.

The package:
  * `ir`: the parsed graph (`Node`, `Step`), what a kernel is built from (`BuildContext`)
    and runs with (`Runtime`), the operator registry (`op`, `OPS`, `supported_ops`) and the
    helpers the kernels share;
  * the kernels, one module per family, each registering its operators when imported:
    `ops_elementwise` (activations, unary and binary math, Clip, Cast), `ops_shape`
    (constants, Shape, Reshape, Slice, Gather, Concat, ...), `ops_pad` (Pad), `ops_conv`
    (Conv, pooling, BatchNormalization) and `ops_reduce` (Gemm, MatMul, Reduce*, Softmax);
    they are imported here, so the registry is full wherever `GraphModule` is used;
  * `passes`: the graph passes run when the module is built (Conv+BN folding, topological
    order, a zero Pad absorbed into the Conv after it);
  * `module`: `GraphModule`: constant folding, buffers and host-side values, in-place
    activations, and the run itself.
"""

from worker.runtime.torch_graph import (  # noqa: F401  (each registers its operators in OPS)
    ops_conv,
    ops_elementwise,
    ops_pad,
    ops_reduce,
    ops_shape,
)
from worker.runtime.torch_graph.ir import supported_ops
from worker.runtime.torch_graph.module import GraphModule

__all__ = ["GraphModule", "supported_ops"]
