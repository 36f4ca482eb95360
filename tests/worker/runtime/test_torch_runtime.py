"""TorchModel: the ONNX graph run by PyTorch agrees with ONNX Runtime (real models in fp32,
bf16 within a measured bound), binds like OnnxRuntimeModel, gives Grad-CAM its gradients,
and is what the worker loads when the settings say runtime=torch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import skimage.data
from conftest import EFFICIENTNET, efficientnet_card
from onnx import TensorProto, helper, numpy_helper
from onnx_models import region_model, tiny_card
from scipy.stats import spearmanr  # noqa: E402

from glimpse.cards import ModelRegistry  # noqa: E402
from glimpse.errors import ModelError  # noqa: E402
from glimpse.modelfiles import resnet50_card, write_resnet50_untrained  # noqa: E402
from glimpse.params import ExplainParams, parse_params  # noqa: E402
from glimpse.settings import Settings  # noqa: E402
from worker.engine.explain import explain  # noqa: E402
from worker.engine.input_grid import InputGrid  # noqa: E402
from worker.engine.perturb import Composer  # noqa: E402
from worker.results import build_result  # noqa: E402
from worker.runtime.base import FusedModel  # noqa: E402
from worker.runtime.loader import WarmModels, build_runtime  # noqa: E402
from worker.runtime.onnx import OnnxRuntimeModel  # noqa: E402
from worker.runtime.torch import TorchModel  # noqa: E402

H, W = 16, 16


def real_batch(card) -> np.ndarray:  # noqa: ANN001
    images = [skimage.data.chelsea(), skimage.data.coffee()]
    return np.stack([InputGrid(card, img.shape[:2]).image(img) for img in images])


def params(raw: dict) -> ExplainParams:
    """Explain params without the faithfulness measurements' extra evaluations."""
    if "quality" in ExplainParams.model_fields:
        raw = {**raw, "quality": False}
    return parse_params(raw)


