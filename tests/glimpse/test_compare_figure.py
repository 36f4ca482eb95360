"""The comparison figure: the photo, then each method's map on its own scale, its numbers
under it, one row per explained class."""

from __future__ import annotations

import numpy as np

from glimpse.compare_figure import PANEL_SIDE, notes, render_comparison
from glimpse.result import ComparedClass, ComparedMethod, Comparison, Quality
from glimpse.shrink import fitted_size

H, W = 120, 180


def comparison(methods: list[str], k: int) -> Comparison:
    quality = Quality(deletion_auc=0.125, insertion_auc=0.5, steps=20)
    return Comparison(
        methods=[
            ComparedMethod(
                method=m,
                seconds=1.5,
                model_evaluations=100,
                explanations=[
                    ComparedClass(class_index=c, importance=[0.0], quality=quality)
                    for c in range(k)
                ],
            )
            for m in methods
        ],
        agreement=[],
    )


def test_each_map_is_drawn_on_its_own_scale_in_its_panel() -> None:
    photo = np.full((H, W, 3), 128, np.uint8)
    maps = np.zeros((2, 1, H, W), np.float32)
    maps[0, 0] = 5.0  # evidence for, in large units
    maps[1, 0] = -1e-6  # evidence against, in tiny ones: as strong on its own scale
    found = render_comparison(photo, maps, comparison(["lime", "gradcam"], 1), ["cat"])
    ph, pw = fitted_size(H, W, PANEL_SIDE)
    assert found.shape[1] == 10 + 3 * (pw + 10)
    top = 10 + 22 + 22  # margin, the column titles, the row's label
    first = found[top + ph // 2, 10 + (pw + 10) + pw // 2].astype(int)
    second = found[top + ph // 2, 10 + 2 * (pw + 10) + pw // 2].astype(int)
    assert first[0] > first[2] + 100  # red
    assert second[2] > second[0] + 100  # blue, as saturated
    photo_px = found[top + ph // 2, 10 + pw // 2]
    np.testing.assert_array_equal(photo_px, [128, 128, 128])


def test_one_row_per_class_and_the_numbers_under_each_panel() -> None:
    photo = np.zeros((H, W, 3), np.uint8)
    maps = np.ones((3, 2, H // 2, W // 2), np.float32)  # maps at any size: drawn at panels'
    one = render_comparison(photo, maps[:, :1], comparison(["a", "b", "c"], 1), ["x"])
    two = render_comparison(photo, maps, comparison(["a", "b", "c"], 2), ["x", "y"])
    assert two.shape[1] == one.shape[1] and two.shape[0] > one.shape[0] + fitted_size(H, W, 220)[0]
    lines = notes(comparison(["lime"], 1), 0)
    assert lines == [["del 0.125  ins 0.500", "1.50 s, 100 evals"]]
