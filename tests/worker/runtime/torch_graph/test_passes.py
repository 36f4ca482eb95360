"""The graph passes (worker/runtime/torch_graph/passes.py) as GraphModule runs them: nodes
out of order sorted, BatchNormalization folded into the Conv in front of it, a zero Pad
absorbed into the Conv after it."""

from __future__ import annotations

import numpy as np
import torch
from onnx import TensorProto, helper
from torch_graph_helpers import _conv_bn_relu_gap_gemm, _graph, f32, i64, run_ort, run_torch

from worker.runtime.torch_graph import GraphModule


def test_nodes_out_of_order_are_sorted() -> None:
    nodes = [
        helper.make_node("Relu", ["h"], ["y"]),
        helper.make_node("Neg", ["x"], ["h"]),
    ]
    graph = helper.make_graph(
        nodes,
        "unordered",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = f32(4)
    np.testing.assert_allclose(run_torch(model, {"x": x})[0], np.maximum(-x, 0))


def test_batchnorm_folds_into_the_conv() -> None:
    model = _conv_bn_relu_gap_gemm()
    folded = GraphModule(model)
    plain = GraphModule(model, fuse=False)
    assert folded.folded == {"conv": "bn"}
    assert "BatchNormalization" not in [s.node.op for s in folded.steps]
    assert "BatchNormalization" in [s.node.op for s in plain.steps]
    x = f32(2, 3, 12, 12)
    expected = run_ort(model, {"x": x})[0]
    with torch.inference_mode():
        for module in (folded, plain):
            np.testing.assert_allclose(
                module(torch.from_numpy(x)).numpy(), expected, rtol=1e-5, atol=1e-5
            )


def test_a_zero_pad_in_front_of_a_conv_becomes_its_padding() -> None:
    inits = {"pads": i64(0, 0, 0, 1, 0, 0, 2, 1), "w": f32(4, 4, 3, 3)}
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["padded"]),
        helper.make_node("Conv", ["padded", "w"], ["y"], pads=[1, 0, 0, 1]),
    ]
    model = _graph(nodes, inits, [2, 4, 9, 11])
    module = GraphModule(model)
    assert [s.node.op for s in module.steps] == ["Conv"]
    assert module.folded == {"padded": "y"}
    x = f32(2, 4, 9, 11)
    np.testing.assert_allclose(
        run_torch(model, {"x": x})[0], run_ort(model, {"x": x})[0], atol=1e-5
    )
    reflect = _graph(
        [helper.make_node("Pad", ["x", "pads"], ["padded"], mode="reflect"), nodes[1]],
        inits,
        [2, 4, 9, 11],
    )
    assert [s.node.op for s in GraphModule(reflect).steps] == ["Pad", "Conv"]
