"""What a request may ask and cost: the image's size, classes, budget, grid and occlusion
counts, budget × superpixels, composed pixels, the model's scale."""

from __future__ import annotations

import numpy as np
import pytest

from glimpse.cards import PRESETS, ModelCard
from glimpse.errors import InvalidParams, PayloadTooLarge
from glimpse.limits import (
    MAX_SEGMENTS,
    MIN_IMAGE_SIDE,
    OCCLUSION_DESIGN_SHARE,
    QUALITY_EVALUATIONS_PER_CLASS,
    check_budget,
    check_composed,
    check_design,
    check_request,
    check_scale,
    evaluations,
    grid_cells,
    occlusion_cells,
    occlusion_windows,
)
from glimpse.params import Grid, parse_params
from glimpse.settings import Settings
from worker.engine import occlusion, quality, segment

CROPPING = ModelCard(input_name="x", output_name="y", num_classes=10, **PRESETS["imagenet"])  # type: ignore[arg-type]
SQUASH = ModelCard(input_name="x", output_name="y", num_classes=10, **PRESETS["imagenet-squash"])  # type: ignore[arg-type]


def test_the_defaults_allow_every_budget_of_the_contract() -> None:
    settings = Settings()
    assert settings.max_num_samples == 100_000
    check_request(parse_params({"num_samples": 100_000}), CROPPING, 480, 640, settings)
    check_request(parse_params({"num_samples": "auto"}), CROPPING, 4000, 6000, settings)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"num_samples": 501}, "num_samples"),
        ({"num_samples": "auto", "max_samples": 501}, "max_samples"),
    ],
)
def test_the_budget_limit_names_the_param_it_caps(raw: dict, key: str) -> None:
    with pytest.raises(InvalidParams, match="GLIMPSE_MAX_NUM_SAMPLES") as info:
        check_budget(parse_params(raw), 500)
    assert info.value.errors == [{"loc": ["params", key], "msg": "must be at most 500"}]
    check_budget(parse_params({**raw, key: 500}), 500)


def test_the_design_limit_counts_budget_times_superpixels_of_lime_and_kernel_shap() -> None:
    params = parse_params({"num_samples": 1000})
    check_design(params, 200, 200_000)
    with pytest.raises(InvalidParams, match="1000 samples × 201 superpixels = 201000 cells"):
        check_design(params, 201, 200_000)
    with pytest.raises(InvalidParams):
        check_design(parse_params({"num_samples": 1000, "method": "kernel_shap"}), 201, 200_000)
    for method in ("partition_shap", "occlusion", "gradcam"):  # no design held in memory
        check_design(parse_params({"num_samples": 1000, "method": method}), 10**6, 200_000)


def test_a_grid_is_counted_before_the_job_is_queued() -> None:
    settings = Settings(max_design_size=1_000_000)
    grid = {"algorithm": "grid", "cell_size": 10}
    check_request(
        parse_params({"num_samples": 1000, "segmentation": grid}), SQUASH, 300, 300, settings
    )
    with pytest.raises(InvalidParams, match="1000 samples × 1023 superpixels"):
        check_request(
            parse_params({"num_samples": 1000, "segmentation": grid}), SQUASH, 310, 330, settings
        )


def test_quality_evaluations_match_the_engine() -> None:
    assert QUALITY_EVALUATIONS_PER_CLASS == 2 * (quality.STEPS - 1) + 1
    assert evaluations(parse_params({"num_samples": 100, "quality": False})) == 100
    assert evaluations(parse_params({"num_samples": 100, "targets": {"top_k": 3}})) == 100 + 3 * 39
    classes = parse_params(
        {"num_samples": 100, "targets": {"classes": [1, 2]}, "method": "gradcam"}
    )
    assert evaluations(classes) == 1 + 2 * 39


def test_composed_pixels_count_only_for_inpainting() -> None:
    inpaint = parse_params(
        {"num_samples": 1000, "quality": False, "background": {"kind": "inpaint_ns"}}
    )
    check_composed(inpaint, 300_000, 300_000_000)
    with pytest.raises(InvalidParams, match="1000 evaluations × 300001 pixels") as info:
        check_composed(inpaint, 300_001, 300_000_000)
    assert info.value.errors[0]["loc"] == ["params", "num_samples"]  # type: ignore[index]
    check_composed(parse_params({"num_samples": 100_000}), 40_000_000, 300_000_000)


def test_the_model_scale_of_an_extreme_aspect_ratio_is_too_large() -> None:
    check_scale(CROPPING, 4000, 6000, 40_000_000)
    check_scale(SQUASH, 1, 40_000, 40_000_000)
    with pytest.raises(PayloadTooLarge, match="40000x1 image would be 10240000x256"):
        check_scale(CROPPING, 1, 40_000, 40_000_000)


