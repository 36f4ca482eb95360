"""openapi/openapi.json is what the app serves, and the app never loads a model runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from services import REPO, Api

from app.openapi import OUTPUT, render

REGENERATE = "regenerate it with `python -m app.openapi` and commit openapi/openapi.json"


def test_openapi_file_matches_the_live_app(api: Api) -> None:
    served = api.client.get("/openapi.json")
    assert served.status_code == 200
    assert OUTPUT.is_file(), f"{OUTPUT} is missing: {REGENERATE}"
    assert OUTPUT.read_text(encoding="utf-8") == render(served.json()), (
        f"{OUTPUT} differs from the app's /openapi.json: {REGENERATE}"
    )


def test_openapi_documents_both_submission_bodies_and_problems() -> None:
    doc = json.loads(Path(OUTPUT).read_text(encoding="utf-8"))
    body = doc["paths"]["/v1/explanations"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert body["application/json"]["examples"]
    responses = doc["paths"]["/v1/explanations"]["post"]["responses"]
    for status in ("400", "413", "415", "422", "503"):
        assert "application/problem+json" in responses[status]["content"]
    assert "HTTPValidationError" not in json.dumps(doc)


def test_importing_the_app_loads_no_model_runtime() -> None:
    code = (
        "import sys, app.main\n"
        "app.main.create_app()\n"
        "bad = [m for m in sys.modules if m == 'onnxruntime' or m.startswith(('onnxruntime.',"
        " 'worker'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
