"""The ONNX → PyTorch interpreter (worker/runtime/torch_graph.py), operator by operator
against ONNX Runtime on single-node graphs, including the attributes where the two
conventions differ (pads layout, auto_pad, Slice clamping and negative steps, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from glimpse.errors import ModelError  # noqa: E402
from worker.runtime.fused import fuse_perturbation  # noqa: E402
from worker.runtime.torch_graph import GraphModule, supported_ops  # noqa: E402

INT_MAX = 2**63 - 1
INT_MIN = -(2**63)
RNG = np.random.default_rng(0)


def f32(*shape: int, positive: bool = False) -> np.ndarray:
    x = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(x) + 0.1 if positive else x


def i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


@dataclass
class Case:
    op: str
    inputs: list[np.ndarray | None]  # None: an omitted optional input
    attrs: dict[str, Any] = field(default_factory=dict)
    const: tuple[int, ...] = ()  # inputs given as initializers rather than graph inputs
    opset: int = 17
    out: int = TensorProto.FLOAT
    n_out: int = 1


def build(case: Case) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    names, graph_inputs, initializers, feeds = [], [], [], {}
    for k, value in enumerate(case.inputs):
        if value is None:
            names.append("")
            continue
        name = f"in{k}"
        names.append(name)
        if k in case.const:
            initializers.append(numpy_helper.from_array(value, name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(value.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem, value.shape))
            feeds[name] = value
    outs = [f"out{k}" for k in range(case.n_out)]
    node = helper.make_node(case.op, names, outs, **case.attrs)
    elem_out = [case.out] + [TensorProto.BOOL] * (case.n_out - 1)
    graph = helper.make_graph(
        [node],
        case.op.lower(),
        graph_inputs,
        [helper.make_tensor_value_info(o, e, None) for o, e in zip(outs, elem_out, strict=True)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 8
    return model, feeds


def run_torch(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    module = GraphModule(model)
    with torch.inference_mode():
        outs, _ = module.execute({k: torch.from_numpy(v.copy()) for k, v in feeds.items()})
    return [o.numpy() for o in outs]


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


X = f32(2, 4, 9, 11)
W3 = f32(6, 4, 3, 3)
B6 = f32(6)

CASES: dict[str, Case] = {
    # convolutions
    "conv-pads": Case("Conv", [X, W3, B6], {"pads": [1, 1, 1, 1]}, const=(1, 2)),
    "conv-asymmetric-strided-dilated-grouped": Case(
        "Conv",
        [X, f32(6, 2, 3, 2)],
        {"pads": [0, 1, 2, 0], "strides": [2, 1], "dilations": [2, 1], "group": 2},
        const=(1,),
    ),
    "conv-same-upper-stride2": Case(
        "Conv", [X, W3], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, const=(1,)
    ),
    "conv-same-lower-k4": Case(
        "Conv", [X, f32(6, 4, 4, 4)], {"auto_pad": "SAME_LOWER"}, const=(1,)
    ),
    "conv-valid-kernel-shape": Case(
        "Conv", [X, W3, B6], {"auto_pad": "VALID", "kernel_shape": [3, 3]}, const=(1, 2)
    ),
    "conv-depthwise": Case(
        "Conv", [X, f32(4, 1, 5, 5)], {"group": 4, "pads": [2, 2, 2, 2]}, const=(1,)
    ),
    "conv-weights-as-input": Case("Conv", [X, W3, B6], {"pads": [1, 0, 1, 0]}),
    "conv-1d": Case("Conv", [f32(2, 3, 10), f32(5, 3, 3)], {"strides": [2]}, const=(1,)),
    "batchnorm": Case(
        "BatchNormalization",
        [X, f32(4), f32(4), f32(4), f32(4, positive=True)],
        {"epsilon": 1e-3},
        const=(1, 2, 3, 4),
    ),
    # pooling
    "maxpool-3x3-s2-p1": Case(
        "MaxPool", [X], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    ),
    "maxpool-ceil": Case(
        "MaxPool", [X], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}
    ),
    "maxpool-asymmetric-pads": Case(
        "MaxPool", [X], {"kernel_shape": [2, 3], "pads": [0, 1, 1, 2], "strides": [1, 2]}
    ),
    "maxpool-dilated": Case("MaxPool", [X], {"kernel_shape": [2, 2], "dilations": [2, 2]}),
    "maxpool-same-upper": Case(
        "MaxPool", [X], {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}
    ),
    "avgpool-exclude-pad": Case("AveragePool", [X], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    "avgpool-include-pad": Case(
        "AveragePool",
        [X],
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    ),
    "avgpool-asymmetric-exclude": Case(
        "AveragePool", [X], {"kernel_shape": [3, 2], "pads": [0, 1, 2, 0], "strides": [2, 1]}
    ),
    "avgpool-asymmetric-include": Case(
        "AveragePool",
        [X],
        {"kernel_shape": [3, 2], "pads": [0, 1, 2, 0], "count_include_pad": 1},
    ),
    "avgpool-ceil": Case(
        "AveragePool", [X], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}
    ),
    "global-average-pool": Case("GlobalAveragePool", [X]),
    "global-max-pool": Case("GlobalMaxPool", [X]),
    # elementwise
    "relu": Case("Relu", [X]),
    "sigmoid": Case("Sigmoid", [X]),
    "tanh": Case("Tanh", [X]),
    "exp": Case("Exp", [X]),
    "log": Case("Log", [f32(3, 5, positive=True)]),
    "neg": Case("Neg", [X]),
    "abs": Case("Abs", [X]),
    "sqrt": Case("Sqrt", [f32(3, 5, positive=True)]),
    "erf": Case("Erf", [X]),
    "floor": Case("Floor", [X * 3]),
    "ceil": Case("Ceil", [X * 3]),
    "reciprocal": Case("Reciprocal", [f32(3, 5, positive=True)]),
    "identity": Case("Identity", [X]),
    "leaky-relu": Case("LeakyRelu", [X], {"alpha": 0.2}),
    "hard-sigmoid": Case("HardSigmoid", [X * 4], {"alpha": 0.3, "beta": 0.4}),
    "hard-swish": Case("HardSwish", [X * 4]),
    "dropout-inference": Case("Dropout", [X]),
    "add-broadcast": Case("Add", [X, f32(4, 1, 1)], const=(1,)),
    "sub-broadcast": Case("Sub", [f32(9, 1), f32(2, 4, 1, 11)]),
    "mul-scalar": Case("Mul", [X, np.array(1.5, np.float32)], const=(1,)),
    "div": Case("Div", [X, f32(11, positive=True)]),
    "div-int-truncates": Case("Div", [i64(7, -7, 6, -9), i64(2, 2, -4, 4)], out=TensorProto.INT64),
    "pow": Case("Pow", [f32(3, 5, positive=True), np.array(2.5, np.float32)], const=(1,)),
    "pow-int-exponent": Case("Pow", [X, np.array(3, np.int64)], const=(1,)),
    "clip-inputs": Case(
        "Clip", [X, np.array(-0.5, np.float32), np.array(0.7, np.float32)], const=(1, 2)
    ),
    "clip-dynamic-bounds": Case("Clip", [X, np.array(-0.5, np.float32), np.array(0.7, np.float32)]),
    "clip-max-only": Case("Clip", [X, None, np.array(0.2, np.float32)], const=(2,)),
    "clip-no-bounds": Case("Clip", [X]),
    "clip-opset6-attrs": Case("Clip", [X], {"min": -0.3, "max": 0.4}, opset=6),
    # dense
    "matmul-batched": Case("MatMul", [f32(2, 3, 5), f32(5, 4)], const=(1,)),
    "gemm-transb-bias": Case("Gemm", [f32(3, 5), f32(4, 5), f32(4)], {"transB": 1}, const=(1, 2)),
    "gemm-transa-alpha-beta": Case(
        "Gemm",
        [f32(5, 3), f32(5, 4), f32(1, 4)],
        {"transA": 1, "alpha": 0.5, "beta": 2.0},
        const=(1, 2),
    ),
    "gemm-both-transposed-matrix-c": Case(
        "Gemm", [f32(5, 3), f32(4, 5), f32(3, 4)], {"transA": 1, "transB": 1, "beta": 0.5}
    ),
    "gemm-no-c": Case("Gemm", [f32(3, 5), f32(5, 4)], {"alpha": 2.0}),
    "softmax": Case("Softmax", [f32(2, 3, 5)], {"axis": 1}),
    "softmax-default-axis": Case("Softmax", [f32(2, 3, 5)]),
    "softmax-opset11-flattens": Case("Softmax", [f32(2, 3, 5)], {"axis": 1}, opset=11),
    "log-softmax": Case("LogSoftmax", [f32(2, 7)]),
    "reducemax-axes-attr": Case("ReduceMax", [X], {"axes": [1], "keepdims": 1}),
    "reducemax-no-keepdims": Case("ReduceMax", [X], {"axes": [-1, 2], "keepdims": 0}),
    "reducemin-all": Case("ReduceMin", [X]),
    "reducemean-opset17": Case("ReduceMean", [X], {"axes": [2, 3]}),
    "reducemean-axes-input-opset18": Case("ReduceMean", [X, i64(1)], const=(1,), opset=18),
    "reducesum-axes-input": Case("ReduceSum", [X, i64(0, 2)], {"keepdims": 0}, const=(1,)),
    "reducesum-noop-empty-axes": Case("ReduceSum", [X], {"noop_with_empty_axes": 1}),
    # shapes
    "reshape-zero-and-minus-one": Case("Reshape", [X, i64(0, -1, 11)], const=(1,)),
    "reshape-dynamic-shape": Case("Reshape", [X, i64(2, 0, 99)]),
    "reshape-allowzero": Case(
        "Reshape", [np.zeros((0, 3), np.float32), i64(3, 0)], {"allowzero": 1}, const=(1,)
    ),
    "flatten-axis0": Case("Flatten", [X], {"axis": 0}),
    "flatten-axis2": Case("Flatten", [X], {"axis": 2}),
    "flatten-negative": Case("Flatten", [X], {"axis": -1}),
    "transpose-perm": Case("Transpose", [X], {"perm": [0, 2, 3, 1]}),
    "transpose-default": Case("Transpose", [f32(2, 3, 4)]),
    "squeeze-axes-input": Case("Squeeze", [f32(1, 3, 1, 5), i64(0, -2)], const=(1,)),
    "squeeze-all": Case("Squeeze", [f32(1, 3, 1, 5)]),
    "squeeze-opset11-attr": Case("Squeeze", [f32(1, 3, 1, 5)], {"axes": [2]}, opset=11),
    "unsqueeze-axes-input": Case("Unsqueeze", [f32(3, 5), i64(0, -1)], const=(1,)),
    "unsqueeze-middle": Case("Unsqueeze", [f32(3, 5), i64(1, 3)]),
    "unsqueeze-opset11-attr": Case("Unsqueeze", [f32(3, 5)], {"axes": [0, 3]}, opset=11),
    "concat": Case("Concat", [f32(2, 3, 1), f32(2, 3, 4), f32(2, 3, 2)], {"axis": -1}),
    "concat-ints": Case("Concat", [i64(1, 2), i64(3)], {"axis": 0}, out=TensorProto.INT64),
    "gather-negative-2d-indices": Case(
        "Gather", [X, np.array([[0, -1], [2, 1]], np.int64)], {"axis": 1}, const=(1,)
    ),
    "gather-scalar-index": Case("Gather", [X, np.array(-2, np.int64)], {"axis": 0}),
    "gather-int32-indices": Case("Gather", [f32(5, 3), np.array([4, 0, 4], np.int32)]),
    "shape": Case("Shape", [X], out=TensorProto.INT64),
    "shape-start-end": Case("Shape", [X], {"start": 1, "end": -1}, out=TensorProto.INT64),
    "constant-of-shape-float": Case(
        "ConstantOfShape",
        [i64(2, 3)],
        {"value": numpy_helper.from_array(np.array([1.25], np.float32))},
    ),
    "constant-of-shape-int-dynamic": Case(
        "ConstantOfShape",
        [i64(4)],
        {"value": numpy_helper.from_array(np.array([7], np.int64))},
        out=TensorProto.INT64,
    ),
    "constant-of-shape-default": Case("ConstantOfShape", [i64(3, 1)], const=(0,)),
    "cast-float-to-int": Case("Cast", [X * 5], {"to": TensorProto.INT64}, out=TensorProto.INT64),
    "cast-int-to-float": Case("Cast", [i64(1, -2, 3)], {"to": TensorProto.FLOAT}),
    "expand": Case("Expand", [f32(3, 1), i64(2, 1, 4)], const=(1,)),
    # slicing
    "slice-negative-and-int-max": Case(
        "Slice", [X, i64(-3, 1), i64(INT_MAX, -2), i64(3, 1)], const=(1, 2, 3)
    ),
    "slice-steps": Case(
        "Slice", [X, i64(0, 1), i64(9, 11), i64(2, 3), i64(2, 3)], const=(1, 2, 3, 4)
    ),
    "slice-negative-step-to-int-min": Case(
        "Slice", [X, i64(-1), i64(INT_MIN), i64(-1), i64(-1)], const=(1, 2, 3, 4)
    ),
    "slice-negative-step-bounded": Case(
        "Slice", [X, i64(7, 2), i64(1, -100), i64(2, 1), i64(-2, -1)], const=(1, 2, 3, 4)
    ),
    "slice-empty": Case("Slice", [X, i64(5), i64(2), i64(2)], const=(1, 2, 3)),
    "slice-dynamic-params": Case("Slice", [X, i64(1), i64(-1), i64(-1)]),
    "slice-opset9-attrs": Case(
        "Slice", [X], {"starts": [1, -4], "ends": [INT_MAX, -1], "axes": [1, 3]}, opset=9
    ),
    # padding
    "pad-constant-value": Case(
        "Pad", [X, i64(0, 0, 1, 2, 0, 1, 3, 0), np.array(0.5, np.float32)], const=(1, 2)
    ),
    "pad-negative-crops": Case("Pad", [X, i64(0, 1, -2, 1, 0, -1, 1, -3)], const=(1,)),
    "pad-reflect": Case("Pad", [X, i64(0, 0, 2, 1, 0, 0, 1, 2)], {"mode": "reflect"}, const=(1,)),
    "pad-edge": Case("Pad", [X, i64(0, 0, 3, 0, 0, 0, 0, 4)], {"mode": "edge"}, const=(1,)),
    "pad-wrap": Case(
        "Pad", [X, i64(0, 0, 1, 2, 0, 0, 2, 1)], {"mode": "wrap"}, const=(1,), opset=19
    ),
    "pad-edge-channels": Case("Pad", [X, i64(0, 1, 0, 0, 0, 2, 0, 0)], {"mode": "edge"}),
    "pad-axes-opset18": Case("Pad", [X, i64(1, 2, 3, 0), None, i64(-1, 1)], const=(1, 3), opset=18),
    "pad-dynamic-pads": Case("Pad", [X, i64(0, 0, 1, 1, 0, 0, 1, 1)]),
    "pad-opset2-attrs": Case("Pad", [X], {"pads": [0, 0, 1, 0, 0, 0, 0, 2], "value": 3.0}, opset=2),
}


@pytest.mark.parametrize("name", list(CASES))
def test_operator_matches_onnxruntime(name: str) -> None:
    case = CASES[name]
    model, feeds = build(case)
    expected = run_ort(model, feeds)
    got = run_torch(model, feeds)
    assert len(got) == len(expected) == case.n_out
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape, name
        assert g.dtype == e.dtype, name
        if np.issubdtype(e.dtype, np.floating):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(g, e)


def test_every_supported_operator_is_checked() -> None:
    checked = {c.op for c in CASES.values()} | {"Constant"}  # Constant: below
    assert set(supported_ops()) <= checked, set(supported_ops()) - checked


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


def _conv_bn_relu_gap_gemm(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    arrays = {
        "w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(8).astype(np.float32),
        "scale": rng.uniform(0.5, 2, 8).astype(np.float32),
        "shift": rng.standard_normal(8).astype(np.float32),
        "mean": rng.standard_normal(8).astype(np.float32),
        "var": rng.uniform(0.5, 2, 8).astype(np.float32),
        "fc": rng.standard_normal((5, 8)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["conv", "scale", "shift", "mean", "var"], ["bn"], epsilon=1e-3
        ),
        helper.make_node("Relu", ["bn"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        initializer=[numpy_helper.from_array(v, k) for k, v in arrays.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


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


def _graph(nodes: list, inits: dict[str, np.ndarray], shape: list[Any]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


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