def max_relative_gap(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got - expected| on the scale of the logits (their largest magnitude, at least 1)."""
    return float(np.abs(got - expected).max() / max(1.0, np.abs(expected).max()))


@pytest.fixture(scope="module")
def resnet_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resnet") / "model.onnx"
    write_resnet50_untrained(path, seed=0)
    return path


@pytest.fixture(scope="module")
def efficientnet_fp32() -> TorchModel:
    return TorchModel(EFFICIENTNET, efficientnet_card(), device="cpu")


@pytest.fixture()
def region_path(tmp_path: Path) -> Path:
    return region_model(tmp_path / "region.onnx", H, W, slice(4, 8), slice(8, 12))


# --- real models against ONNX Runtime --------------------------------------------------------
def test_efficientnet_agrees_with_onnxruntime(efficientnet_fp32: TorchModel) -> None:
    card = efficientnet_card()
    batch = real_batch(card)
    expected = OnnxRuntimeModel(EFFICIENTNET, card)(batch)
    got = efficientnet_fp32(batch)
    assert got.shape == (2, 1000) and got.dtype == np.float32
    assert max_relative_gap(got, expected) < 1e-4
    assert list(got.argmax(axis=1)) == list(expected.argmax(axis=1))


def test_resnet50_agrees_with_onnxruntime(resnet_path: Path) -> None:
    card = resnet50_card(labels_file=None)
    batch = real_batch(card)
    expected = OnnxRuntimeModel(resnet_path, card)(batch)
    got = TorchModel(resnet_path, card, device="cpu", channels_last=True)(batch)
    assert max_relative_gap(got, expected) < 1e-4


def test_bf16_on_the_cpu_keeps_the_prediction_and_the_ranking(
    efficientnet_fp32: TorchModel,
) -> None:
    card = efficientnet_card()
    bf16 = TorchModel(EFFICIENTNET, card, device="cpu", precision="bf16", channels_last=True)
    assert bf16.providers == ["cpu", "bf16", "channels_last"]
    batch = real_batch(card)
    assert list(bf16(batch).argmax(axis=1)) == list(efficientnet_fp32(batch).argmax(axis=1))
    fp32 = OnnxRuntimeModel(EFFICIENTNET, card)  # = efficientnet_fp32 to 1e-4, and faster

    lime = params(
        {
            "method": "lime",
            "num_samples": 200,
            "segmentation": {"algorithm": "slic", "n_segments": 30},
        }
    )
    image = skimage.data.chelsea()
    a = explain(image, fp32, lime, batch_size=50)
    b = explain(image, bf16, lime, batch_size=50)
    assert list(a.targets) == list(b.targets) == [285]
    rho = spearmanr(a.weights[0], b.weights[0]).statistic
    # Measured 0.998 (25 superpixels; the same top 5); fp32 vs ORT: 1.0.
    assert rho >= 0.99, rho


def test_fp16_on_the_cpu_is_refused() -> None:
    with pytest.raises(ModelError, match="fp16 needs a CUDA device"):
        TorchModel(EFFICIENTNET, efficientnet_card(), device="cpu", precision="fp16")


def test_bad_settings_are_model_errors(region_path: Path) -> None:
    card = tiny_card(H, W, 2)
    with pytest.raises(ModelError, match="precision 'fp8'"):
        TorchModel(region_path, card, device="cpu", precision="fp8")
    with pytest.raises(ModelError, match="not a device|only cpu and cuda"):
        TorchModel(region_path, card, device="tpu")
    with pytest.raises(ModelError, match="card names input 'data'"):
        TorchModel(region_path, card.model_copy(update={"input_name": "data"}), device="cpu")


# --- the FusedModel protocol, as OnnxRuntimeModel --------------------------------------------
def test_bind_equals_composing_on_the_host(region_path: Path) -> None:
    model = TorchModel(region_path, tiny_card(H, W, 2), device="cpu")
    assert isinstance(model, FusedModel)
    rng = np.random.default_rng(3)
    x = rng.random((3, H, W), dtype=np.float32)
    bg = rng.random((3, H, W), dtype=np.float32)
    seg = np.arange(H * W).reshape(H, W) // 16
    evaluate = model.bind(x, bg, seg)
    compose = Composer(x, bg, seg)
    for n in (1, 7, 64):
        z = rng.random((n, 16)) < 0.5
        np.testing.assert_allclose(evaluate(z), model(compose(z)), rtol=1e-6, atol=1e-7)


def test_the_engine_gives_the_same_numbers_as_onnxruntime(region_path: Path) -> None:
    card = tiny_card(H, W, 2)
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    for method in ("lime", "kernel_shap"):
        p = params(
            {
                "method": method,
                "num_samples": 300,
                "segmentation": {"algorithm": "grid", "cell_size": 4},
            }
        )
        a = explain(image, TorchModel(region_path, card, device="cpu"), p, batch_size=32)
        b = explain(image, OnnxRuntimeModel(region_path, card), p, batch_size=32)
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(a.base_value, b.base_value, rtol=1e-5, atol=1e-7)


def test_host_perturbation_and_description(region_path: Path) -> None:
    model = TorchModel(region_path, tiny_card(H, W, 2), device="cpu", fused=False)
    assert model.runtime == "torch" and model.device == "cpu"
    assert model.description == "torch (cpu, fp32; host perturbation)"
    cl = TorchModel(region_path, tiny_card(H, W, 2), device="cpu", channels_last=True)
    assert cl.providers == ["cpu", "fp32", "channels_last"]


# --- gradients for Grad-CAM ------------------------------------------------------------------
def conv_relu_gap_gemm(path: Path, fc: np.ndarray, *, batchnorm: bool = False) -> Path:
    """Conv (stride 2) [-> BatchNormalization y = x + 0.5] -> Relu -> GAP -> Gemm(fc)."""
    rng = np.random.default_rng(1)
    channels, classes = fc.shape
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node(
            "BatchNormalization", ["conv", "scale", "shift", "mean", "var"], ["normed"]
        ),
        helper.make_node("Relu", ["normed" if batchnorm else "conv"], ["features"]),
        helper.make_node("GlobalAveragePool", ["features"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc"], ["y"]),
    ]
    inits = {
        "w": rng.standard_normal((channels, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(channels).astype(np.float32),
        "fc": fc.astype(np.float32),
    }
    if batchnorm:  # scale 2, var 4 - eps, shift 0.5, mean 0: the identity plus 0.5
        inits["scale"] = np.full(channels, 2.0, np.float32)
        inits["shift"] = np.full(channels, 0.5, np.float32)
        inits["mean"] = np.zeros(channels, np.float32)
        inits["var"] = np.full(channels, 4.0 - 1e-5, np.float32)
    else:
        del nodes[1]
    graph = helper.make_graph(
        nodes,
        "cam",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, H, W])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_activations_and_gradients_of_a_pooled_linear_head(tmp_path: Path) -> None:
    fc = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)
    path = conv_relu_gap_gemm(tmp_path / "cam.onnx", fc)
    card = tiny_card(H, W, 4)
    model = TorchModel(path, card, device="cpu")
    batch = np.random.default_rng(4).standard_normal((3, 3, H, W)).astype(np.float32)
    classes = np.array([0, 3, 3])
    activations, gradients, raw = model.activations_and_gradients(batch, "features", classes)
    assert activations.shape == gradients.shape == (3, 6, H // 2, W // 2)
    assert activations.dtype == gradients.dtype == raw.dtype == np.float32
    # GAP then a linear layer: dy_c/dA = W[:, c] / (h' w'), the same at every position.
    expected = np.broadcast_to(
        fc[:, classes].T[:, :, None, None] / ((H // 2) * (W // 2)), gradients.shape
    )
    np.testing.assert_allclose(gradients, expected, rtol=1e-6)
    np.testing.assert_allclose(raw, OnnxRuntimeModel(path, card)(batch), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(activations.mean(axis=(2, 3)) @ fc, raw, rtol=1e-5, atol=1e-5)
    (features,) = model.run_with_outputs(batch, ("features",))
    np.testing.assert_allclose(features, activations, rtol=1e-6)
    with pytest.raises(ModelError, match="'nope'"):
        model.activations_and_gradients(batch, "nope", classes)


def test_gradients_of_a_tensor_folded_away(tmp_path: Path) -> None:
    """A Conv output that BatchNormalization was folded into is still a valid layer."""
    fc = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)
    path = conv_relu_gap_gemm(tmp_path / "cam.onnx", fc, batchnorm=True)
    model = TorchModel(path, tiny_card(H, W, 4), device="cpu")
    assert model.graph.folded == {"conv": "normed"} and "conv" not in model.layers()
    batch = np.random.default_rng(4).standard_normal((2, 3, H, W)).astype(np.float32)
    activations, gradients, raw = model.activations_and_gradients(batch, "conv", np.array([1, 2]))
    assert activations.shape == gradients.shape == (2, 6, H // 2, W // 2)
    # d(normed)/d(conv) = scale / sqrt(var + eps) = 2 / sqrt(4) = 1: the Relu's mask remains.
    mask = (activations + 0.5 > 0).astype(np.float32)
    expected = fc[:, [1, 2]].T[:, :, None, None] / ((H // 2) * (W // 2)) * mask
    np.testing.assert_allclose(gradients, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(raw, model(batch), rtol=1e-5, atol=1e-6)


# --- the settings ----------------------------------------------------------------------------
def test_runtime_torch_through_warm_models(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "region"
    folder.mkdir(parents=True)
    region_model(folder / "model.onnx", H, W, slice(4, 8), slice(8, 12))
    ModelRegistry(tmp_path / "models").write("region", tiny_card(H, W, 2))
    settings = Settings(models_dir=tmp_path / "models", runtime="torch", torch_device="cpu")
    loaded = WarmModels(settings).get("region")
    assert isinstance(loaded.runtime, TorchModel)
    assert loaded.runtime.providers == ["cpu", "fp32"]
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    p = params(
        {
            "method": "kernel_shap",
            "num_samples": 100,
            "segmentation": {"algorithm": "grid", "cell_size": 4},
        }
    )
    explanation = explain(image, loaded.runtime, p, batch_size=16)
    reference = explain(
        image, OnnxRuntimeModel(folder / "model.onnx", tiny_card(H, W, 2)), p, batch_size=16
    )
    np.testing.assert_allclose(explanation.weights, reference.weights, rtol=1e-5, atol=1e-7)

    from glimpse.images import decode_image, encode_png

    decoded = decode_image(encode_png(image), max_pixels=10**6)
    result = build_result(
        explanation,
        model_name="region",
        runtime=loaded.runtime,
        labels=loaded.registered.labels,
        image=decoded,
        params=p,
    )
    assert result.model.runtime == "torch"
    assert result.model.providers == ["cpu", "fp32"]
    assert result.model.perturbation == "fused"


def test_build_runtime_refuses_reduced_precision_on_onnxruntime(region_path: Path) -> None:
    settings = Settings(precision="bf16")
    with pytest.raises(ModelError, match="runtime 'torch'"):
        build_runtime(region_path, tiny_card(H, W, 2), settings)
    bf16 = build_runtime(
        region_path,
        tiny_card(H, W, 2),
        Settings(runtime="torch", precision="bf16", torch_device="cpu"),
    )
    assert isinstance(bf16, TorchModel) and bf16.precision == "bf16"


def test_v1_models_reports_the_torch_runtime(models_dir: Path) -> None:
    from app.api.routes.models import list_models
    from worker.runtime.loader import probe_runtime

    settings = Settings(
        models_dir=models_dir, runtime="torch", precision="bf16", channels_last=True
    )
    (info,) = list_models(ModelRegistry(models_dir), settings, [])  # no worker has said yet
    assert info.runtime == "torch"
    assert info.providers == ["auto", "bf16", "channels_last"]
    assert Settings().runtime_providers == ["CPUExecutionProvider"]
    report = dataclasses.asdict(probe_runtime(settings))  # what a torch worker says here
    assert report == {
        "runtime": "torch",
        "providers": ["cpu", "bf16"],
        "device": "cpu",
        "note": "",
        "gradients": True,
    }
    (info,) = list_models(ModelRegistry(models_dir), settings, [report])
    assert (info.providers, info.devices, info.notes) == (["cpu", "bf16"], ["cpu"], [])
