"""The web page at `/`: plain HTML/JS in app/static, no build step."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parents[2] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """The page links its icon (/static/favicon.svg); browsers and tools that ask for
    /favicon.ico anyway get the same picture rather than a 404."""
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")