def refused(raw: dict, height: int, width: int, settings: Settings | None = None) -> InvalidParams:
    with pytest.raises(InvalidParams) as info:
        check_request(parse_params(raw), SQUASH, height, width, settings or Settings())
    assert info.value.status == 422 and info.value.errors
    return info.value


@pytest.mark.parametrize(
    "method", ["lime", "kernel_shap", "partition_shap", "gradcam", "occlusion"]
)
@pytest.mark.parametrize(("height", "width"), [(1, 1), (31, 640), (480, 31)])
def test_an_image_below_the_minimum_side_is_refused_for_every_method(
    method: str, height: int, width: int
) -> None:
    assert MIN_IMAGE_SIDE == 32
    error = refused({"method": method}, height, width)
    assert error.errors == [
        {"loc": ["image"], "msg": f"{width}x{height} pixels: each side must be at least 32"}
    ]
    assert f"{width}x{height} pixels" in error.detail and "at least 32 pixels" in error.detail


def test_an_image_of_the_minimum_side_is_accepted() -> None:
    for method in ("lime", "kernel_shap", "partition_shap", "gradcam"):
        check_request(parse_params({"method": method}), SQUASH, 32, 32, Settings())
    occluded = {"method": "occlusion", "occlusion": {"window": 16, "stride": 16}}
    check_request(parse_params(occluded), SQUASH, 32, 32, Settings())


def test_classes_beyond_the_model_are_refused() -> None:
    check_request(parse_params({"targets": {"classes": [9]}}), SQUASH, 64, 64, Settings())
    error = refused({"targets": {"classes": [3, 10, 12]}, "model": "m"}, 64, 64)
    assert error.errors == [{"loc": ["params", "targets", "classes"], "msg": "must be < 10"}]
    assert "[10, 12] out of range; model 'm' has 10 classes (0..9)" in error.detail


def test_max_segments_is_the_engines() -> None:
    assert MAX_SEGMENTS == segment.MAX_SEGMENTS


@pytest.mark.parametrize(("height", "width", "cell"), [(32, 32, 2), (300, 451, 32), (33, 47, 16)])
def test_grid_cells_are_the_engines_count(height: int, width: int, cell: int) -> None:
    image = np.zeros((height, width, 3), np.uint8)
    labels = segment.segment(image, Grid(cell_size=cell))
    assert grid_cells(height, width, cell) == int(labels.max()) + 1


@pytest.mark.parametrize("method", ["lime", "kernel_shap", "partition_shap"])
def test_a_grid_of_one_cell_is_refused(method: str) -> None:
    grid = {"algorithm": "grid", "cell_size": 64}
    error = refused({"method": method, "segmentation": grid}, 64, 40)
    assert error.errors == [
        {"loc": ["params", "segmentation", "cell_size"], "msg": "must be below 64 on this image"}
    ]
    check_request(  # 63 cuts the longer side in two
        parse_params({"method": method, "segmentation": {**grid, "cell_size": 63}}),
        SQUASH,
        64,
        40,
        Settings(),
    )


@pytest.mark.parametrize("method", ["lime", "kernel_shap", "partition_shap"])
def test_a_grid_of_too_many_cells_is_refused_with_a_cell_size_that_fits(method: str) -> None:
    grid = {"algorithm": "grid", "cell_size": 2}
    error = refused({"method": method, "num_samples": 10, "segmentation": grid}, 300, 451)
    assert error.errors is not None
    assert error.errors[0]["loc"] == ["params", "segmentation", "cell_size"]
    assert "33900 cells" in error.detail and f"at most {MAX_SEGMENTS}" in error.detail
    fits = int(error.errors[0]["msg"].split()[4])
    assert grid_cells(300, 451, fits) <= MAX_SEGMENTS < grid_cells(300, 451, fits - 1)
    assert f"a cell_size of at least {fits}" in error.detail
    ok = {"method": method, "num_samples": 10, "segmentation": {**grid, "cell_size": fits}}
    check_request(parse_params(ok), SQUASH, 300, 451, Settings())


def test_methods_with_regions_of_their_own_ignore_the_grid() -> None:
    grid = {"algorithm": "grid", "cell_size": 4096}
    check_request(
        parse_params({"method": "gradcam", "segmentation": grid}), SQUASH, 64, 64, Settings()
    )
    occluded = {"method": "occlusion", "segmentation": {**grid, "cell_size": 2}}
    check_request(parse_params(occluded), SQUASH, 300, 451, Settings())


