"""The elementwise kernels (worker/runtime/torch_graph/ops_elementwise.py) against ONNX
Runtime on single-node graphs: activations, unary and binary math (integer Div truncating,
Pow keeping the base's type), Clip's bounds as attributes or inputs, Cast, Dropout."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from torch_graph_helpers import (
    Case,
    X,
    assert_matches_onnxruntime,
    f32,
    i64,
)

CASES: dict[str, Case] = {
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
    # casts
    "cast-float-to-int": Case("Cast", [X * 5], {"to": TensorProto.INT64}, out=TensorProto.INT64),
    "cast-int-to-float": Case("Cast", [i64(1, -2, 3)], {"to": TensorProto.FLOAT}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_operator_matches_onnxruntime(name: str) -> None:
    assert_matches_onnxruntime(name, CASES[name])
