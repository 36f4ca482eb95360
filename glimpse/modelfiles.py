"""ONNX model files: reading a graph's input and output into a card, fetching the ONNX model
zoo's ResNet50, and generating an untrained graph of its architecture for cost measurements.

Only the `onnx` package is used here (no runtime): cards are pure data.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from glimpse.cards import PRESETS, ModelCard
from glimpse.errors import DownloadFailed, InvalidParams, ModelError

RESNET50_INPUT = "data"
RESNET50_OUTPUT = "resnetv24_dense0_fwd"


@dataclass(frozen=True)
class GraphInfo:
    """What a classifier graph says about itself: one NCHW float input and its output."""

    input_name: str
    input_shape: tuple[int | str | None, ...]  # dims: int, symbolic name, or None (unknown)
    output_name: str
    num_classes: int

    @property
    def spatial_size(self) -> tuple[int, int] | None:
        """(h, w) when the graph fixes them, else None."""
        h, w = self.input_shape[2], self.input_shape[3]
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None


def _dims(value: onnx.ValueInfoProto) -> tuple[int | str | None, ...]:
    dims: list[int | str | None] = []
    for d in value.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def inspect_onnx(path: Path) -> GraphInfo:
    """Read the graph's single image input (float, 4-D, NCHW with 3 channels) and its output.

    Raises ModelError with one line saying what does not fit.
    """
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError …
        raise ModelError(f"{path} is not a readable ONNX model: {exc}") from None
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(
            f"{path}: expected one image input, the graph has {len(inputs)}: "
            f"{[i.name for i in inputs]}"
        )
    image = inputs[0]
    if image.type.tensor_type.elem_type != TensorProto.FLOAT:
        kind = TensorProto.DataType.Name(image.type.tensor_type.elem_type)
        raise ModelError(f"{path}: input {image.name!r} is {kind}; a float32 input is required")
    shape = _dims(image)
    if len(shape) != 4:
        raise ModelError(f"{path}: input {image.name!r} has shape {list(shape)}; need 4-D NCHW")
    if shape[1] != 3:
        raise ModelError(
            f"{path}: input {image.name!r} has shape {list(shape)}; need NCHW with 3 channels"
        )
    if not graph.output:
        raise ModelError(f"{path}: the graph has no output")
    output = graph.output[0]
    out_shape = _dims(output)
    classes = out_shape[1:]
    if not classes or not all(isinstance(d, int) for d in classes):
        out_shape = _inferred_output_shape(model, output.name)
        classes = out_shape[1:]
    if not classes or not all(isinstance(d, int) and d > 0 for d in classes):
        raise ModelError(
            f"{path}: cannot tell the number of classes from output {output.name!r} "
            f"of shape {list(out_shape)}"
        )
    return GraphInfo(
        input_name=image.name,
        input_shape=shape,
        output_name=output.name,
        num_classes=math.prod(int(d) for d in classes if isinstance(d, int)),
    )


@functools.lru_cache(maxsize=16)
def _layer_names(path: str, mtime_ns: int) -> frozenset[str]:
    model = onnx.load(path, load_external_data=False)
    names = {out for node in model.graph.node for out in node.output if out}
    return frozenset(names | {node.name for node in model.graph.node if node.name})


def layer_names(path: Path) -> frozenset[str]:
    """Every node name and node output tensor of the graph: what `params.gradcam.layer` may
    name. Read once per file version."""
    try:
        return _layer_names(str(path), Path(path).stat().st_mtime_ns)
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError …
        raise ModelError(f"{path} is not a readable ONNX model: {exc}") from None


def _inferred_output_shape(model: onnx.ModelProto, name: str) -> tuple[int | str | None, ...]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is best effort
        return ()
    for value in inferred.graph.output:
        if value.name == name:
            return _dims(value)
    return ()


def card_from_graph(
    info: GraphInfo,
    preset: str = "imagenet",
    *,
    labels_file: str | None = "labels.txt",
    description: str = "",
) -> ModelCard:
    """A card from the graph's names and the preset's preprocessing.

    When the graph fixes its input size to something other than the preset's, the graph
    wins; a shorter_side preset keeps its resize-to-crop ratio (256/224 for imagenet).
    """
    if preset not in PRESETS:
        raise InvalidParams(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    fields = dict(PRESETS[preset])
    size = info.spatial_size
    if size is not None and size != tuple(fields["input_size"]):  # type: ignore[arg-type]
        old_h = fields["input_size"][0]  # type: ignore[index]
        fields["input_size"] = size
        if fields.get("resize_shorter_to"):
            ratio = fields["resize_shorter_to"] / old_h
            fields["resize_shorter_to"] = round(min(size) * ratio)
    return ModelCard(
        input_name=info.input_name,
        output_name=info.output_name,
        num_classes=info.num_classes,
        labels_file=labels_file,
        description=description,
        **fields,  # type: ignore[arg-type]
    )


#: A line of an ImageNet synset file: its WordNet id, then the class names.
SYNSET_LINE = re.compile(r"n\d{8} (.+)")


def read_labels(path: Path) -> list[str]:
    """One label a line; blank lines are skipped (as RegisteredModel.labels reads them). A
    synset file (`n01440764 tench, Tinca tinca`, every line) gives its names without the ids."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidParams(f"cannot read labels file {path}: {exc}") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    synset = [SYNSET_LINE.fullmatch(line) for line in labels]
    if labels and all(synset):
        return [m.group(1) for m in synset if m]
    return labels


