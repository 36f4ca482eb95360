"""Grad-CAM (Selvaraju et al.) of an ONNX classifier, exact without autodiff where it can be.

Grad-CAM for class c and a convolutional layer A (K channels, h' × w'):
    α_k = (1 / h'w') Σ_ij ∂y_c / ∂A_k,ij,    CAM_c = ReLU(Σ_k α_k A_k),
upsampled bilinearly to the model input, y_c the model's raw output (the logit for a
logits model, as in the paper; the probability where the model itself outputs
probabilities). When y = W · GAP(A) + b (GlobalAveragePool, or ReduceMean over H and W,
then Flatten/Reshape, then Gemm or MatMul + Add), ∂y_c/∂A_k,ij = W[c, k] / (h'w') at every
position, so α_k = W[c, k] / (h'w') exactly: the head's weights, found by reading the graph.
A is exposed as an extra output of an ONNX Runtime session built once per model, and one
forward pass gives every target's map.

Any other layer or head needs gradients: a GradientModel (worker/runtime/base.py) computes
them — the PyTorch runtime itself, or the one an ONNX Runtime model hands over
(`OnnxRuntimeModel.gradients()`) when PyTorch is installed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from PIL import Image

from glimpse.errors import InvalidParams
from worker.engine.input_grid import InputGrid
from worker.runtime.base import GradientModel, GradientSource, OutputsModel

_RESHAPES = {"Flatten", "Reshape", "Squeeze", "Identity"}
LAYER_LOC = ["params", "gradcam", "layer"]


@dataclass(frozen=True)
class LinearHead:
    """y = weight @ GAP(feature) + bias at the model's output."""

    feature: str  # the tensor that is globally average-pooled
    weight: np.ndarray  # (C, K) float64
    bias: np.ndarray  # (C,) float64


@dataclass(frozen=True)
class GraphInfo:
    head: LinearHead | None
    default_layer: str | None  # the GAP's input, else the last Conv's output
    tensors: frozenset[str]  # every node output
    node_outputs: dict[str, str]  # node name -> its first output


@dataclass(frozen=True)
class Cam:
    """k targets over an h' × w' feature map."""

    maps: np.ndarray  # (k, h', w') float64, ReLU'd
    layer: str
    forward_passes: int


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def find_linear_head(model: onnx.ModelProto, output_name: str) -> LinearHead | None:
    """The GAP + linear head ending at `output_name`, or None if the graph ends otherwise."""
    producer = {out: node for node in model.graph.node for out in node.output}
    consts = _constants(model)

    def source(name: str) -> onnx.NodeProto | None:
        node = producer.get(name)
        while node is not None and node.op_type in _RESHAPES:
            node = producer.get(node.input[0])
        return node

    def attrs(node: onnx.NodeProto) -> dict[str, Any]:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    last = source(output_name)
    if last is None:
        return None
    bias: np.ndarray | None = None
    if last.op_type == "Add":
        const = [i for i in last.input if i in consts]
        other = [i for i in last.input if i not in consts]
        if len(const) != 1 or len(other) != 1:
            return None
        bias = np.asarray(consts[const[0]], np.float64).reshape(-1)
        last = source(other[0])
        if last is None or last.op_type != "MatMul":
            return None
    if last.op_type == "Gemm":
        a = attrs(last)
        if a.get("transA", 0) or last.input[1] not in consts:
            return None
        b = np.asarray(consts[last.input[1]], np.float64)
        weight = a.get("alpha", 1.0) * (b if a.get("transB", 0) else b.T)
        if len(last.input) > 2 and last.input[2]:
            if last.input[2] not in consts:
                return None
            bias = a.get("beta", 1.0) * np.asarray(consts[last.input[2]], np.float64).reshape(-1)
    elif last.op_type == "MatMul":
        if last.input[1] not in consts:
            return None
        weight = np.asarray(consts[last.input[1]], np.float64).T
    else:
        return None
    if weight.ndim != 2:
        return None
    pool = source(last.input[0])
    if pool is None or not _is_global_mean(pool, consts, attrs(pool)):
        return None
    if bias is None:
        bias = np.zeros(weight.shape[0])
    bias = np.broadcast_to(bias, (weight.shape[0],)).astype(np.float64)
    return LinearHead(feature=pool.input[0], weight=weight, bias=bias)


def _is_global_mean(node: onnx.NodeProto, consts: dict[str, np.ndarray], a: dict[str, Any]) -> bool:
    if node.op_type == "GlobalAveragePool":
        return True
    if node.op_type != "ReduceMean":
        return False
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1] in consts:
        axes = consts[node.input[1]].tolist()
    return axes is not None and sorted(int(x) % 4 for x in axes) == [2, 3]


def graph_info(path: str, output_name: str) -> GraphInfo:
    """The graph's linear head and tensor names, read once per version of the file (the
    cache is keyed by its mtime and size as well, so a replaced model is read again)."""
    stat = Path(path).stat()
    return _graph_info(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size, output_name)


