"""The web page at `/`, driven in headless Chromium (Debian's, via Playwright) against the
real service: upload chelsea, watch the progress bar finish, find the overlay rendered."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def open_page(url: str) -> Iterator[Page]:
    assert CHROMIUM.is_file(), "Debian's chromium is missing: scripts/bootstrap.sh installs it"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.goto(url + "/")
        yield page
        context.close()
        browser.close()


@pytest.fixture()
def page(api, worker, tmp_path: Path):
    with open_page(api.url) as page:
        yield page


@pytest.fixture()
def keyed_page(keyed_api, worker):
    """The page of an API with keys configured (tests/api_fixtures.py)."""
    with open_page(keyed_api.url) as page:
        yield page


def explain_chelsea(page: Page, png: Path) -> None:
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    page.set_input_files("#image-input", str(png))
    page.select_option("#method", "lime")
    page.fill("#samples", "60")
    page.click("#submit")
    page.wait_for_selector("#results", state="visible", timeout=90_000)


def test_upload_progress_and_overlay(page: Page, chelsea_png: bytes, tmp_path: Path) -> None:
    png = tmp_path / "chelsea.png"
    png.write_bytes(chelsea_png)
    explain_chelsea(page, png)
    progress = page.eval_on_selector("#progress", "p => [p.value, p.max]")
    assert progress[0] == progress[1] == 60
    assert "Egyptian cat" in page.inner_text("#predictions")
    # 60 evaluations for chelsea's ~90 quickshift superpixels: the page says it is noise
    assert page.is_visible("#warnings")
    assert "not settled after 60 model evaluations" in page.inner_text("#warnings")
    page.wait_for_function(
        "() => { const o = document.querySelector('img.overlay');"
        " return o && o.complete && o.naturalWidth === 451 && o.naturalHeight === 300; }"
    )
    # the style switch and the opacity slider act on the overlay
    page.check("input[name=style][value=boundaries]")
    assert "style=boundaries" in page.get_attribute("img.overlay", "src")
    page.fill("#opacity", "0.3")
    page.dispatch_event("#opacity", "input")
    assert page.eval_on_selector("img.overlay", "o => o.style.opacity") == "0.3"
    assert page.get_attribute("#download-npy", "href").endswith("/attribution.npy")
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def overlay_loaded(page: Page, width: int = 451) -> None:
    page.wait_for_function(
        "w => { const o = document.querySelector('img.overlay');"
        " return o && o.complete && o.naturalWidth === w; }",
        arg=width,
    )


@pytest.mark.parametrize(
    ("control", "value", "sent"),
    [
        ("#polarity", "positive", "polarity=positive"),
        ("#color-map", "viridis", "color_map=viridis"),
        ("#overlay-base", "grayscale", "overlay=grayscale"),
        ("#draw", "outlines", "draw=outlines"),
        ("#max-side", "256", "max_side=256"),
        ("#legend", True, "legend=true"),
    ],
)
def test_each_visualisation_control_redraws_the_overlay(
    page: Page, chelsea_png: bytes, tmp_path: Path, control: str, value: object, sent: str
) -> None:
    png = tmp_path / "chelsea.png"
    png.write_bytes(chelsea_png)
    explain_chelsea(page, png)
    overlay_loaded(page)
    before = page.get_attribute("img.overlay", "src")
    assert "?class_index=" in before and sent.split("=")[0] + "=" not in before
    if value is True:
        page.check(control)
    else:
        page.select_option(control, str(value))
    after = page.get_attribute("img.overlay", "src")
    assert sent in after and after != before
    overlay_loaded(page, 256 if control == "#max-side" else 451)  # the server drew it
    # back to the default: the overlay's URL is the default's again
    if value is True:
        page.uncheck(control)
    else:
        page.select_option(control, index=0)
    assert page.get_attribute("img.overlay", "src") == before


def test_an_auto_budget_is_sent_with_its_cap(
    page: Page, chelsea_png: bytes, tmp_path: Path
) -> None:
    png = tmp_path / "chelsea.png"
    png.write_bytes(chelsea_png)
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    page.set_input_files("#image-input", str(png))
    page.select_option("#method", "kernel_shap")
    page.fill("#samples", "120")
    page.check("#auto-samples")
    page.click("#submit")
    page.wait_for_selector("#results", state="visible", timeout=90_000)
    params = page.evaluate("job.params")
    assert params["num_samples"] == "auto" and params["max_samples"] == 120
    stats = page.evaluate("job.result.stats")
    assert stats["rounds"] >= 1 and stats["model_evaluations"] <= 120
    assert stats["converged"] is False  # ~90 superpixels: 120 evaluations cannot settle them
    assert "reached max_samples (120)" in page.inner_text("#warnings")


def test_a_gradient_method_is_sent_with_its_steps(
    page: Page, chelsea_png: bytes, tmp_path: Path
) -> None:
    png = tmp_path / "chelsea.png"
    png.write_bytes(chelsea_png)
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    assert page.eval_on_selector("option[value=xrai]", "o => o.disabled") is False  # torch here
    page.set_input_files("#image-input", str(png))
    page.select_option("#method", "xrai")
    page.fill("#steps", "3")
    page.click("#submit")
    page.wait_for_selector("#results", state="visible", timeout=90_000)
    params = page.evaluate("job.params")
    assert params["method"] == "xrai" and params["integrated_gradients"]["steps"] == 3
    assert page.evaluate("job.result.stats.backward_passes") == 3
    assert "Egyptian cat" in page.inner_text("#predictions")


def test_the_page_fits_a_phone(page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    controls = (
        *("#model", "#method", "#top-k", "#samples", "#auto-samples", "#api-key", "#steps"),
        *("#opacity", "#drop-zone", "#polarity", "#color-map", "#overlay-base", "#draw"),
        *("#max-side", "#legend"),
    )
    for control in controls:
        label = page.get_attribute(control, "aria-label")
        assert label, f"{control} has no accessible label"


def test_with_api_keys_the_page_asks_for_one_and_sends_it(
    keyed_page: Page, api_keys: tuple[str, str], chelsea_png: bytes, tmp_path: Path
) -> None:
    page = keyed_page
    page.wait_for_selector("#error", state="visible")
    assert "API key" in page.inner_text("#error")
    assert page.get_attribute("#api-key", "aria-invalid") == "true"
    page.fill("#api-key", api_keys[0])
    page.dispatch_event("#api-key", "change")
    png = tmp_path / "chelsea.png"
    png.write_bytes(chelsea_png)
    explain_chelsea(page, png)
    assert page.is_hidden("#error")
    # <img src> cannot carry the key: the page fetched the overlay itself.
    page.wait_for_function(
        "() => { const o = document.querySelector('img.overlay');"
        " return o && o.src.startsWith('blob:') && o.complete && o.naturalWidth === 451; }"
    )
    with page.expect_download() as download:
        page.click("#download-npy")
    maps = np.load(download.value.path(), allow_pickle=False)
    assert maps.shape == (1, 300, 451) and maps.dtype == np.float32
    # Kept for this tab only.
    page.reload()
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    assert page.input_value("#api-key") == api_keys[0]
