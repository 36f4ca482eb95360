"""The constant and shape kernels (worker/runtime/torch_graph/ops_shape.py) against ONNX
Runtime on single-node graphs, including the attributes where the two conventions differ
(Reshape's 0 and -1, Slice clamping and negative steps, negative Gather indices, ...)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper
from torch_graph_helpers import (
    Case,
    X,
    assert_matches_onnxruntime,
    f32,
    i64,
)

INT_MAX = 2**63 - 1


INT_MIN = -(2**63)


CASES: dict[str, Case] = {
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
}


@pytest.mark.parametrize("name", list(CASES))
def test_operator_matches_onnxruntime(name: str) -> None:
    assert_matches_onnxruntime(name, CASES[name])
