"""ONNX Runtime: one warm InferenceSession per model, called as `f(batch) -> scores`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from glimpse.cards import ModelCard
from glimpse.errors import ModelError


class OnnxRuntimeModel:
    runtime = "onnxruntime"

    def __init__(
        self,
        path: Path,
        card: ModelCard,
        *,
        providers: list[str] | None = None,
        intra_op_threads: int = 0,
    ) -> None:
        self.card = card
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        available = set(ort.get_available_providers())
        chosen = [p for p in (providers or ["CPUExecutionProvider"]) if p in available]
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=chosen or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load {path}: {exc}") from exc
        self.providers = self.session.get_providers()
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if card.input_name not in inputs or card.output_name not in outputs:
            raise ModelError(
                f"{path}: card names input {card.input_name!r} / output {card.output_name!r}, "
                f"graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}"
            )

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run([self.card.output_name], {self.card.input_name: batch})[0]
        return np.asarray(out).reshape(len(batch), -1)
