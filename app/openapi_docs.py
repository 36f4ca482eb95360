"""OpenAPI pieces written by hand: the two request bodies of a submission, with worked
examples, and the problem+json error responses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.schemas import Problem

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

PARAMS_EXAMPLE: dict[str, Any] = {
    "model": "resnet50",
    "method": "lime",
    "targets": {"top_k": 1},
    "num_samples": 1000,
    "segmentation": {"algorithm": "quickshift", "kernel_size": 4, "max_dist": 200, "ratio": 0.2},
    "background": {"kind": "constant", "rgb": [0, 0, 0]},
    "seed": 0,
}

PARAMS_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "description": (
        "All optional (absent or null: every default); unknown keys are a 422. model (a "
        "registered name; default: the server's), method (lime | kernel_shap | partition_shap | "
        'gradcam | occlusion), targets ({top_k} | {classes}), num_samples (10..100000, or "auto"), '
        "max_samples (the cap of auto), tolerance (when the top superpixels count as settled), "
        "batch_size, segmentation (quickshift | slic | "
        "felzenszwalb | grid), background (constant | mean | blur), lime ({kernel_width, "
        "alpha, keep_probability, surrogate}), occlusion ({window, stride}), gradcam ({layer}), "
        "quality "
        "(faithfulness curves), output_space (probability | logit), seed, cache."
    ),
    "additionalProperties": True,
}

SUBMIT_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {
                        "type": "string",
                        "format": "binary",
                        "description": "the image file (JPEG, PNG, WebP, BMP, TIFF)",
                    },
                    # The part's bytes are the JSON text of the object (`encoding` below), so
                    # the schema is the object's: a part that is not a JSON object is refused.
                    "params": {
                        **PARAMS_SCHEMA,
                        "description": "the params object, as a JSON text part (leave the part "
                        "out for every default). " + PARAMS_SCHEMA["description"],
                        "example": {
                            "method": "kernel_shap",
                            "num_samples": 500,
                            "targets": {"top_k": 2},
                        },
                    },
                },
            },
            "encoding": {"params": {"contentType": "application/json"}},
        },
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["image_b64"],
                "additionalProperties": False,
                "properties": {
                    "image_b64": {
                        "type": "string",
                        "format": "byte",
                        "description": "base64 of the image file's bytes",
                    },
                    "params": PARAMS_SCHEMA,
                },
            },
            "examples": {
                "lime": {
                    "summary": "LIME, top class, quickshift superpixels",
                    "value": {"image_b64": "iVBORw0KGgoAAAANSUhEUgAA…", "params": PARAMS_EXAMPLE},
                },
                "kernel_shap": {
                    "summary": "Kernel SHAP for two given classes on a 32-pixel grid",
                    "value": {
                        "image_b64": "/9j/4AAQSkZJRgABAQ…",
                        "params": {
                            "method": "kernel_shap",
                            "targets": {"classes": [281, 285]},
                            "num_samples": 2000,
                            "segmentation": {"algorithm": "grid", "cell_size": 32},
                            "background": {"kind": "blur", "sigma": 10},
                        },
                    },
                },
            },
        },
    },
}

BATCH_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "format": "binary"},
                        "description": "one `image` file part per image (JPEG, PNG, WebP, BMP, "
                        "TIFF), in the order of the batch's jobs; at most "
                        "GLIMPSE_MAX_BATCH_IMAGES (64)",
                    },
                    "params": {
                        **PARAMS_SCHEMA,
                        "description": "the params object of every image, as a JSON text part "
                        "(leave the part out for every default). " + PARAMS_SCHEMA["description"],
                        "example": {"method": "lime", "num_samples": 500},
                    },
                },
            },
            "encoding": {"params": {"contentType": "application/json"}},
        },
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["images_b64"],
                "additionalProperties": False,
                "properties": {
                    "images_b64": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "format": "byte"},
                        "description": "base64 of each image file's bytes, in order",
                    },
                    "params": {
                        **PARAMS_SCHEMA,
                        "description": "applies to every image. " + PARAMS_SCHEMA["description"],
                    },
                },
            },
            "examples": {
                "two_images": {
                    "summary": "Two images, Kernel SHAP with 500 evaluations each",
                    "value": {
                        "images_b64": ["iVBORw0KGgoAAAANSUhEUgAA…", "/9j/4AAQSkZJRgABAQ…"],
                        "params": {"method": "kernel_shap", "num_samples": 500},
                    },
                }
            },
        },
    },
}

_DESCRIPTIONS = {
    400: "Malformed body: broken JSON, bad base64, no image part",
    401: "API keys are configured and the request carries none, or an unknown one",
    404: "No such job (or batch)",
    409: "The job is not finished yet: its artifacts do not exist",
    413: "Too many bytes or pixels (or images in one request)",
    415: "Not a decodable image, or a body that is neither multipart nor JSON",
    422: "Invalid params or query, with errors[].loc",
    429: "Over the submissions (images) per minute allowed to this API key (or address); see "
    "Retry-After",
    503: "Redis unreachable or queue full; see Retry-After",
    504: "A synchronous call (KServe :predict / :explain) outlived its time limit",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'Bearer realm="glimpse" (error="invalid_token" for an unknown key)',
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "seconds until a submission is admitted again (1..60)",
            "schema": {"type": "integer"},
        }
    },
    503: {
        "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}},
    },
}

SUBMIT_ERRORS = (400, 413, 415, 422, 429, 503)
GET_ERRORS = (404, 503)
ARTIFACT_ERRORS = (404, 409, 422, 503)


def problem_responses(statuses: tuple[int, ...]) -> dict[int | str, dict[str, Any]]:
    return {
        s: {
            "description": _DESCRIPTIONS[s],
            "content": {"application/problem+json": {"schema": PROBLEM_REF}},
            **({"headers": _HEADERS[s]} if s in _HEADERS else {}),
        }
        for s in statuses
    }


def install(app: FastAPI) -> None:
    """Build the schema once, with the Problem schema added to the components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            defs = problem.pop("$defs", {})
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(defs)
            components["Problem"] = problem
            _problems_for_validation_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _problems_for_validation_errors(schema: dict[str, Any]) -> None:
    """FastAPI documents its own 422 body; ours is problem+json (app/errors.py)."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            response = operation.get("responses", {}).get("422")
            if response and "application/json" in response.get("content", {}):
                operation["responses"]["422"] = problem_responses((422,))[422]
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
