"""The matrix products and reductions (worker/runtime/torch_graph/ops_reduce.py) against
ONNX Runtime on single-node graphs: MatMul, Gemm's transposes, alpha, beta and C, Softmax
before and after opset 13, Reduce* with axes as attributes or inputs."""

from __future__ import annotations

import pytest
from torch_graph_helpers import (
    Case,
    X,
    assert_matches_onnxruntime,
    f32,
    i64,
)

CASES: dict[str, Case] = {
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
}


@pytest.mark.parametrize("name", list(CASES))
def test_operator_matches_onnxruntime(name: str) -> None:
    assert_matches_onnxruntime(name, CASES[name])