# --- the ONNX model zoo's ResNet50 ----------------------------------------------------------
def download(url: str, dest: Path, sha256: str, *, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, checking its sha256; nothing is left behind on failure."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    while chunk := response.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise DownloadFailed(
                    f"cannot download {url} ({reason}; offline?) — "
                    "see README for using another model"
                ) from None
        if digest.hexdigest() != sha256:
            raise DownloadFailed(
                f"{url} has sha256 {digest.hexdigest()}, expected {sha256}; not registered"
            )
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def resnet50_card(*, labels_file: str | None = "labels.txt", description: str = "") -> ModelCard:
    return ModelCard(
        input_name=RESNET50_INPUT,
        output_name=RESNET50_OUTPUT,
        num_classes=1000,
        labels_file=labels_file,
        description=description,
        **PRESETS["imagenet"],  # type: ignore[arg-type]
    )


# --- an untrained graph of ResNet50-v2's architecture ---------------------------------------
class _Builder:
    """Collects nodes and seeded He-initialised initializers for one graph."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.params = 0

    def _const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        self.params += array.size
        return name

    def conv(self, x: str, name: str, c_in: int, c_out: int, k: int, stride: int = 1) -> str:
        fan_in = c_in * k * k
        w = self.rng.standard_normal((c_out, c_in, k, k), dtype=np.float32)
        w *= np.float32(math.sqrt(2.0 / fan_in))
        self._const(f"{name}_weight", w)
        out = f"{name}_fwd"
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}_weight"],
                [out],
                name=name,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
            )
        )
        return out

    def bn(self, x: str, name: str, channels: int) -> str:
        ones, zeros = np.ones(channels, np.float32), np.zeros(channels, np.float32)
        inputs = [
            self._const(f"{name}_gamma", ones),
            self._const(f"{name}_beta", zeros),
            self._const(f"{name}_running_mean", zeros),
            self._const(f"{name}_running_var", ones),
        ]
        out = f"{name}_fwd"
        self.nodes.append(
            helper.make_node("BatchNormalization", [x, *inputs], [out], name=name, epsilon=1e-5)
        )
        return out

    def relu(self, x: str, name: str) -> str:
        out = f"{name}_fwd"
        self.nodes.append(helper.make_node("Relu", [x], [out], name=name))
        return out


def resnet50_v2_graph(seed: int = 0) -> tuple[onnx.ModelProto, int]:
    """ResNet50-v2 (pre-activation bottlenecks [3, 4, 6, 3], as the model zoo's
    resnet50-v2-7), opset 17, input `data` (N, 3, 224, 224), output `resnetv24_dense0_fwd`
    (N, 1000), seeded He-normal weights. Returns the model and its parameter count."""
    rng = np.random.default_rng(seed)
    b = _Builder(rng)
    p = "resnetv24"
    x = b.bn("data", f"{p}_batchnorm0", 3)
    x = b.conv(x, f"{p}_conv0", 3, 64, 7, stride=2)
    x = b.bn(x, f"{p}_batchnorm1", 64)
    x = b.relu(x, f"{p}_relu0")
    b.nodes.append(
        helper.make_node(
            "MaxPool",
            [x],
            [f"{p}_pool0_fwd"],
            name=f"{p}_pool0",
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        )
    )
    x = f"{p}_pool0_fwd"
    c_in = 64
    for stage, (blocks, width, stride) in enumerate(
        zip((3, 4, 6, 3), (64, 128, 256, 512), (1, 2, 2, 2), strict=True), start=1
    ):
        c_out = width * 4
        for block in range(blocks):
            s = stride if block == 0 else 1
            n = f"{p}_stage{stage}_block{block}"
            pre = b.relu(b.bn(x, f"{n}_batchnorm0", c_in), f"{n}_relu0")
            shortcut = b.conv(pre, f"{n}_downsample", c_in, c_out, 1, s) if block == 0 else x
            h = b.conv(pre, f"{n}_conv0", c_in, width, 1)
            h = b.relu(b.bn(h, f"{n}_batchnorm1", width), f"{n}_relu1")
            h = b.conv(h, f"{n}_conv1", width, width, 3, s)
            h = b.relu(b.bn(h, f"{n}_batchnorm2", width), f"{n}_relu2")
            h = b.conv(h, f"{n}_conv2", width, c_out, 1)
            b.nodes.append(
                helper.make_node("Add", [h, shortcut], [f"{n}_plus_fwd"], name=f"{n}_plus")
            )
            x = f"{n}_plus_fwd"
            c_in = c_out
    x = b.relu(b.bn(x, f"{p}_batchnorm2", c_in), f"{p}_relu1")
    b.nodes.append(
        helper.make_node("GlobalAveragePool", [x], [f"{p}_pool1_fwd"], name=f"{p}_pool1")
    )
    b.nodes.append(helper.make_node("Flatten", [f"{p}_pool1_fwd"], [f"{p}_flatten0"], axis=1))
    w = rng.standard_normal((1000, c_in), dtype=np.float32) * np.float32(math.sqrt(2.0 / c_in))
    b._const(f"{p}_dense0_weight", w)
    b._const(f"{p}_dense0_bias", np.zeros(1000, np.float32))
    b.nodes.append(
        helper.make_node(
            "Gemm",
            [f"{p}_flatten0", f"{p}_dense0_weight", f"{p}_dense0_bias"],
            [RESNET50_OUTPUT],
            name=f"{p}_dense0",
            transB=1,
        )
    )
    graph = helper.make_graph(
        b.nodes,
        "resnet50_v2_untrained",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info(RESNET50_OUTPUT, TensorProto.FLOAT, ["N", 1000])],
        initializer=b.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="glimpse"
    )
    model.ir_version = 8
    return model, b.params


UNTRAINED_DESCRIPTION = (
    "UNTRAINED: ResNet50-v2 architecture with seeded random weights (seed {seed}); "
    "its predictions mean nothing. For cost, shape and throughput measurements only."
)


def write_resnet50_untrained(path: Path, seed: int = 0) -> int:
    """Write the untrained graph to `path`; returns its parameter count."""
    model, params = resnet50_v2_graph(seed)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".onnx.part")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return params


def copy_file(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)
