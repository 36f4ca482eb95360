"""Write the API's OpenAPI document to openapi/openapi.json: `python -m app.openapi`.

tests/app/test_openapi.py fails when the file and the app drift apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from app.main import create_app
from glimpse.settings import Settings

OUTPUT = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def current() -> str:
    return render(create_app(Settings()).openapi())


def main() -> int:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(current(), encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
