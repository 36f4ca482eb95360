"""Every operator the torch interpreter registers is checked against ONNX Runtime by one of
the test_ops_* files (their cases, imported by name: this folder is on sys.path)."""

from __future__ import annotations

from test_ops_conv import CASES as CONV_CASES
from test_ops_elementwise import CASES as ELEMENTWISE_CASES
from test_ops_pad import CASES as PAD_CASES
from test_ops_reduce import CASES as REDUCE_CASES
from test_ops_shape import CASES as SHAPE_CASES

from worker.runtime.torch_graph import supported_ops

CASES = {**CONV_CASES, **ELEMENTWISE_CASES, **SHAPE_CASES, **PAD_CASES, **REDUCE_CASES}


def test_every_supported_operator_is_checked() -> None:
    checked = {c.op for c in CASES.values()} | {"Constant"}  # Constant: test_module.py
    assert set(supported_ops()) <= checked, set(supported_ops()) - checked
