"""The web page at `/`, driven in headless Chromium (Debian's, via Playwright) against the
real service: upload chelsea, watch the progress bar finish, find the overlay rendered."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
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


def fill_form(page: Page, png: Path, method: str = "lime", samples: int = 60) -> None:
    """Once the models are listed: the photo, the method and the budget chosen."""
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    page.set_input_files("#image-input", str(png))
    page.select_option("#method", method)
    page.fill("#samples", str(samples))


def explain_chelsea(page: Page, png: Path, samples: int = 60) -> None:
    """LIME on chelsea; a budget no other test asks for makes a new job (not a cache hit)."""
    fill_form(page, png, samples=samples)
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
    docs = os.environ.get("GLIMPSE_DOCS_SCREENSHOTS")  # set to refresh the README's picture
    if docs:  # the page as a user first sees it: the heatmap at full strength
        page.screenshot(path=str(Path(docs) / "web-page.png"), full_page=True)
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
        ("#clip-upper", "99", "clip_upper=99"),
        ("#clip-lower", "62", "clip_lower=62"),
        ("#max-side", "256", "max_side=256"),
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
    fill_form(page, chelsea_file_of(tmp_path, chelsea_png), "kernel_shap", 120)
    page.check("#auto-samples")
    page.click("#submit")
    page.wait_for_selector("#results", state="visible", timeout=90_000)
    params = page.evaluate("job.params")
    assert params["num_samples"] == "auto" and params["max_samples"] == 120
    stats = page.evaluate("job.result.stats")
    assert stats["rounds"] >= 1 and stats["model_evaluations"] <= 120
    assert stats["converged"] is False  # ~90 superpixels: 120 evaluations cannot settle them
    assert "reached max_samples (120)" in page.inner_text("#warnings")
    assert page.inner_text("#samples-label").startswith("Budget: at most")
    run = page.inner_text("#run-stats")
    assert f"auto budget: {stats['rounds']} rounds, not converged" in run


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
        *("#max-side", "#legend", "#fit-width", "#uncertain"),
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


# --- following the job, the overlay's size, legend, grid, quality, hatching, no 404 ----------
def chelsea_file_of(tmp_path: Path, chelsea_png: bytes) -> Path:
    png = tmp_path / "chelsea.png"
    png.write_bytes(chelsea_png)
    return png


def pixels(page: Page, url: str) -> np.ndarray:
    """The picture at `url` (absolute), fetched as the page's context fetches."""
    response = page.request.get(url)
    assert response.ok, response.status
    with Image.open(io.BytesIO(response.body())) as img:
        return np.asarray(img.convert("RGB"))


def job_gets(urls: list[str], job_id: str) -> int:
    return sum(1 for u in urls if u.split("?")[0].endswith(f"/v1/explanations/{job_id}"))


