r"""Screenshots of the analyst page and of the report's top, taken with Playwright + the system Chromium.

    python docs/serve_screenshot.py --model demo_out/run --edited demo_out/data/test/images/test_00001.png \
        --untouched demo_out/data/test/images/test_00015.png --large big_photo.png --large-focus 1990,1000 \
        --report demo_out/run/report

Serves the model on a free loopback port in this process and uploads each image through the page as a user
would. Writes docs/serve-edited.png, docs/serve-untouched.png, docs/serve-large.png (side by side
at 67%, centred on --large-focus), docs/serve-error.png (a text file uploaded after a good image) and, with --report,
docs/report.png (the top of report.html). Uses the browser launch of the browser test (tests/browser_support.py:
Debian's chromium, no browser download).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]


def shoot(page, path: Path, full_page: bool = False) -> None:
    """A PNG of the page, written atomically."""
    from inpaintseg.fileio import atomic_write_bytes

    atomic_write_bytes(path, page.screenshot(full_page=full_page))
    print(f"serve_screenshot: wrote {path}", file=sys.stderr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo_out/run", help="model or run folder (default demo_out/run)")
    p.add_argument("--edited", required=True, help="an edited (inpainted) image")
    p.add_argument("--untouched", help="an untouched image")
    p.add_argument("--large", help="a large image (shown zoomed to native pixels, side by side)")
    p.add_argument("--large-focus", default=None, metavar="X,Y",
                   help="the pixel of --large to centre the view on (default: the image's centre)")
    p.add_argument("--report", help="a report folder (holding report.html) for docs/report.png")
    p.add_argument("--out-dir", default=str(REPO / "docs"), help="where the PNGs go (default docs/)")
    p.add_argument("--width", type=int, default=1360)
    p.add_argument("--height", type=int, default=900)
    args = p.parse_args(argv)

    import browser_support
    from playwright.sync_api import sync_playwright

    import inpaintseg
    from inpaintseg.service import BackgroundServer, ServiceSettings

    reason = browser_support.missing_reason()
    if reason:
        print(f"serve_screenshot: {reason}", file=sys.stderr)
        return 2
    out = Path(args.out_dir)
    model = inpaintseg.load_model(args.model, device="cpu")
    with BackgroundServer(model, ServiceSettings()) as url, sync_playwright() as pw:
        browser = browser_support.launch(pw)
        try:
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            browser_support.upload(page, url, Path(args.edited))
            shoot(page, out / "serve-edited.png", full_page=True)
            with tempfile.TemporaryDirectory() as tmp:
                notes = Path(tmp) / "notes.png"
                notes.write_text("meeting notes, not an image")
                page.set_input_files("#file", str(notes))
                page.locator("#error:not([hidden])").wait_for()
                shoot(page, out / "serve-error.png")
            if args.untouched:
                browser_support.upload(page, url, Path(args.untouched))
                shoot(page, out / "serve-untouched.png", full_page=True)
            if args.large:
                browser_support.upload(page, url, Path(args.large))
                page.click("text=Side by side")
                page.click("#zoom-native")
                page.click("#zoom-out")  # 67%: native detail, and more of the region in view
                if args.large_focus:
                    x, y = (float(v) for v in args.large_focus.split(","))
                    viewer = page.locator("#viewer").bounding_box()
                    # drag (as a user pans) the focus pixel to the view's centre
                    zoom = float(page.text_content("#zoom-value").rstrip("%")) / 100
                    left, top = page.evaluate("() => [document.getElementById('viewer').scrollLeft, "
                                              "document.getElementById('viewer').scrollTop]")
                    cx, cy = viewer["x"] + viewer["width"] / 2, viewer["y"] + viewer["height"] / 2
                    dx, dy = x * zoom - left - viewer["width"] / 2, y * zoom - top - viewer["height"] / 2
                    page.mouse.move(cx, cy)
                    page.mouse.down()
                    page.mouse.move(cx - dx, cy - dy, steps=10)
                    page.mouse.up()
                shoot(page, out / "serve-large.png")
            if args.report:
                page.set_viewport_size({"width": 1280, "height": 1100})
                page.goto(Path(args.report, "report.html").resolve().as_uri())
                shoot(page, out / "report.png")
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
