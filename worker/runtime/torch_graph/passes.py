"""The graph passes `GraphModule` runs when it is built:

  * `fold_conv_batchnorm`: Conv → BatchNormalization with constant parameters becomes one
    Conv (as ONNX Runtime does);
  * `toposort`: the nodes in topological order (stable: the file's order where it is one);
  * `absorb_pad`: a zero Pad of the spatial dims in front of a Conv becomes the Conv's own
    padding.

The two fusions run unless the module is built with `fuse=False`, which keeps every tensor of
the original graph observable, e.g. for `execute(..., intercept=name)`; the tensors they fuse
away are recorded in `GraphModule.folded`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glimpse.errors import ModelError
from worker.runtime.torch_graph.ir import Node, Step, _ints, _scalar


def fold_conv_batchnorm(
    nodes: list[Node], initializers: dict[str, Tensor], keep: set[str]
) -> tuple[list[Node], dict[str, str]]:
    """Fold BatchNormalization into the Conv in front of it, where the Conv's output feeds
    nothing else and every parameter is an initializer. Returns the new node list and, for
    each tensor folded away, the tensor that now follows it."""
    consumers: dict[str, int] = {}
    for node in nodes:
        for name in node.inputs:
            consumers[name] = consumers.get(name, 0) + 1
    producer = {out: node for node in nodes for out in node.outputs}
    dropped: set[int] = set()
    folded: dict[str, str] = {}
    for bn in nodes:
        if bn.op != "BatchNormalization" or any(bn.outputs[1:]) or len(bn.inputs) < 5:
            continue
        conv = producer.get(bn.inputs[0])
        if conv is None or conv.op != "Conv" or conv.outputs[0] in keep:
            continue
        if consumers.get(conv.outputs[0], 0) != 1 or int(bn.attrs.get("training_mode", 0)):
            continue
        names = [*conv.inputs[1:], *bn.inputs[1:5]]
        if not all(n in initializers for n in names if n):
            continue
        w = initializers[conv.inputs[1]].double()
        b = (
            initializers[conv.inputs[2]].double()
            if len(conv.inputs) > 2 and conv.inputs[2]
            else torch.zeros(w.shape[0], dtype=torch.float64)
        )
        scale, shift, mean, var = (initializers[n].double() for n in bn.inputs[1:5])
        factor = scale / torch.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        dtype = initializers[conv.inputs[1]].dtype
        w_name, b_name = f"{conv.outputs[0]}::folded_w", f"{conv.outputs[0]}::folded_b"
        initializers[w_name] = (w * factor.reshape(-1, *[1] * (w.ndim - 1))).to(dtype)
        initializers[b_name] = ((b - mean) * factor + shift).to(dtype)
        folded[conv.outputs[0]] = bn.outputs[0]
        conv.inputs = [conv.inputs[0], w_name, b_name]
        conv.outputs = [bn.outputs[0]]
        dropped.add(id(bn))
    return [n for n in nodes if id(n) not in dropped], folded


def toposort(nodes: list[Node], available: set[str]) -> list[Node]:
    """Kahn's algorithm, stable: the file's order wherever it is already topological."""
    known = set(available) | {""}
    pending = list(nodes)
    ordered: list[Node] = []
    while pending:
        rest = []
        for node in pending:
            if all(name in known for name in node.inputs):
                ordered.append(node)
                known.update(node.outputs)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted({i for n in rest for i in n.inputs if i not in known})
            raise ModelError(f"the ONNX graph cannot be ordered: no producer of {missing[:5]}")
        pending = rest
    return ordered


def absorb_pad(
    conv: Node, steps: list[Step], static: dict[str, Tensor], consumers: dict[str, int]
) -> tuple[Node, str] | None:
    """Conv fed by a zero constant Pad of its spatial dims only (EfficientNet's "same"
    padding, exported as Pad → Conv): the Conv with the pads added to its own, reading the
    Pad's input, and the name of the tensor no longer made. None where that does not apply."""
    if conv.attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    pad = next((s.node for s in steps if conv.inputs[0] in s.node.outputs), None)
    if pad is None or pad.op != "Pad" or consumers.get(pad.outputs[0], 0) != 1:
        return None
    if pad.attrs.get("mode", b"constant") not in (b"constant", "constant"):
        return None
    inputs = pad.inputs + [""] * (4 - len(pad.inputs))
    if "pads" in pad.attrs:  # opset < 11
        pads, value = list(pad.attrs["pads"]), float(pad.attrs.get("value", 0.0))
    else:
        if inputs[1] not in static or inputs[3] or (inputs[2] and inputs[2] not in static):
            return None
        pads = _ints(static[inputs[1]]) or []
        value = float(_scalar(static[inputs[2]])) if inputs[2] else 0.0
    rank = len(pads) // 2 - 2
    if value != 0.0 or rank < 1 or any(p < 0 for p in pads):
        return None
    if pads[0] or pads[1] or pads[rank + 2] or pads[rank + 3]:
        return None  # pads the batch or channel dim
    own = [int(p) for p in conv.attrs.get("pads") or [0] * (2 * rank)]
    begins = [own[i] + pads[2 + i] for i in range(rank)]
    ends = [own[rank + i] + pads[rank + 4 + i] for i in range(rank)]
    attrs = {**conv.attrs, "pads": begins + ends}
    fused = Node(conv.op, conv.name, [pad.inputs[0], *conv.inputs[1:]], conv.outputs, attrs)
    steps[:] = [s for s in steps if s.node is not pad]
    return fused, pad.outputs[0]
