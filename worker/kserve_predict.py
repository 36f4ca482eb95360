"""The `:predict` job (KServe V1 compatibility): one forward pass, top classes back.

The API puts the image bytes under a short-lived key, enqueues `run_prediction` and blocks
on the reply list; the job answers there (LPUSH) with the top classes or an error.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from glimpse.errors import GlimpseError
from glimpse.images import decode_image
from glimpse.limits import check_scale
from glimpse.settings import get_settings
from worker.engine.explain import TOP_PREDICTIONS, to_output_space
from worker.engine.input_grid import InputGrid
from worker.jobs import _connection, warm_models

REPLY_TTL_S = 60


def run_prediction(image_key: str, reply_key: str, model_name: str) -> None:
    settings = get_settings()
    redis = _connection(settings)
    answer: dict[str, Any]
    try:
        data = redis.get(image_key)
        if data is None:
            raise GlimpseError("the image expired before a worker took the prediction")
        redis.delete(image_key)
        image = decode_image(data, max_pixels=settings.max_image_pixels)  # type: ignore[arg-type]
        loaded = warm_models(settings).get(model_name)
        card = loaded.registered.card
        check_scale(card, image.height, image.width, settings.max_image_pixels)
        x = InputGrid(card, image.pixels.shape[:2]).image(image.pixels)
        probabilities = to_output_space(loaded.runtime(x[None]), card, "probability")[0]
        order = np.argsort(-probabilities, kind="stable")[:TOP_PREDICTIONS]
        labels = loaded.registered.labels
        answer = {
            "predictions": [
                {"class_index": int(i), "label": labels[i], "probability": float(probabilities[i])}
                for i in order
            ]
        }
    except GlimpseError as exc:
        answer = {"error": {"title": exc.title, "detail": exc.detail}}
    except Exception as exc:  # the API is waiting: tell it, then let RQ record the failure
        _reply(redis, reply_key, {"error": {"title": "Prediction failed", "detail": str(exc)}})
        raise
    _reply(redis, reply_key, answer)


def _reply(redis: Any, key: str, answer: dict[str, Any]) -> None:
    pipe = redis.pipeline()
    pipe.lpush(key, json.dumps(answer))
    pipe.expire(key, REPLY_TTL_S)
    pipe.execute()