@functools.lru_cache(maxsize=16)
def _graph_info(path: str, mtime_ns: int, size: int, output_name: str) -> GraphInfo:
    model = onnx.load(path)
    head = find_linear_head(model, output_name)
    default = head.feature if head else None
    if default is None:
        pools = [n for n in model.graph.node if n.op_type in ("GlobalAveragePool", "ReduceMean")]
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        default = pools[-1].input[0] if pools else (convs[-1].output[0] if convs else None)
    tensors = frozenset(out for node in model.graph.node for out in node.output if out)
    outputs = {node.name: node.output[0] for node in model.graph.node if node.name}
    return GraphInfo(head=head, default_layer=default, tensors=tensors, node_outputs=outputs)


def resolve_layer(info: GraphInfo, layer: str | None) -> str:
    """A tensor name: the requested layer (tensor or node name) or the automatic choice."""
    if layer is None:
        if info.default_layer is None:
            raise InvalidParams(
                "the model has no convolution to compute Grad-CAM on",
                errors=[{"loc": ["params", "method"], "msg": "no convolutional layer"}],
            )
        return info.default_layer
    if layer in info.tensors:
        return layer
    if layer in info.node_outputs:
        return info.node_outputs[layer]
    hint = f"; the automatic choice is {info.default_layer!r}" if info.default_layer else ""
    raise InvalidParams(
        f"params.gradcam.layer: the model has no tensor or node named {layer!r}{hint}",
        errors=[{"loc": LAYER_LOC, "msg": f"unknown layer {layer!r}"}],
    )


def gradcam(
    model: OutputsModel | GradientModel | GradientSource,
    x: np.ndarray,
    targets: np.ndarray,
    layer: str | None,
) -> Cam:
    """model: a runtime of an ONNX file (`.path`, `.card`); x: (3, h, w) preprocessed image.
    Exact from the head's weights where the layer feeds a GAP + linear head; else the
    gradients of a GradientModel (the model itself, or the one it hands over)."""
    info = graph_info(str(model.path), model.card.output_name)
    name = resolve_layer(info, layer)
    head = info.head
    if head is not None and name == head.feature and isinstance(model, OutputsModel):
        (features,) = model.run_with_outputs(x[None], (name,))
        a = _feature_map(features, name)
        weights = head.weight[targets] / (a.shape[1] * a.shape[2])  # α (k, K)
        maps = np.maximum(np.einsum("tk,khw->thw", weights, a), 0.0)
        return Cam(maps=maps, layer=name, forward_passes=1)
    if isinstance(model, GradientModel):  # a runtime with autodiff of its own
        return _cam_from_gradients(model, x, targets, name)
    gradients = model.gradients() if isinstance(model, GradientSource) else None
    if gradients is None:
        why = (
            f"layer {name!r} is not the input of the model's global-average-pool + linear head"
            if head is not None
            else "the model's head is not global-average-pool + linear"
        )
        raise InvalidParams(
            f"Grad-CAM without gradients is exact only at a GAP + linear head; {why}, and "
            "the PyTorch runtime that would compute gradients is not installed",
            errors=[{"loc": LAYER_LOC, "msg": why}],
        )
    return _cam_from_gradients(gradients, x, targets, name)


def _feature_map(features: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(features, np.float64)
    if a.ndim != 4:
        raise InvalidParams(
            f"params.gradcam.layer: {name!r} has shape {list(a.shape)}, not (N, C, H, W)",
            errors=[{"loc": LAYER_LOC, "msg": "not a 4-D feature map"}],
        )
    return np.asarray(a[0])


def _cam_from_gradients(model: GradientModel, x: np.ndarray, targets: np.ndarray, name: str) -> Cam:
    """One forward + backward pass over a batch of k copies of x, row i for target i."""
    batch = np.repeat(x[None], len(targets), axis=0)
    a, g, _ = model.activations_and_gradients(batch, name, np.asarray(targets, np.int64))
    a = np.asarray(a, np.float64)
    if a.ndim != 4:
        _feature_map(a, name)
    alpha = np.asarray(g, np.float64).mean(axis=(2, 3))  # (k, K)
    maps = np.maximum(np.einsum("tk,tkhw->thw", alpha, a), 0.0)
    return Cam(maps=maps, layer=name, forward_passes=len(targets))


def cell_segments(grid: InputGrid, cells: tuple[int, int]) -> np.ndarray:
    """(H, W) int32 at the original size: the id i·w' + j of the feature cell (i, j) that
    each pixel falls in (pixels outside a center crop: the nearest cell)."""
    fh, fw = cells
    rows = (np.arange(grid.height) * fh) // grid.height
    cols = (np.arange(grid.width) * fw) // grid.width
    labels = rows[:, None] * fw + cols[None, :]
    return grid.labels_to_original(labels)


def pixel_maps(grid: InputGrid, maps: np.ndarray) -> np.ndarray:
    """(k, h', w') -> (k, H, W) float32: bilinear to the input grid, then to the original."""
    out = []
    for cam in maps:
        plane = Image.fromarray(np.asarray(cam, np.float32))
        on_grid = plane.resize((grid.width, grid.height), Image.Resampling.BILINEAR)
        out.append(grid.map_to_original(np.asarray(on_grid, np.float32)))
    return np.stack(out).astype(np.float32)
