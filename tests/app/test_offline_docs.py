"""/docs and /redoc with no internet: every asset comes from the app (app/offline_docs.py),
and headless Chromium, with every other host blocked, renders the operations."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Route, sync_playwright
from services import Api
from test_web_page import ARGS, CHROMIUM


def asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(
        r"""url: ?['"]([^'"]+)['"]""", html
    )


def test_docs_pages_name_only_assets_of_the_app(api: Api) -> None:
    for page in ("/docs", "/redoc"):
        r = api.client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        urls = [u for u in asset_urls(r.text) if not u.startswith("/openapi.json")]
        assert urls, r.text
        for url in urls:
            assert url.startswith("/docs-assets/"), (page, url)  # never another host
            asset = api.client.get(url)
            assert asset.status_code == 200, url
            kind = asset.headers["content-type"]
            assert any(k in kind for k in ("javascript", "css", "image/png")), (url, kind)


def test_swagger_ui_lists_the_operations_offline(api: Api) -> None:
    assert CHROMIUM.is_file()
    foreign: list[str] = []
    errors: list[str] = []

    def only_local(route: Route) -> None:
        if httpx.URL(route.request.url).host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page()
        page.route("**/*", only_local)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{api.url}/docs")
        page.wait_for_selector(".opblock", timeout=20_000)
        operations = page.locator(".opblock-summary").all_inner_texts()
        browser.close()
    text = " ".join(operations).replace("\u200b", "")
    assert re.search(r"POST\s*/v1/explanations", text), text
    assert re.search(r"GET\s*/v1/models", text), text
    assert foreign == [] and errors == [], (foreign, errors)
