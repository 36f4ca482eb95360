"""The named colour maps (glimpse/colormaps.py): ends, middle, magnitude, transparency."""

from __future__ import annotations

import numpy as np
import pytest

from glimpse.colormaps import COLOR_MAP_NAMES, COLOR_MAPS, color_map


def test_every_name_has_a_map() -> None:
    assert set(COLOR_MAP_NAMES) == set(COLOR_MAPS)
    with pytest.raises(ValueError, match="unknown colour map 'jet'"):
        color_map("jet")


@pytest.mark.parametrize(
    ("name", "low", "middle", "high"),
    [
        ("red_blue", (5, 48, 97), (247, 247, 247), (103, 0, 31)),
        ("pink_green", (142, 1, 82), (247, 247, 247), (39, 100, 25)),
    ],
)
def test_a_diverging_map_runs_from_negative_through_white(name, low, middle, high) -> None:
    rgb = COLOR_MAPS[name].colors(np.array([-1.0, 0.0, 1.0, 5.0]))
    np.testing.assert_allclose(rgb, [low, middle, high, high])  # beyond 1: the end


@pytest.mark.parametrize("name", ["viridis", "grays"])
def test_a_sequential_map_reads_the_magnitude(name: str) -> None:
    cmap = COLOR_MAPS[name]
    np.testing.assert_allclose(cmap.colors(np.array([-0.3])), cmap.colors(np.array([0.3])))
    assert cmap.colors(np.array(0.0)).sum() < cmap.colors(np.array(1.0)).sum()  # dark to light
    np.testing.assert_allclose(COLOR_MAPS["grays"].colors(np.array(0.5)), [127.5] * 3)


def test_the_transparent_map_is_one_colour_per_sign() -> None:
    cmap = COLOR_MAPS["red_transparent_blue"]
    assert cmap.transparent
    blue, red = (30, 136, 229), (255, 13, 87)
    np.testing.assert_array_equal(cmap.colors(np.array([-0.1, 0.0, 0.7])), [blue, red, red])


def test_edges_are_strong_colours_of_the_map() -> None:
    np.testing.assert_allclose(COLOR_MAPS["red_blue"].edge(1), (178, 24, 43))
    np.testing.assert_allclose(COLOR_MAPS["red_blue"].edge(-1), (33, 102, 172))
    np.testing.assert_allclose(COLOR_MAPS["viridis"].edge(-1), (253, 231, 37))
