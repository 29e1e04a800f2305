"""Screenshot of the analyst page with an overlay (docs/serve.png), taken with Playwright + the system Chromium.

    python docs/serve_screenshot.py --model demo_out/run/model --image demo_out/data/test/images/test_00028.png

Serves the model on a free loopback port in this process, uploads the image through the page as a user would,
waits for the heat map and writes a screenshot of the page. Uses the same browser launch as the browser test
(tests/browser_support.py: Debian's chromium, no browser download).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo_out/run/model", help="model folder (default demo_out/run/model)")
    p.add_argument("--image", required=True, help="the image to upload")
    p.add_argument("--out", default=str(REPO / "docs" / "serve.png"), help="PNG to write (default docs/serve.png)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=860)
    args = p.parse_args(argv)

    import browser_support
    from playwright.sync_api import sync_playwright

    import inpaintseg
    from inpaintseg.fileio import atomic_path
    from inpaintseg.service import BackgroundServer, ServiceSettings

    reason = browser_support.missing_reason()
    if reason:
        print(f"serve_screenshot: {reason}", file=sys.stderr)
        return 2
    model = inpaintseg.load_model(args.model, device="cpu")
    with BackgroundServer(model, ServiceSettings()) as url, sync_playwright() as pw:
        browser = browser_support.launch(pw)
        try:
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            browser_support.upload(page, url, Path(args.image))
            page.evaluate("() => { document.getElementById('model').open = true; }")
            with atomic_path(args.out) as tmp:
                page.screenshot(path=str(tmp.with_suffix(".png")), full_page=True)
                tmp.with_suffix(".png").replace(tmp)
        finally:
            browser.close()
    print(f"serve_screenshot: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
