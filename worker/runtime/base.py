"""The runtime contract: what the engine asks of a model runtime, as Protocols.

`Model` is all every method needs: a card (how to build the input grid, what the outputs
are) and a batch call on that grid. `FusedModel` composes perturbed images itself, inside
its graph and on its device (worker/runtime/fused.py), from the coalitions alone.
`OutputsModel` can return intermediate tensors beside its outputs (exact Grad-CAM at a
global-average-pool + linear head); `GradientModel` has autodiff (Grad-CAM anywhere,
Integrated Gradients, XRAI).
ONNX Runtime (worker/runtime/onnx.py) is a FusedModel, an OutputsModel and a GradientSource
(it hands over the same file on PyTorch); the PyTorch runtime (worker/runtime/torch.py) is a
FusedModel, an OutputsModel and a GradientModel. tests/worker/runtime/test_contract.py runs
the contract against both. `RuntimeInfo` is what a result says of a runtime.

Nothing here imports a runtime: the engine depends on this module only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from glimpse.cards import ModelCard


class Model(Protocol):
    card: ModelCard

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """batch: (n, 3, h, w) float32 on the input grid -> (n, num_classes) raw outputs."""
        ...


@runtime_checkable
class FusedModel(Model, Protocol):
    """A model that composes perturbed images itself (inside its graph, on its device)."""

    fused: bool

    def bind(
        self, image: np.ndarray, background: np.ndarray, segments: np.ndarray
    ) -> Callable[[np.ndarray], np.ndarray]:
        """(3, h, w), (3, h, w), (h, w) -> f(z: (n, m) {0,1}) -> (n, num_classes) raw outputs."""
        ...


class ModelFile(Model, Protocol):
    """A model loaded from a file (the engine reads its graph: Grad-CAM's head)."""

    path: Path


@runtime_checkable
class OutputsModel(ModelFile, Protocol):
    """A model whose intermediate tensors can be fetched beside its outputs."""

    def run_with_outputs(self, batch: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
        """batch -> the tensors named, in order."""
        ...


@runtime_checkable
class GradientModel(ModelFile, Protocol):
    """A model with autodiff: activations of a tensor and the gradients of chosen outputs."""

    def activations_and_gradients(
        self, batch: np.ndarray, layer: str, classes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """batch (n, 3, h, w), tensor `layer`, classes (n,) -> (A, ∂Σ raw[i, classes[i]]/∂A,
        raw outputs)."""
        ...

    def input_gradients(
        self, batch: np.ndarray, classes: np.ndarray, output_space: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """batch (n, 3, h, w), classes (n,), "probability" or "logit" -> (∂s_i/∂batch[i]
        (n, 3, h, w), s (n,)) where s_i is row i's output for classes[i] in that space (a
        logits model's softmax for "probability"; a probabilities model's log for "logit")."""
        ...


@runtime_checkable
class GradientSource(ModelFile, Protocol):
    """A model that can hand over a GradientModel of itself (None: no autodiff here)."""

    def gradients(self) -> GradientModel | None: ...


class RuntimeInfo(Protocol):
    """What a result says of the runtime that evaluated the model."""

    runtime: str
    providers: list[str]
    fused: bool


class ModelRuntime(Model, Protocol):
    """A model runtime as the worker and the CLI hold one: a Model that says what it is."""

    runtime: str
    providers: list[str]
    fused: bool