@pytest.mark.parametrize(
    ("height", "width", "window", "stride"),
    [
        (300, 451, 32, 16),
        (64, 64, 100, 100),  # a window larger than the image: clipped to it
        (100, 100, 10, 60),  # a stride larger than the window: gaps, starts past the end
        (100, 37, 50, 60),
        (97, 101, 24, 7),  # not a multiple: finer cells
        (32, 40, 32, 16),  # one window along one axis
        (1, 9, 2, 1),
    ],
)
def test_occlusion_windows_and_cells_are_the_engines(
    height: int, width: int, window: int, stride: int
) -> None:
    engine = occlusion.sliding_windows(height, width, window, stride)
    windows = occlusion_windows(height, window, stride) * occlusion_windows(width, window, stride)
    cells = occlusion_cells(height, window, stride) * occlusion_cells(width, window, stride)
    assert (windows, cells) == engine.covered.shape


def test_occlusion_over_the_budget_is_refused_with_a_stride_that_fits() -> None:
    """README: windows + 1 ≤ budget, else 422 suggesting a larger stride."""
    raw = {"method": "occlusion", "occlusion": {"window": 8, "stride": 4}, "num_samples": 100}
    error = refused(raw, 300, 451)
    assert error.errors == [
        {"loc": ["params", "occlusion", "stride"], "msg": "8288 windows exceed the budget of 100"}
    ]
    assert "needs 8289 evaluations" in error.detail and "raise num_samples to 8289" in error.detail
    fits = int(error.detail.split("at least ")[1].split(")")[0])
    count = occlusion.sliding_windows(300, 451, 8, fits).count
    assert count + 1 <= 100 < occlusion.sliding_windows(300, 451, 8, fits - 1).count + 1
    check_request(
        parse_params({**raw, "occlusion": {"window": 8, "stride": fits}}),
        SQUASH,
        300,
        451,
        Settings(),
    )
    check_request(parse_params({**raw, "num_samples": 8289}), SQUASH, 300, 451, Settings())
    auto = refused({**raw, "num_samples": "auto", "max_samples": 100}, 300, 451)
    assert "max_samples is 100" in auto.detail


def test_occlusion_of_one_window_is_refused() -> None:
    raw = {"method": "occlusion", "occlusion": {"window": 64, "stride": 16}}
    error = refused(raw, 64, 48)
    assert error.errors == [
        {"loc": ["params", "occlusion", "window"], "msg": "must be below 64 here"}
    ]
    check_request(
        parse_params({**raw, "occlusion": {"window": 63, "stride": 16}}), SQUASH, 64, 48, Settings()
    )


def test_occlusions_matrix_counts_against_the_design_limit() -> None:
    raw = {"method": "occlusion", "occlusion": {"window": 8, "stride": 4}, "num_samples": 10_000}
    shape = occlusion.sliding_windows(300, 451, 8, 4).covered.shape
    entries = shape[0] * shape[1]
    limit = entries // OCCLUSION_DESIGN_SHARE
    check_request(parse_params(raw), SQUASH, 300, 451, Settings(max_design_size=limit + 1))
    error = refused(raw, 300, 451, Settings(max_design_size=limit - 1))
    assert error.errors is not None and error.errors[0]["loc"] == ["params", "occlusion", "stride"]
    assert f"{shape[0]} windows × {shape[1]} cells" in error.detail
    assert "GLIMPSE_MAX_DESIGN_SIZE" in error.detail
    check_request(parse_params(raw), SQUASH, 300, 451, Settings())  # the default: 160M entries


def test_gradient_passes_are_steps_times_noisy_copies_times_targets() -> None:
    settings = Settings(max_num_samples=1000)
    ok = {"method": "xrai", "integrated_gradients": {"steps": 100, "noise_samples": 3}}
    check_request(parse_params({**ok, "targets": {"top_k": 2}}), CROPPING, 480, 640, settings)
    assert evaluations(parse_params({**ok, "quality": False})) == 100 * 3 + 2
    with pytest.raises(InvalidParams, match="= 1200 forward\\+backward passes") as info:
        check_request(parse_params({**ok, "targets": {"top_k": 4}}), CROPPING, 480, 640, settings)
    assert info.value.errors[0]["loc"] == ["params", "integrated_gradients"]


@pytest.mark.parametrize("method", ["integrated_gradients", "xrai"])
def test_gradient_methods_need_a_fixed_baseline(method: str) -> None:
    params = parse_params({"method": method, "background": {"kind": "inpaint_telea"}})
    with pytest.raises(InvalidParams, match="one fixed baseline") as info:
        check_request(params, CROPPING, 480, 640, Settings())
    assert info.value.errors[0]["loc"] == ["params", "background"]
    for background in ({"kind": "blur"}, {"kind": "noise"}, {"kind": "mean"}):
        check_request(
            parse_params({"method": method, "background": background}),
            CROPPING,
            480,
            640,
            Settings(),
        )
