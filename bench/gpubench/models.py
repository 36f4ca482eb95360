"""The benchmarked graphs, their cards and models folders, and LIME's batches on the device.

`resnet50`: the ResNet50-v2 architecture with seeded untrained weights
(glimpse/modelfiles.py), what the throughput targets are about. `tiny`: a five-layer
convolutional classifier of the same input and output, for the CPU dry run. The agreement
figures use the shared EfficientNet-Lite0 (real ImageNet weights).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from bench.run import REPO, SHARED, efficientnet_card, prepare_models
from glimpse.cards import ModelCard, ModelRegistry
from glimpse.modelfiles import RESNET50_OUTPUT, resnet50_card, write_resnet50_untrained
from glimpse.params import Quickshift
from worker.engine.input_grid import InputGrid
from worker.engine.lime import Lime
from worker.engine.segment import segment

#: Where bench/gpu_wheels.sh puts the EfficientNet for the device run (an ignored file that
#: `carry` names), then the shared models folder beside the repository.
EFFICIENTNET_PLACES = (
    REPO / "bench" / "models" / "efficientnet-lite0.onnx",
    SHARED / "efficientnet-lite0.onnx",
)


def efficientnet_path() -> Path | None:
    return next((p for p in EFFICIENTNET_PLACES if p.is_file()), None)


def write_tiny(path: Path, seed: int = 0) -> None:
    """A small classifier of ResNet50's interface (input `data` (N, 3, 224, 224), output
    RESNET50_OUTPUT (N, 1000)): Conv+BN+Relu twice, a residual 3x3, global pooling, Gemm;
    seeded He-normal weights. Cost: about 0.03 GFLOP per image."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(x: str, name: str, c_in: int, c_out: int, k: int, stride: int) -> str:
        w = rng.standard_normal((c_out, c_in, k, k)) * math.sqrt(2.0 / (c_in * k * k))
        nodes.append(
            helper.make_node(
                "Conv",
                [x, const(f"{name}_w", w)],
                [f"{name}_out"],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
            )
        )
        return f"{name}_out"

    def bn_relu(x: str, name: str, channels: int) -> str:
        params = [np.ones(channels), np.zeros(channels), np.zeros(channels), np.ones(channels)]
        names = [const(f"{name}_{i}", p) for i, p in enumerate(params)]
        nodes.append(helper.make_node("BatchNormalization", [x, *names], [f"{name}_bn"]))
        nodes.append(helper.make_node("Relu", [f"{name}_bn"], [f"{name}_relu"]))
        return f"{name}_relu"

    x = bn_relu(conv("data", "c0", 3, 16, 7, 4), "b0", 16)
    x = bn_relu(conv(x, "c1", 16, 32, 3, 2), "b1", 32)
    h = conv(x, "c2", 32, 32, 3, 1)
    nodes.append(helper.make_node("Add", [h, x], ["res"]))
    nodes.append(helper.make_node("GlobalAveragePool", ["res"], ["pool"]))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], axis=1))
    w = const("fc_w", rng.standard_normal((1000, 32)) * math.sqrt(2.0 / 32))
    b = const("fc_b", np.zeros(1000))
    nodes.append(helper.make_node("Gemm", ["flat", w, b], [RESNET50_OUTPUT], transB=1))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info(RESNET50_OUTPUT, TensorProto.FLOAT, ["N", 1000])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def register(models_dir: Path, which: str) -> tuple[str, Path, ModelCard]:
    """`which` ("resnet50" or "tiny") registered in `models_dir`: (name, onnx path, card)."""
    if which == "resnet50":
        name = prepare_models(models_dir, "resnet50")
    else:
        name = "tiny-untrained"
        folder = models_dir / name
        write_tiny(folder / "model.onnx")
        (folder / "labels.txt").write_text("".join(f"class {i}\n" for i in range(1000)))
        ModelRegistry(models_dir).write(name, resnet50_card(description="UNTRAINED tiny net"))
    registered = ModelRegistry(models_dir).get(name)
    return name, registered.onnx_path, registered.card


def write_model(which: str, path: Path) -> ModelCard:
    """Only the graph of `which`, at `path`; its card."""
    if which == "resnet50":
        write_resnet50_untrained(path, seed=0)
    else:
        write_tiny(path)
    return resnet50_card()


def agreement_card() -> ModelCard:
    return efficientnet_card()


def lime_batches(
    card: ModelCard, image: np.ndarray, count: int, size: int, device: torch.device
) -> list[torch.Tensor]:
    """`count` distinct batches of `size` images as LIME evaluates them (quickshift
    superpixels of `image` hidden behind black, coalitions seeded), composed on `device`,
    fp32 NCHW: the bare model is timed on real inputs, never on zeros, and rotates among
    them so that no batch is served from the cache of the previous one."""
    segments = segment(image, Quickshift())
    grid = InputGrid(card, image.shape[:2])
    x = torch.from_numpy(grid.image(image)).to(device)
    bg = torch.from_numpy(grid.image(np.zeros(image.shape))).to(device)
    labels = torch.from_numpy(grid.labels(segments).astype(np.int64)).to(device)
    m = int(segments.max()) + 1
    z = Lime().sample(m, count * size, np.random.default_rng(0)).z
    mask = torch.from_numpy(z.astype(np.float32)).to(device)[:, labels]  # (n, h, w)
    batch = torch.addcmul(bg[None], mask[:, None], (x - bg)[None])  # bg + (x - bg) * z
    return list(batch.split(size))
