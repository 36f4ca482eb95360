"""Perturbation fused into the model graph.

The wrapped graph takes
    z           (N, M)    float32  coalition matrix, 1 = superpixel shown
    segments    (1, h, w) int64    superpixel ids on the model-input grid
    image       (3, h, w) float32  the preprocessed image
    background  (3, h, w) float32  the preprocessed background
and computes `background + (image - background) * z[:, segments]` in front of the original
graph, so that per batch only z crosses to the device; the other three are bound once per
explanation. Its output is the model's own output, (N, C). The prelude uses only Gather,
Sub, Mul and Add, so it fits any opset from 7 on (the model zoo's ResNet50 is opset 7).
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

Z = "glimpse_z"
SEGMENTS = "glimpse_segments"
IMAGE = "glimpse_image"
BACKGROUND = "glimpse_background"


def fuse_perturbation(model: onnx.ModelProto, input_name: str) -> onnx.ModelProto:
    """Return a copy of `model` whose input `input_name` is replaced by the composition."""
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    graph = fused.graph
    original = next((i for i in graph.input if i.name == input_name), None)
    if original is None:
        raise ValueError(f"graph has no input {input_name!r}")
    dims = original.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ValueError(f"input {input_name!r} is not 4-D NCHW")

    def dim(d: onnx.TensorShapeProto.Dimension) -> int | str | None:
        return d.dim_value if d.HasField("dim_value") else (d.dim_param or None)

    channels, height, width = (dim(d) for d in dims[1:])
    internal = f"{input_name}__composed"
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == input_name:
                node.input[k] = internal
    for output in graph.output:
        if output.name == input_name:
            raise ValueError("the model returns its input unchanged; nothing to fuse")

    prelude = [
        # Gather with (1, h, w) indices gives the mask as (N, 1, h, w) directly.
        helper.make_node("Gather", [Z, SEGMENTS], ["glimpse_mask"], axis=1),
        helper.make_node("Sub", [IMAGE, BACKGROUND], ["glimpse_diff"]),  # (3, h, w)
        helper.make_node("Mul", ["glimpse_mask", "glimpse_diff"], ["glimpse_shown"]),
        helper.make_node("Add", ["glimpse_shown", BACKGROUND], [internal]),  # (N, 3, h, w)
    ]
    nodes = prelude + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)

    inputs = [i for i in graph.input if i.name != input_name]
    del graph.input[:]
    graph.input.extend(
        [
            helper.make_tensor_value_info(Z, TensorProto.FLOAT, ["N", "M"]),
            helper.make_tensor_value_info(SEGMENTS, TensorProto.INT64, [1, height, width]),
            helper.make_tensor_value_info(IMAGE, TensorProto.FLOAT, [channels, height, width]),
            helper.make_tensor_value_info(BACKGROUND, TensorProto.FLOAT, [channels, height, width]),
            *inputs,
        ]
    )
    return fused