def test_progress_comes_from_the_events_stream(
    page: Page, chelsea_png: bytes, tmp_path: Path
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    explain_chelsea(page, chelsea_file_of(tmp_path, chelsea_png), samples=70)
    job_id = page.evaluate("job.id")
    assert [u for u in requested if u.endswith(f"/v1/explanations/{job_id}/events")]
    assert page.evaluate("document.body.dataset.progress") == "events"
    assert int(page.evaluate("document.body.dataset.events")) >= 3  # queued, running, finished
    assert page.eval_on_selector("#progress", "p => [p.value, p.max]") == [70, 70]
    assert job_gets(requested, job_id) == 1  # no polling: the result, read once at the end
    assert page.evaluate("source.readyState") == 2  # closed: it does not reconnect


def test_without_events_the_page_polls(page: Page, chelsea_png: bytes, tmp_path: Path) -> None:
    """An older server (or a proxy that refuses the stream): 404 for /events."""
    page.route("**/events", lambda route: route.fulfill(status=404, body="no such route"))
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    explain_chelsea(page, chelsea_file_of(tmp_path, chelsea_png), samples=80)
    assert page.evaluate("document.body.dataset.progress") == "polling"
    assert page.eval_on_selector("#progress", "p => [p.value, p.max]") == [80, 80]
    assert job_gets(requested, page.evaluate("job.id")) >= 2
    assert "Egyptian cat" in page.inner_text("#predictions")


def test_the_overlay_fits_the_page_width(page: Page, chelsea_png: bytes, tmp_path: Path) -> None:
    explain_chelsea(page, chelsea_file_of(tmp_path, chelsea_png))
    overlay_loaded(page)
    box = page.locator("img.overlay").bounding_box()
    room = page.eval_on_selector("#explanations figure", "f => f.clientWidth - 16")  # padding
    assert box is not None and abs(box["width"] - room) <= 1 and room > 600
    assert abs(box["height"] / box["width"] - 300 / 451) < 0.01  # the aspect ratio kept
    base = page.locator(".stack img:not(.overlay)").bounding_box()
    assert base == box  # the overlay lies exactly on the photo
    page.uncheck("#fit-width")
    natural = page.locator("img.overlay").bounding_box()
    assert natural is not None and (natural["width"], natural["height"]) == (451, 300)
    page.check("#fit-width")
    again = page.locator("img.overlay").bounding_box()  # y moves as the page scrolls
    assert again is not None and (again["width"], again["height"]) == (box["width"], box["height"])


def test_the_legend_is_drawn_on_the_overlay(page: Page, chelsea_png: bytes, tmp_path: Path) -> None:
    explain_chelsea(page, chelsea_file_of(tmp_path, chelsea_png))
    overlay_loaded(page)
    assert page.is_checked("#legend")  # on by default
    src = page.evaluate("document.querySelector('img.overlay').src")
    assert "legend=true" in src
    with_legend = pixels(page, src)
    page.uncheck("#legend")
    overlay_loaded(page)
    plain_src = page.evaluate("document.querySelector('img.overlay').src")
    assert "legend" not in plain_src
    plain = pixels(page, plain_src)
    assert with_legend.shape == plain.shape == (300, 451, 3)
    differs = (with_legend != plain).any(axis=(1, 2))
    assert differs[-52:].all() and not differs[:-52].any()  # the colour bar's band only
    assert with_legend[-52:].mean() > plain[-52:].mean() + 40  # pale, as the band is


def test_the_grid_style_shows_every_class_in_one_picture(
    page: Page, chelsea_png: bytes, tmp_path: Path
) -> None:
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    page.fill("#top-k", "2")
    explain_chelsea(page, chelsea_file_of(tmp_path, chelsea_png))
    assert page.locator("img.overlay").count() == 2  # one per class, over the photo
    page.check("input[name=style][value=grid]")
    assert page.locator(".stack").count() == 0 and page.locator("img.grid").count() == 1
    assert "style=grid" in page.get_attribute("img.grid", "src")
    page.wait_for_function(
        "() => { const g = document.querySelector('img.grid');"
        " return g && g.complete && g.naturalWidth > 3 * 300; }"  # photo + 2 panels, side by side
    )
    assert page.eval_on_selector("img.grid", "g => g.style.opacity") == ""
    page.check("input[name=style][value=heatmap]")
    assert page.locator("img.overlay").count() == 2 and page.locator("img.grid").count() == 0


def test_each_classes_quality_numbers_are_shown(
    page: Page, chelsea_png: bytes, tmp_path: Path
) -> None:
    explain_chelsea(page, chelsea_file_of(tmp_path, chelsea_png))
    result = page.evaluate("job.result")
    explained = result["explanations"][0]
    cells = page.locator("#quality-table tbody tr").first.locator("td").all_inner_texts()
    quality = explained["quality"]
    assert cells[:3] == [
        explained["label"],
        f"{quality['deletion_auc']:.3f}",
        f"{quality['insertion_auc']:.3f}",
    ]
    # 60 evaluations cannot settle ~90 superpixels; the cell says how far their order is known
    share = 100 * explained["top_resolution"]
    assert cells[3].startswith("no (within ") and cells[3].endswith(" % of the total)"), cells[3]
    assert float(cells[3].split()[2]) == pytest.approx(share, rel=0.05)
    weights, se = np.asarray(explained["weights"]), np.asarray(explained["weights_se"])
    assert cells[4] == f"{int((np.abs(weights) < 2 * se).sum())} of {len(weights)}"
    assert cells[5] == "—"  # no completeness: not Integrated Gradients
    stats = page.inner_text("#run-stats")
    assert f"{result['stats']['model_evaluations']} model evaluations" in stats
    assert f"+{result['stats']['quality_evaluations']} for the quality curves" in stats
    assert f"in {result['stats']['seconds']:.2f} s" in stats


def test_the_hatching_toggle_redraws_the_overlay(
    page: Page, chelsea_png: bytes, tmp_path: Path
) -> None:
    explain_chelsea(page, chelsea_file_of(tmp_path, chelsea_png))
    overlay_loaded(page)
    assert page.is_enabled("#uncertain") and not page.is_checked("#uncertain")
    before = page.evaluate("document.querySelector('img.overlay').src")
    assert "uncertain" not in before
    page.check("#uncertain")
    after = page.evaluate("document.querySelector('img.overlay').src")
    assert "uncertain=hatch" in after
    overlay_loaded(page)
    plain, hatched = pixels(page, before), pixels(page, after)
    changed = (plain != hatched).any(axis=2)
    assert 0.01 < changed.mean() < 0.6  # diagonal lines over the uncertain superpixels
    # Grad-CAM has no standard errors: nothing to hatch.
    page.select_option("#method", "gradcam")
    page.click("#submit")
    page.wait_for_function("job && job.status === 'finished' && job.params.method === 'gradcam'")
    assert page.is_disabled("#uncertain") and not page.is_checked("#uncertain")
    assert "uncertain" not in page.get_attribute("img.overlay", "src")


def test_no_request_of_the_page_is_a_404(page: Page, chelsea_png: bytes, tmp_path: Path) -> None:
    answered: list[tuple[int, str]] = []
    page.on("response", lambda response: answered.append((response.status, response.url)))
    page.reload()
    explain_chelsea(page, chelsea_file_of(tmp_path, chelsea_png))
    overlay_loaded(page)
    assert answered and not [a for a in answered if a[0] == 404], answered
    icon = page.eval_on_selector("link[rel=icon]", "l => l.href")
    origin = page.evaluate("location.origin")
    for url in (icon, f"{origin}/favicon.ico"):
        response = page.request.get(url)
        assert response.status == 200, url
        assert response.headers["content-type"].startswith("image/svg+xml"), url
        assert response.body().startswith(b"<svg")


def test_the_comparison_view_shows_every_method_side_by_side(
    page: Page, chelsea_png: bytes, tmp_path: Path
) -> None:
    fill_form(page, chelsea_file_of(tmp_path, chelsea_png), "gradcam")
    page.check("input[name=compare][value=lime]")
    page.check("input[name=compare][value=kernel_shap]")
    page.check("input[name=compare][value=gradcam]")  # the chosen method: not asked twice
    page.click("#submit")
    page.wait_for_selector("#comparison", state="visible", timeout=120_000)
    assert page.evaluate("job.params.methods") == ["gradcam", "lime", "kernel_shap"]
    page.wait_for_function(
        "() => { const f = document.getElementById('compare-figure');"
        " return f.complete && f.naturalWidth > 600; }"
    )
    assert "compare=true" in page.get_attribute("#compare-figure", "src")
    rows = page.eval_on_selector_all(
        "#compare-table tbody tr", "rows => rows.map(r => r.dataset.method)"
    )
    assert rows == ["gradcam", "lime", "kernel_shap"]
    cells = page.eval_on_selector_all(
        "#agreement-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert [row[0] for row in cells] == ["Grad-CAM", "LIME", "Kernel SHAP"]
    assert cells[0][1] == "—" and -1 <= float(cells[0][2]) <= 1  # Spearman above
    assert cells[1][1].endswith("of 10")  # shared top superpixels below the diagonal
    shot = tmp_path / "comparison.png"
    page.locator("#comparison").screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    docs = os.environ.get("GLIMPSE_DOCS_SCREENSHOTS")  # set to refresh the README's picture
    if docs:
        shutil.copy(shot, Path(docs) / "web-comparison.png")


def test_without_a_comparison_the_view_stays_hidden(
    page: Page, chelsea_png: bytes, tmp_path: Path
) -> None:
    explain_chelsea(page, chelsea_file_of(tmp_path, chelsea_png))
    assert page.evaluate("job.params.methods") is None
    assert page.is_hidden("#comparison")
