"""What a request may cost: budget, budget × superpixels, composed pixels, the model's scale."""

from __future__ import annotations

import pytest

from glimpse.cards import PRESETS, ModelCard
from glimpse.errors import InvalidParams, PayloadTooLarge
from glimpse.limits import (
    QUALITY_EVALUATIONS_PER_CLASS,
    check_budget,
    check_composed,
    check_design,
    check_request,
    check_scale,
    evaluations,
)
from glimpse.params import parse_params
from glimpse.settings import Settings
from worker.engine import quality

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
