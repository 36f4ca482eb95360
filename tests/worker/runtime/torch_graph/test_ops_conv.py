"""The convolution, pooling and normalization kernels (worker/runtime/torch_graph/ops_conv.py)
against ONNX Runtime on single-node graphs, including the attributes where the two
conventions differ (pads layout, auto_pad, ceil_mode, count_include_pad, ...)."""

from __future__ import annotations

import pytest
from torch_graph_helpers import Case, X, assert_matches_onnxruntime, f32

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
}


@pytest.mark.parametrize("name", list(CASES))
def test_operator_matches_onnxruntime(name: str) -> None:
    assert_matches_onnxruntime(name, CASES[name])
