"""The contract's `params`: defaults, unknown keys, ranges, the cache key."""

from __future__ import annotations

import numpy as np
import pytest

from glimpse.errors import InvalidParams
from glimpse.params import (
    Classes,
    ConstantBackground,
    ExplainParams,
    Quickshift,
    TopK,
    parse_params,
)


def test_defaults_are_filled_in() -> None:
    p = parse_params(None)
    assert p == parse_params({})
    assert p.model is None and p.method == "lime"
    assert p.targets == TopK(top_k=1)
    assert p.num_samples == 1000 and p.batch_size is None
    assert p.segmentation == Quickshift(kernel_size=4, max_dist=200, ratio=0.2)
    assert p.background == ConstantBackground(rgb=(0, 0, 0))
    assert (p.lime.kernel_width, p.lime.alpha, p.lime.keep_probability) == (0.25, 1.0, 0.5)
    assert p.lime.surrogate == "logistic"
    assert p.output_space == "probability" and p.seed == 0 and p.cache is True
    dumped = p.model_dump(mode="json")
    assert dumped["segmentation"] == {
        "algorithm": "quickshift",
        "kernel_size": 4,
        "max_dist": 200,
        "ratio": 0.2,
    }
    assert dumped["targets"] == {"top_k": 1}


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        ({"colour": 1}, ["params", "colour"]),
        ({"lime": {"kernel_width": 0.2, "extra": 1}}, ["params", "lime", "extra"]),
        (
            {"segmentation": {"algorithm": "grid", "n_segments": 3}},
            ["params", "segmentation", "grid", "n_segments"],
        ),
    ],
)
def test_unknown_keys_are_rejected_with_their_location(raw: dict, loc: list[str]) -> None:
    with pytest.raises(InvalidParams) as info:
        parse_params(raw)
    assert info.value.status == 422
    assert loc in [e["loc"] for e in info.value.errors]


@pytest.mark.parametrize(
    "raw",
    [
        {"num_samples": 9},
        {"num_samples": 100_001},
        {"method": "guided_backprop"},
        {"targets": {"top_k": 0}},
        {"targets": {"top_k": 21}},
        {"targets": {"classes": []}},
        {"targets": {"classes": [-1]}},
        {"batch_size": 0},
        {"segmentation": {"algorithm": "grid", "cell_size": 1}},
        {"segmentation": {"algorithm": "watershed"}},
        {"background": {"kind": "constant", "rgb": [0, 0, 256]}},
        {"background": {"kind": "blur", "sigma": 0}},
        {"lime": {"keep_probability": 1.0}},
        {"lime": {"surrogate": "linear"}},
        {"seed": -1},
        {"output_space": "log"},
        {"tolerance": 0},
        {"tolerance": 0.6},
    ],
)
def test_out_of_range_values_are_rejected(raw: dict) -> None:
    with pytest.raises(InvalidParams) as info:
        parse_params(raw)
    assert info.value.errors and all(e["loc"][0] == "params" for e in info.value.errors)


@pytest.mark.parametrize("num_samples", [10, 100_000])
def test_the_range_ends_are_accepted(num_samples: int) -> None:
    assert parse_params({"num_samples": num_samples}).num_samples == num_samples


def test_not_an_object() -> None:
    with pytest.raises(InvalidParams, match="JSON object"):
        parse_params([1, 2])


def test_targets_and_nested_specs_parse() -> None:
    p = parse_params(
        {
            "targets": {"classes": [3, 1]},
            "segmentation": {"algorithm": "slic"},
            "background": {"kind": "blur"},
            "method": "kernel_shap",
        }
    )
    assert isinstance(p.targets, Classes) and p.targets.classes == [3, 1]
    assert p.segmentation.algorithm == "slic" and p.background.kind == "blur"


def test_cache_key_ignores_cache_and_batch_size_but_not_what_changes_numbers() -> None:
    base = parse_params({})
    key = base.cache_key("abc")
    assert parse_params({"cache": False, "batch_size": 7}).cache_key("abc") == key
    assert base.cache_key("abd") != key
    for change in (
        {"seed": 1},
        {"method": "kernel_shap"},
        {"num_samples": 999},
        {"model": "m"},
        {"targets": {"top_k": 2}},
        {"output_space": "logit"},
        {"tolerance": 0.02},
    ):
        assert parse_params(change).cache_key("abc") != key, change
    assert parse_params({"num_samples": 1000}).cache_key("abc") == key  # defaults spelled out


def test_params_are_frozen() -> None:
    with pytest.raises(Exception):  # noqa: B017  (pydantic's ValidationError)
        ExplainParams().seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        # scikit-image's (and Glimpse's) quickshift raise ValueError below 1: a job that would
        # end "Internal error" in the worker is a 422 here.
        (
            {"segmentation": {"algorithm": "quickshift", "kernel_size": 0.5}},
            ["params", "segmentation", "quickshift", "kernel_size"],
        ),
        # lime's kernel divides by width²: 1e-300² is 0 (NaN weights, an SVD that fails),
        # 1e300² overflows (OverflowError).
        ({"lime": {"kernel_width": 1e-300}}, ["params", "lime", "kernel_width"]),
        ({"lime": {"kernel_width": 1e300}}, ["params", "lime", "kernel_width"]),
    ],
)
def test_values_the_engine_cannot_run_are_rejected_here(raw: dict, loc: list[str]) -> None:
    with pytest.raises(InvalidParams) as info:
        parse_params(raw)
    assert info.value.errors is not None and info.value.errors[0]["loc"] == loc


