"""Pad (worker/runtime/torch_graph/ops_pad.py) against ONNX Runtime on single-node graphs:
every mode, negative pads, pads and value as inputs or attributes, the axes input."""

from __future__ import annotations

import numpy as np
import pytest
from torch_graph_helpers import Case, X, assert_matches_onnxruntime, i64

CASES: dict[str, Case] = {
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
    assert_matches_onnxruntime(name, CASES[name])
