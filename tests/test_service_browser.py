"""The analyst page in a real browser: Playwright drives the system Chromium against a live server.

Upload through the page -> overlay canvas and score appear -> the threshold slider re-thresholds in the page
(canvas pixels change) -> downloads are the mask at native size. Skips (with the reason) when Playwright or
Chromium is missing locally; in CI (CI set) it fails instead, so it never silently stops running.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed (pip install -e '.[serve]')")
import browser_support  # noqa: E402

_reason = browser_support.missing_reason()
if _reason and os.environ.get("CI"):
    pytest.fail(f"the browser test must run in CI: {_reason}", pytrace=False)
if _reason:
    pytest.skip(_reason, allow_module_level=True)

from conftest import export_tiny_model  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

import inpaintseg  # noqa: E402
from inpaintseg import fileio, rle  # noqa: E402
from inpaintseg.inference.pipeline import to_png8  # noqa: E402
from inpaintseg.service import BackgroundServer, ServiceSettings  # noqa: E402

W, H = 1600, 1200  # larger than the page's viewer: shown scaled, predicted and drawn at native size

# Overlay canvas statistics, read in the page: alpha sum, pixels drawn (alpha > 0) and outline (white) pixels.
OVERLAY_STATS = """() => {
  const c = document.getElementById('overlay-canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let alpha = 0, drawn = 0, outline = 0;
  for (let i = 0; i < d.length; i += 4) {
    alpha += d[i + 3];
    if (d[i + 3] > 0) drawn++;
    if (d[i] === 255 && d[i + 1] === 255 && d[i + 2] === 255 && d[i + 3] === 255) outline++;
  }
  return {alpha, drawn, outline, width: c.width, height: c.height, k: Number(c.dataset.outlineWidth)};
}"""
LEGEND = "() => Array.from(document.getElementById('legend').getContext('2d').getImageData(0, 0, 256, 1).data)"
VIEWER = "() => { const v = document.getElementById('viewer'); return {left: v.scrollLeft, top: v.scrollTop, " \
         "width: v.scrollWidth, client: v.clientWidth}; }"
# Validation scores of 4 untouched and 4 manipulated images: the untrained model's score (~0.5) is 'uncertain',
# and its stored validation Dice (0.3) loses to all-empty (0.5), so the page shows the banner.
SCORED = [(0.3, 0), (0.45, 0), (0.52, 0), (0.6, 0), (0.4, 0.2), (0.55, 0.2), (0.7, 0.2), (0.8, 0.2)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from inpaintseg.inference.verdicts import calibrate_verdicts

    folder = tmp_path_factory.mktemp("browser")
    model = inpaintseg.load_model(export_tiny_model(folder / "model"), device="cpu")
    model.config = model.config.updated({"postprocess": {"verdicts": calibrate_verdicts(SCORED, model_dice=0.3)}})
    yy, xx = np.mgrid[0:H, 0:W]
    rng = np.random.default_rng(0)
    image = np.dstack([(xx * 255 // W), (yy * 255 // H), ((xx + yy) % 256)]).astype(np.uint8)
    image[300:700, 500:1100] = rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)
    path = folder / "large scene.png"
    fileio.write_png(path, image)
    with BackgroundServer(model, ServiceSettings()) as url:
        yield model, url, path, image


def pixels_above(page) -> int:
    return int(page.get_attribute("#fact-area", "data-pixels"))


def frame(w: int, h: int, k: int) -> int:
    """Pixels of a band k wide along the border of a w x h image (the outline of a mask that is everything)."""
    return w * h - (w - 2 * k) * (h - 2 * k)


def save_download(page, button: str, folder):
    with page.expect_download() as info:
        page.click(button)
    download = info.value
    target = folder / download.suggested_filename
    download.save_as(target)
    return target


def test_upload_verdict_overlay_zoom_threshold_and_downloads_in_chromium(served, tmp_path):
    from inpaintseg.inference.overlays import viridis_lut

    model, url, path, image = served
    expected = model.predict(image)
    prob8 = to_png8(expected.probability)
    with sync_playwright() as p:
        browser = browser_support.launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            browser_support.upload(page, url, path)

            # The banner: this model's validation Dice loses to the all-empty answer.
            assert "does not beat the trivial 'all-empty' answer" in page.text_content("#quality-banner")
            assert page.is_visible("#quality-banner")
            assert "Trained on" in page.text_content("#model-info") or "Verdict levels" in page.text_content("#model-info")
            # The verdict: the server's level and the false-alarm rate at this score.
            verdict = model.verdict(expected.score)
            assert page.text_content("#score") == f"{expected.score:.3f}"
            assert page.text_content("#label") == verdict.level == "uncertain"
            far = page.text_content("#far")
            assert f"False-alarm rate at this score: {verdict.false_alarm_rate:.0%}." in far
            assert f"{round(verdict.false_alarm_rate * 4)} of the 4 untouched validation images score" in far
            assert "a coarse estimate" in far  # 4 untouched images are few

            # Drawn at native size, shown fitted; the area is the server's mask's.
            size_text = page.text_content("#fact-size")
            assert "1600 x 1200 px" in size_text and "shown at" in size_text and "shown at 100%" not in size_text
            at_server = page.evaluate(OVERLAY_STATS)
            assert (at_server["width"], at_server["height"]) == (W, H)
            assert pixels_above(page) == int(expected.mask.sum())
            assert f"({int(expected.mask.sum()):,} px)" in page.text_content("#fact-area")
            # Only the marked region is drawn on: every other pixel of the overlay is transparent.
            assert at_server["drawn"] == int(expected.mask.sum()) and 0 < at_server["outline"] < at_server["drawn"]
            # One colour map: the page's legend is the report's viridis.
            legend = np.array(page.evaluate(LEGEND), np.uint8).reshape(256, 4)[:, :3]
            np.testing.assert_array_equal(legend, viridis_lut())

            # At the server's threshold the downloads are the server's exact mask and RLE.
            mask_file = save_download(page, "#dl-mask", tmp_path)
            assert mask_file.name == "large_scene_mask.png"
            np.testing.assert_array_equal(fileio.read_mask(mask_file), expected.mask)
            rle_file = save_download(page, "#dl-rle", tmp_path)
            assert rle_file.read_text().strip() == rle.rle_encode(expected.mask)

            # Zoom to native resolution and pan by dragging; then the side-by-side layout.
            page.click("#zoom-native")
            assert page.text_content("#zoom-value") == "100%"
            before = page.evaluate(VIEWER)
            assert before["width"] >= W > before["client"]
            box = page.locator("#viewer").bounding_box()
            page.mouse.move(box["x"] + 300, box["y"] + 200)
            page.mouse.down()
            page.mouse.move(box["x"] + 100, box["y"] + 100, steps=5)
            page.mouse.up()
            after = page.evaluate(VIEWER)
            assert after["left"] > before["left"] and after["top"] > before["top"]
            assert page.evaluate(OVERLAY_STATS)["k"] == 1  # a one-pixel outline at 100%
            page.click("text=Side by side")
            assert page.is_visible("#heat-canvas") and "shown at" in page.text_content("#fact-size")
            page.click("text=Overlay")
            assert not page.is_visible("#heat-canvas")

            # The slider (keyboard, as a user would) re-thresholds in the page: no new request.
            requests = []
            page.on("request", lambda r: requests.append(r.url) if "/api/" in r.url else None)
            page.focus("#threshold")
            page.keyboard.press("Home")
            assert page.input_value("#threshold") == "0.01"
            low = page.evaluate(OVERLAY_STATS)
            assert pixels_above(page) == int((prob8 >= 3).sum())  # ceil(0.01 x 255) = 3
            assert "re-thresholded here" in page.text_content("#fact-area")
            page.keyboard.press("End")
            high = page.evaluate(OVERLAY_STATS)
            assert pixels_above(page) == int((prob8 >= 253).sum())
            # An untrained model's map sits near 0.5: at 0.01 the region is everything (its outline is the frame),
            # at 0.99 nothing (nothing drawn), and at the stored 0.5 something in between.
            assert prob8.min() >= 3 and prob8.max() < 253
            assert low["outline"] == frame(W, H, low["k"]) and high["outline"] == high["alpha"] == 0
            # The opacity slider fades the fill, not the outline.
            page.keyboard.press("Home")
            page.focus("#opacity")
            page.keyboard.press("Home")
            faded = page.evaluate(OVERLAY_STATS)
            assert faded["alpha"] == 255 * faded["outline"] and faded["outline"] == low["outline"]

            # A threshold between: the downloaded mask and RLE are the 8-bit map re-thresholded at native size.
            page.focus("#threshold")
            page.keyboard.press("Home")
            for _ in range(48):
                page.keyboard.press("ArrowRight")  # 0.01 + 0.48 = 0.49
            assert page.input_value("#threshold") == "0.49"
            cut = math.ceil(0.49 * 255 - 1e-6)
            mask_file = save_download(page, "#dl-mask", tmp_path)
            assert mask_file.name == "large_scene_mask_t0.49.png"
            client_mask = fileio.read_mask(mask_file)
            assert client_mask.shape == (H, W)
            np.testing.assert_array_equal(client_mask, (prob8 >= cut).astype(np.uint8))
            rle_file = save_download(page, "#dl-rle", tmp_path)
            assert rle_file.read_text().strip() == rle.rle_encode((prob8 >= cut).astype(np.uint8))
            heat = cv2.imread(str(save_download(page, "#dl-heatmap", tmp_path)), cv2.IMREAD_UNCHANGED)
            assert heat.shape[:2] == (H, W)
            assert requests == []  # all of it happened in the page
            assert errors == []
        finally:
            browser.close()


def test_an_error_clears_the_previous_result_and_names_the_file_once(served, tmp_path):
    _, url, path, _ = served
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image")
    with sync_playwright() as p:
        browser = browser_support.launch(p)
        try:
            page = browser.new_page()
            browser_support.upload(page, url, path)
            assert page.is_visible("#result")
            page.set_input_files("#file", str(fake))
            page.wait_for_selector("#error:not([hidden])")
            text = page.text_content("#error")
            assert "notes.png" in text and "not an image" in text and text.count("notes.png") == 1
            assert not page.is_visible("#result")  # no stale result from the previous image
        finally:
            browser.close()
