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

W, H = 1600, 1200  # larger than the page's viewer: shown scaled, predicted at native size

# Canvas pixel statistics, read in the page: overlay alpha sum and outline (cyan) pixel count.
OVERLAY_STATS = """() => {
  const c = document.getElementById('overlay-canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let alpha = 0, outline = 0;
  for (let i = 0; i < d.length; i += 4) {
    alpha += d[i + 3];
    if (d[i] === 0 && d[i + 1] === 255 && d[i + 2] === 255 && d[i + 3] === 255) outline++;
  }
  return {alpha, outline, width: c.width, height: c.height};
}"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    model = inpaintseg.load_model(export_tiny_model(folder / "model"), device="cpu")
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


def save_download(page, button: str, folder):
    with page.expect_download() as info:
        page.click(button)
    download = info.value
    target = folder / download.suggested_filename
    download.save_as(target)
    return target


def test_upload_overlay_threshold_and_downloads_in_chromium(served, tmp_path):
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

            # The overlay and the score are there; the image is shown scaled, the facts say its native size.
            assert page.text_content("#score") == f"{expected.score:.3f}"
            assert page.text_content("#label") in ("manipulated", "original")
            assert "1600 x 1200" in page.text_content("#fact-size") and "shown at" in page.text_content("#fact-size")
            at_server = page.evaluate(OVERLAY_STATS)
            assert at_server["alpha"] > 0 and at_server["width"] < W and at_server["height"] < H
            assert at_server["width"] / at_server["height"] == pytest.approx(W / H, rel=0.01)
            assert pixels_above(page) == int((prob8 >= math.ceil(expected.threshold * 255 - 1e-6)).sum())

            # At the server's threshold the downloads are the server's exact mask and RLE.
            mask_file = save_download(page, "#dl-mask", tmp_path)
            assert mask_file.name == "large_scene_mask.png"
            np.testing.assert_array_equal(fileio.read_mask(mask_file), expected.mask)
            rle_file = save_download(page, "#dl-rle", tmp_path)
            assert rle_file.read_text().strip() == rle.rle_encode(expected.mask)

            # The slider (keyboard, as a user would) re-thresholds in the page: no new request.
            requests = []
            page.on("request", lambda r: requests.append(r.url) if "/api/" in r.url else None)
            page.focus("#threshold")
            page.keyboard.press("Home")
            assert page.input_value("#threshold") == "0.01"
            low = page.evaluate(OVERLAY_STATS)
            assert pixels_above(page) == int((prob8 >= 3).sum())  # ceil(0.01 x 255) = 3
            page.keyboard.press("End")
            high = page.evaluate(OVERLAY_STATS)
            assert pixels_above(page) == int((prob8 >= 253).sum())
            # An untrained model's map sits near 0.5: at 0.01 the mask is everything (its outline is the frame),
            # at 0.99 nothing, and at the stored 0.5 something in between.
            assert prob8.min() >= 3 and prob8.max() < 253
            w, h = at_server["width"], at_server["height"]
            assert low["outline"] == 2 * (w + h) - 4 and high["outline"] == 0
            assert at_server["outline"] not in (low["outline"], 0)
            # The opacity slider fades the heat map, not the outline.
            page.focus("#opacity")
            page.keyboard.press("Home")
            faded = page.evaluate(OVERLAY_STATS)
            assert faded["alpha"] == 0 < high["alpha"]

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


def test_the_page_shows_the_servers_error_message(served, tmp_path):
    _, url, _, _ = served
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image")
    with sync_playwright() as p:
        browser = browser_support.launch(p)
        try:
            page = browser.new_page()
            browser_support.open_page(page, url)
            page.set_input_files("#file", str(fake))
            page.wait_for_selector("#error:not([hidden])")
            assert "notes.png" in page.text_content("#error") and "not an image" in page.text_content("#error")
        finally:
            browser.close()
