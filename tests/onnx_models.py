"""Tiny ONNX classifiers built with onnx.helper, whose answers the tests know.

Every model reads a float32 (N, 3, H, W) input named `x` and answers (N, C) under `y`.
Cards use a squash resize to the image's own size, scale 1/255, mean 0 and std 1, so the
model sees pixel/255 exactly where the image's pixels are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from glimpse.cards import ModelCard
from worker.runtime.onnx import OnnxRuntimeModel

OPSET = 17


def tiny_card(
    height: int, width: int, num_classes: int, *, output_kind: str = "logits"
) -> ModelCard:
    return ModelCard(
        input_name="x",
        output_name="y",
        input_size=(height, width),
        resize="squash",
        scale=1 / 255,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        output_kind=output_kind,  # type: ignore[arg-type]
        num_classes=num_classes,
        labels_file=None,
    )


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _io(height: int, width: int, classes: int) -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    return (
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, height, width]),
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes]),
    )


def linear_model(path: Path, weights: np.ndarray, bias: np.ndarray | None = None) -> Path:
    """y = flatten(x) @ W + b, W: (3, H, W, C) -> an additive model over pixels."""
    _, height, width, classes = weights.shape
    bias = np.zeros(classes, np.float32) if bias is None else np.asarray(bias, np.float32)
    inp, out = _io(height, width, classes)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["y"]),
        ],
        "linear",
        [inp],
        [out],
        initializer=[
            numpy_helper.from_array(weights.reshape(-1, classes).astype(np.float32), "W"),
            numpy_helper.from_array(bias, "b"),
        ],
    )
    return _save(graph, path)


def region_weights(
    height: int, width: int, rows: slice, cols: slice, channel: int = 0
) -> np.ndarray:
    """(3, H, W) weights of `mean of channel over the region`."""
    w = np.zeros((3, height, width), np.float32)
    w[channel, rows, cols] = 1.0
    return w / w.sum()


def region_model(path: Path, height: int, width: int, rows: slice, cols: slice) -> Path:
    """Class 0 = mean of channel 0 over the region; class 1 = the constant 0.5."""
    weights = np.zeros((3, height, width, 2), np.float32)
    weights[..., 0] = region_weights(height, width, rows, cols)
    return linear_model(path, weights, np.array([0.0, 0.5], np.float32))


def segment_means_model(path: Path, segments: np.ndarray, a: np.ndarray) -> Path:
    """One class: Σ_j a_j · (mean over superpixel j of all three channels)."""
    height, width = segments.shape
    counts = np.bincount(segments.ravel(), minlength=len(a)).astype(np.float64)
    per_pixel = (np.asarray(a, np.float64) / counts / 3.0)[segments]
    weights = np.broadcast_to(per_pixel, (3, height, width))[..., None].astype(np.float32)
    return linear_model(path, np.ascontiguousarray(weights))


def interaction_model(path: Path, regions: list[np.ndarray]) -> Path:
    """One class, not additive: max(r0, r1) + 2·r0·r2, r_i = mean of all channels over
    region mask i ((H, W) bool)."""
    height, width = regions[0].shape
    w = np.zeros((3, height, width, len(regions)), np.float32)
    for i, mask in enumerate(regions):
        w[:, mask, i] = 1.0 / (3 * mask.sum())
    inp, out = _io(height, width, 1)
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["r"]),
        helper.make_node("Slice", ["r", "s0", "s1", "axis"], ["r01"]),
        helper.make_node("ReduceMax", ["r01"], ["mx"], axes=[1], keepdims=1),
        helper.make_node("Slice", ["r", "s0", "e0", "axis"], ["r0"]),
        helper.make_node("Slice", ["r", "s2", "e2", "axis"], ["r2"]),
        helper.make_node("Mul", ["r0", "r2"], ["prod"]),
        helper.make_node("Mul", ["prod", "two"], ["prod2"]),
        helper.make_node("Add", ["mx", "prod2"], ["y"]),
    ]
    ints = {"s0": 0, "s1": 2, "e0": 1, "s2": 2, "e2": 3, "axis": 1}
    initializers = [numpy_helper.from_array(w.reshape(-1, len(regions)), "W")]
    initializers += [numpy_helper.from_array(np.array([v], np.int64), k) for k, v in ints.items()]
    initializers.append(numpy_helper.from_array(np.array(2.0, np.float32), "two"))
    graph = helper.make_graph(nodes, "interaction", [inp], [out], initializer=initializers)
    return _save(graph, path)


def load(path: Path, card: ModelCard) -> OnnxRuntimeModel:
    return OnnxRuntimeModel(path, card, intra_op_threads=1)


def pooled_classifier(
    path: Path,
    *,
    input_name: str = "data",
    output_name: str = "logits",
    input_shape: list[int | str] | None = None,
    num_classes: int = 1000,
    elem_type: int = TensorProto.FLOAT,
    weights_as_inputs: bool = False,
) -> Path:
    """GlobalAveragePool -> Flatten -> Gemm: any spatial size, `num_classes` logits.

    `weights_as_inputs` lists the initializers among the graph inputs too, as old exporters
    (the model zoo's opset-7 ResNet50) did.
    """
    shape = input_shape or ["N", 3, 224, 224]
    channels = shape[1] if isinstance(shape[1], int) else 3
    w = np.random.default_rng(0).normal(size=(channels, num_classes)).astype(np.float32)
    initializers = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(np.zeros(num_classes, np.float32), "b"),
    ]
    inputs = [helper.make_tensor_value_info(input_name, elem_type, shape)]
    if weights_as_inputs:
        inputs += [
            helper.make_tensor_value_info("W", TensorProto.FLOAT, list(w.shape)),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [num_classes]),
        ]
    pooled = input_name
    nodes = []
    if elem_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [input_name], ["as_float"], to=TensorProto.FLOAT))
        pooled = "as_float"
    nodes += [
        helper.make_node("GlobalAveragePool", [pooled], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "b"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes,
        "pooled",
        inputs,
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", num_classes])],
        initializer=initializers,
    )
    return _save(graph, path)


def conv_gap_model(
    path: Path,
    height: int,
    width: int,
    *,
    channels: int = 4,
    num_classes: int = 3,
    head: str = "gemm",
    seed: int = 0,
) -> tuple[Path, dict[str, np.ndarray]]:
    """A tiny CNN: Conv 3×3 (pad 1, stride 2) -> Relu ("features") -> global mean -> linear.

    head: "gemm" (GlobalAveragePool, Flatten, Gemm transB=1), "matmul" (ReduceMean over H, W
    with keepdims=0, MatMul, Add) or "softmax" (the gemm head followed by a Softmax).
    Returns the path and the weights {"conv", "conv_bias", "fc" (C, K), "fc_bias"}.
    """
    rng = np.random.default_rng(seed)
    weights = {
        "conv": rng.normal(size=(channels, 3, 3, 3)).astype(np.float32),
        "conv_bias": rng.normal(size=channels).astype(np.float32) * 0.1,
        "fc": rng.normal(size=(num_classes, channels)).astype(np.float32),
        "fc_bias": rng.normal(size=num_classes).astype(np.float32),
    }
    inp, out = _io(height, width, num_classes)
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "conv", "conv_bias"],
            ["conv_out"],
            name="conv1",
            pads=[1, 1, 1, 1],
            strides=[2, 2],
            kernel_shape=[3, 3],
        ),
        helper.make_node("Relu", ["conv_out"], ["features"], name="relu1"),
    ]
    initializers = [
        numpy_helper.from_array(weights["conv"], "conv"),
        numpy_helper.from_array(weights["conv_bias"], "conv_bias"),
        numpy_helper.from_array(weights["fc_bias"], "fc_bias"),
    ]
    last = "y" if head != "softmax" else "logits"
    if head in ("gemm", "softmax"):
        nodes += [
            helper.make_node("GlobalAveragePool", ["features"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "fc", "fc_bias"], [last], transB=1),
        ]
        initializers.append(numpy_helper.from_array(weights["fc"], "fc"))
    else:
        nodes += [
            helper.make_node("ReduceMean", ["features", "axes"], ["pool"], keepdims=0),
            helper.make_node("MatMul", ["pool", "fc_t"], ["mm"]),
            helper.make_node("Add", ["mm", "fc_bias"], ["y"]),
        ]
        initializers += [
            numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
            numpy_helper.from_array(np.ascontiguousarray(weights["fc"].T), "fc_t"),
        ]
    if head == "softmax":
        nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=1))
    graph = helper.make_graph(nodes, "conv_gap", [inp], [out], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path, weights
