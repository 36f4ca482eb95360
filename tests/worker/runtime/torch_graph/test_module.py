"""GraphModule (worker/runtime/torch_graph/module.py) on small graphs against ONNX Runtime:
constant folding and host-side shape arithmetic, reduced precision, unsupported operators and
domains refused, the fused perturbation prelude, gradients through an intercepted tensor, and
in-place activations that never touch a tensor something else reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch_graph_helpers import (
    RNG,
    Case,
    _conv_bn_relu_gap_gemm,
    _graph,
    build,
    f32,
    i64,
    run_ort,
    run_torch,
)

from glimpse.errors import ModelError
from worker.runtime.fused import fuse_perturbation
from worker.runtime.torch_graph import GraphModule


def test_constants_and_shape_arithmetic_fold_at_build() -> None:
    """EfficientNet's style: Constant → ConstantOfShape → Concat → Reshape → Slice → Cast
    pads are folded when the module is built; Shape(x) → Gather → Unsqueeze → Concat →
    Reshape runs per call on host-side ints."""
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(i64(2)), name="c"),
        helper.make_node(
            "ConstantOfShape", ["c"], ["zeros"], value=numpy_helper.from_array(i64(0))
        ),
        helper.make_node("Concat", ["ones", "zeros"], ["pads"], axis=0),
        helper.make_node("Cast", ["pads"], ["pads64"], to=TensorProto.INT64),
        helper.make_node("Pad", ["x", "pads64"], ["padded"]),
        helper.make_node("Shape", ["padded"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["padded", "flat_shape"], ["y"]),
        helper.make_node("Constant", [], ["k"], value_float=2.0),
        helper.make_node("Mul", ["y", "k"], ["z"]),
    ]
    inits = [
        numpy_helper.from_array(i64(0, 0, 1, 1, 0, 0), "ones"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(i64(0), "zero1"),
        numpy_helper.from_array(i64(-1), "minus1"),
    ]
    graph = helper.make_graph(
        nodes,
        "folding",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    module = GraphModule(model)
    assert [s.node.op for s in module.steps] == [
        "Pad",
        "Shape",
        "Gather",
        "Unsqueeze",
        "Concat",
        "Reshape",
        "Mul",
    ]
    x = f32(3, 2, 3, 4)
    np.testing.assert_allclose(run_torch(model, {"x": x})[0], run_ort(model, {"x": x})[0])


def test_reduced_precision_keeps_shape_ints_and_casts_floats() -> None:
    """A Cast to FLOAT inside the graph yields the module's dtype in bf16; shape arithmetic
    stays int64 on the host."""
    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Shape", ["xf"], ["s"]),
        helper.make_node("Reshape", ["xf", "s"], ["r"]),
        helper.make_node("Mul", ["r", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bf16",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[numpy_helper.from_array(np.full(3, 0.5, np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    module = GraphModule(model).to(torch.bfloat16)
    y = module(torch.tensor([[1, 2, 3], [4, 5, 6]]))
    assert y.dtype == torch.bfloat16
    np.testing.assert_allclose(y.float().numpy(), [[0.5, 1, 1.5], [2, 2.5, 3]])


def test_an_unsupported_operator_is_named() -> None:
    model, _ = build(Case("NonMaxSuppression", [f32(1, 4, 4), f32(1, 1, 4)]))
    with pytest.raises(ModelError, match="NonMaxSuppression"):
        GraphModule(model)


def test_other_domains_are_refused() -> None:
    node = helper.make_node("Foo", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )
    with pytest.raises(ModelError, match="com.example::Foo"):
        GraphModule(model)


def test_the_fused_perturbation_graph_runs() -> None:
    """The fused prelude (Gather, Sub, Mul, Add) in front of a model, as ONNX Runtime runs it."""
    fused = fuse_perturbation(_conv_bn_relu_gap_gemm(), "x")
    feeds = {
        "glimpse_z": (RNG.random((5, 4)) < 0.5).astype(np.float32),
        "glimpse_segments": RNG.integers(0, 4, (1, 12, 12)).astype(np.int64),
        "glimpse_image": f32(3, 12, 12),
        "glimpse_background": f32(3, 12, 12),
    }
    np.testing.assert_allclose(
        run_torch(fused, feeds)[0], run_ort(fused, feeds)[0], rtol=1e-5, atol=1e-5
    )


def test_gradients_flow_through_an_intercepted_tensor() -> None:
    module = GraphModule(_conv_bn_relu_gap_gemm(), fuse=False)
    x = torch.from_numpy(f32(2, 3, 12, 12))
    (y,), act = module.execute({"x": x}, intercept="act")
    assert act is not None and act.requires_grad and act.shape == (2, 8, 12, 12)
    (g,) = torch.autograd.grad(y[:, 1].sum(), act)
    fc = numpy_helper.to_array(_conv_bn_relu_gap_gemm().graph.initializer[-1])  # (5, 8)
    np.testing.assert_allclose(
        g.numpy(), np.broadcast_to(fc[1][None, :, None, None] / 144, g.shape), rtol=1e-6
    )


def test_in_place_activations_leave_shared_tensors_alone() -> None:
    """Relu may overwrite the Conv output only where nothing else reads it."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),  # c is read again below: not in place
        helper.make_node("Add", ["c", "r"], ["s"]),  # c has two readers: not in place
        helper.make_node("Clip", ["s", "lo", "hi"], ["k"]),  # in place
        helper.make_node("Sigmoid", ["x"], ["g"]),  # x is an input: never in place
        helper.make_node("ReduceMean", ["g"], ["m"], axes=[1]),
        helper.make_node("Mul", ["k", "m"], ["y"]),
    ]
    inits = {
        "w": f32(3, 3, 3, 3),
        "lo": np.array(-0.5, np.float32),
        "hi": np.array(1.0, np.float32),
    }
    model = _graph(nodes, inits, [2, 3, 8, 8])
    module = GraphModule(model)
    inplace = {s.node.op for s in module.steps if s.inplace is not None}
    assert inplace == {"Clip", "Mul"}
    x = f32(2, 3, 8, 8)
    xt = torch.from_numpy(x.copy())
    with torch.inference_mode():
        got = module(xt).numpy()
    np.testing.assert_array_equal(xt.numpy(), x)  # the input is untouched
    np.testing.assert_allclose(got, run_ort(model, {"x": x})[0], rtol=1e-5, atol=1e-6)
    # What run_with_outputs / intercept fetch is never overwritten.
    with torch.inference_mode():
        (c, y), _ = module.execute({"x": xt}, ["c", "y"])
    np.testing.assert_allclose(y.numpy(), got, rtol=1e-6)
    conv_only = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    ort_c = run_ort(_graph(conv_only, {"w": inits["w"]}, [2, 3, 8, 8]), {"x": x})[0]
    np.testing.assert_allclose(c.numpy(), ort_c, rtol=1e-5, atol=1e-6)
