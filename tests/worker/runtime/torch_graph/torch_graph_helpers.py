"""Helpers of the ONNX → PyTorch interpreter's tests (imported by name: tests/worker/runtime/
torch_graph is on sys.path): random inputs, a `Case` (one operator, its inputs and attributes)
built into a single-node ONNX graph, that graph run by the torch interpreter and by ONNX
Runtime, and the small graphs the pass and module tests share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from worker.runtime.torch_graph import GraphModule

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


def assert_matches_onnxruntime(name: str, case: Case) -> None:
    """The case's graph run by the torch runtime gives ONNX Runtime's outputs: same count,
    shapes and dtypes; floats within 1e-5, integers exactly."""
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


X = f32(2, 4, 9, 11)


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