def test_the_engine_runs_the_ends_of_the_new_ranges() -> None:
    from worker.engine.lime import Lime
    from worker.engine.quickshift import quickshift

    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    spec = parse_params({"segmentation": {"algorithm": "quickshift", "kernel_size": 1}})
    assert isinstance(spec.segmentation, Quickshift)
    labels = quickshift(
        image, kernel_size=spec.segmentation.kernel_size, max_dist=200, ratio=0.2, seed=0
    )
    assert labels.shape == (16, 16)
    z = np.random.default_rng(1).random((20, 8)) < 0.5
    z[0] = True
    for width in (1e-6, 1e6):
        options = parse_params({"lime": {"kernel_width": width}}).lime
        weights = Lime(kernel_width=options.kernel_width).kernel(z)
        assert np.isfinite(weights).all() and weights[0] == 1.0


@pytest.mark.parametrize(
    ("targets", "loc", "words"),
    [
        ({"classes": [-1]}, ["params", "targets", "classes", "0"], "greater than or equal to 0"),
        ({"top_k": 0}, ["params", "targets", "top_k"], "greater than or equal to 1"),
        ({"top_k": 1, "classes": [2]}, ["params", "targets", "top_k"], "Extra inputs"),
    ],
)
def test_a_bad_target_names_its_field_and_the_real_reason(
    targets: dict, loc: list[str], words: str
) -> None:
    with pytest.raises(InvalidParams) as info:
        parse_params({"targets": targets})
    assert info.value.errors is not None and info.value.errors[0]["loc"] == loc
    assert words in info.value.detail


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        ({"integrated_gradients": {"steps": 0}}, ["params", "integrated_gradients", "steps"]),
        ({"integrated_gradients": {"steps": 301}}, ["params", "integrated_gradients", "steps"]),
        ({"integrated_gradients": {"rule": "simpson"}}, ["params", "integrated_gradients", "rule"]),
        (
            {"integrated_gradients": {"noise_samples": 65}},
            ["params", "integrated_gradients", "noise_samples"],
        ),
        (
            {"integrated_gradients": {"noise_sigma": 0}},
            ["params", "integrated_gradients", "noise_sigma"],
        ),
        ({"xrai": {"scales": []}}, ["params", "xrai", "scales"]),
        ({"xrai": {"scales": [50, -1]}}, ["params", "xrai", "scales", "1"]),
        ({"xrai": {"dilation": 33}}, ["params", "xrai", "dilation"]),
        (
            {"background": {"kind": "noise", "low": 200, "high": 100}},
            ["params", "background", "noise"],
        ),
    ],
)
def test_gradient_method_options_are_validated_naming_the_field(raw: dict, loc: list[str]) -> None:
    with pytest.raises(InvalidParams) as info:
        parse_params({"method": "integrated_gradients", **raw})
    assert info.value.status == 422
    assert info.value.errors is not None and info.value.errors[0]["loc"] == loc


def test_gradient_method_defaults() -> None:
    params = parse_params({"method": "xrai"})
    assert params.integrated_gradients.model_dump() == {
        "steps": 50,
        "rule": "riemann",
        "noise_samples": 0,
        "noise_sigma": 0.1,
    }
    assert params.xrai.scales == [50, 100, 150, 250, 500, 1200] and params.xrai.dilation == 5


def test_methods_compare_several_and_the_first_is_the_method() -> None:
    p = parse_params({"methods": ["gradcam", "lime", "kernel_shap"]})
    assert p.method == "gradcam" and p.methods == ["gradcam", "lime", "kernel_shap"]
    assert parse_params({"method": "gradcam", "methods": ["gradcam", "lime"]}).method == "gradcam"
    each = p.each_method()
    assert [one.method for one in each] == ["gradcam", "lime", "kernel_shap"]
    assert all(one.methods is None for one in each)
    assert parse_params({}).each_method() == [parse_params({})]


@pytest.mark.parametrize(
    "methods, says",
    [
        (["lime"], "at least 2"),
        (["lime", "lime"], "each method at most once"),
        (["lime", "shapley"], "Input should be"),
        (list(range(8)), "at most 7"),
        ("lime", "valid list"),
    ],
)
def test_bad_methods_are_422_naming_methods(methods: object, says: str) -> None:
    with pytest.raises(InvalidParams) as info:
        parse_params({"methods": methods})
    assert info.value.errors[0]["loc"][:2] == ["params", "methods"]
    assert says in info.value.errors[0]["msg"]


def test_a_method_other_than_the_first_of_methods_is_refused() -> None:
    with pytest.raises(InvalidParams) as info:
        parse_params({"method": "lime", "methods": ["gradcam", "lime"]})
    assert info.value.errors[0]["loc"] == ["params", "methods"]
    assert "first of methods must be method ('lime')" in info.value.detail


def test_methods_change_the_cache_key_and_its_absence_keeps_the_old_keys() -> None:
    base = parse_params({})
    # jobs cached before methods and tolerance existed are found
    body = base.model_dump(mode="json", exclude={"cache", "batch_size", "methods", "tolerance"})
    import hashlib
    import json

    old = hashlib.sha256(
        json.dumps({"image": "abc", "params": body}, sort_keys=True).encode()
    ).hexdigest()
    assert base.cache_key("abc") == old
    assert parse_params({"methods": ["lime", "gradcam"]}).cache_key("abc") != old
