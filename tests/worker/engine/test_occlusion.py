"""Occlusion: the batched coalition form equals Captum's sliding-window loop done by hand."""

from __future__ import annotations

from math import ceil
from pathlib import Path

import numpy as np
import pytest
from onnx_models import interaction_model, load, tiny_card

from glimpse.errors import InvalidParams
from glimpse.params import parse_params
from worker.engine.explain import explain
from worker.engine.input_grid import InputGrid
from worker.engine.occlusion import sliding_windows
from worker.engine.perturb import background_image

HEIGHT, WIDTH = 16, 20


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    folder: Path = tmp_path_factory.mktemp("occlusion")
    masks = [np.zeros((HEIGHT, WIDTH), bool) for _ in range(3)]
    masks[0][:8, :9] = True
    masks[1][7:, 4:15] = True
    masks[2][2:14, 11:20] = True
    return load(interaction_model(folder / "m.onnx", masks), tiny_card(HEIGHT, WIDTH, 1))


def brute_force(img: np.ndarray, model, window: int, stride: int, background) -> np.ndarray:
    """Captum's loop: every window position, an explicit occluded image, one model call."""
    grid = InputGrid(model.card, img.shape[:2])
    bg = background_image(img, background)
    f_x = float(model(grid.image(img)[None])[0, 0])
    total = np.zeros(img.shape[:2])
    count = np.zeros(img.shape[:2])
    height, width = img.shape[:2]
    rows = max(1, ceil((height - window) / stride) + 1) if height > window else 1
    cols = max(1, ceil((width - window) / stride) + 1) if width > window else 1
    for i in range(rows):
        for j in range(cols):
            r0, c0 = i * stride, j * stride
            occluded = img.astype(np.float32)
            occluded[r0 : r0 + window, c0 : c0 + window] = bg[r0 : r0 + window, c0 : c0 + window]
            f = float(model(grid.image(occluded)[None])[0, 0])
            total[r0 : r0 + window, c0 : c0 + window] += f_x - f
            count[r0 : r0 + window, c0 : c0 + window] += 1
    assert (count > 0).all()
    return total / count


@pytest.mark.parametrize(("window", "stride"), [(8, 4), (6, 4), (5, 3), (4, 4), (32, 8)])
@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_matches_the_brute_force_loop(model, window: int, stride: int, batch_size: int) -> None:
    img = np.random.default_rng(2).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    params = parse_params(
        {
            "method": "occlusion",
            "occlusion": {"window": window, "stride": stride},
            "background": {"kind": "constant", "rgb": [30, 120, 250]},
            "targets": {"classes": [0]},
            "output_space": "logit",
            "quality": False,
        }
    )
    e = explain(img, model, params, batch_size=batch_size)
    expected = brute_force(img, model, window, stride, params.background)
    np.testing.assert_allclose(e.attribution()[0], expected, atol=1e-5)
    windows = sliding_windows(HEIGHT, WIDTH, window, stride)
    assert e.model_evaluations == windows.count + 1
    assert e.n_segments == int(e.segments.max()) + 1


def test_stride_cells_when_the_window_is_a_multiple_of_the_stride() -> None:
    w = sliding_windows(32, 48, 16, 8)
    assert w.count == 3 * 5
    assert int(w.segments.max()) + 1 == 4 * 6  # 8×8 cells
    assert (w.covered.sum(axis=1) == 4).all()


def test_more_windows_than_the_budget_is_a_clear_422(model) -> None:
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    params = parse_params(
        {"method": "occlusion", "occlusion": {"window": 2, "stride": 1}, "num_samples": 50}
    )
    with pytest.raises(InvalidParams) as info:
        explain(img, model, params, batch_size=8)
    assert info.value.status == 422
    assert "larger stride" in info.value.detail
    assert info.value.errors[0]["loc"] == ["params", "occlusion", "stride"]
