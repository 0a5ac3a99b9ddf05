"""Opens two pages of the built site in a headless browser and checks that they render (.ci/docs).

    python docs/check_site.py --browser chromium --site SITE/html -- [browser flags...]

1. The GD/SGD tutorial: the DOM the browser built (`--dump-dom`) holds the notebook's executed
   output figure, an <img> whose file is a real PNG of plausible size; a screenshot of the page
   is not blank.
2. The API reference of the top-level package: the DOM holds the generated entries (for
   instance `graddesc.compile` and `graddesc.fit`, with their "graddesc addition" note and their
   examples).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "img":
            self.srcs += [v for k, v in attrs if k == "src" and v]


def run_browser(browser: str, flags: list, *args: str) -> str:
    proc = subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise SystemExit(f"{browser} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def check_tutorial(browser: str, flags: list, site: str) -> list:
    page = os.path.join(site, "tutorials", "02-gd-sgd-minibatch.html")
    dom = run_browser(browser, flags, "--dump-dom", "file://" + page)
    errors = []
    if "Full-batch GD, SGD and minibatch SGD" not in dom:
        errors.append(f"{page}: the browser's DOM lacks the page's title")
    parser = _Images()
    parser.feed(dom)
    figures = [s for s in parser.srcs if s.endswith(".png") and "_images" in s]
    if not figures:
        errors.append(f"{page}: no executed figure (<img src=..._images/...png>) in the DOM")
    for src in figures:
        path = os.path.normpath(os.path.join(os.path.dirname(page), src))
        with open(path, "rb") as f:
            head = f.read(24)
        size = os.path.getsize(path)
        width = int.from_bytes(head[16:20], "big") if len(head) == 24 else 0
        if not head.startswith(PNG_MAGIC) or size < 5000 or width < 200:
            errors.append(f"{path}: not a plausible figure (PNG {head.startswith(PNG_MAGIC)}, "
                          f"{size} bytes, {width} px wide)")
    with tempfile.TemporaryDirectory() as tmp:
        shot = os.path.join(tmp, "page.png")
        run_browser(browser, flags, "--window-size=1200,2400", f"--screenshot={shot}",
                    "file://" + page)
        import matplotlib.image as mpimg

        pixels = mpimg.imread(shot)
        if pixels.std() < 0.02 or len({tuple(p) for p in pixels[::16, ::16, :3].reshape(-1, 3)
                                        .round(2).tolist()}) < 50:
            errors.append(f"{page}: the screenshot is (nearly) blank")
    print(f"tutorial page: {len(figures)} figure(s) rendered")
    return errors


def check_api(browser: str, flags: list, site: str) -> list:
    page = os.path.join(site, "api", "graddesc.html")
    dom = run_browser(browser, flags, "--dump-dom", "file://" + page)
    errors = []
    entries = re.findall(r'<dt[^>]*id="(graddesc\.[A-Za-z_.]+)"', dom)
    for name in ("graddesc.compile", "graddesc.fit", "graddesc.tensor", "graddesc.zeros"):
        if name not in entries:
            errors.append(f"{page}: no API entry {name} in the DOM")
    if "graddesc addition" not in dom:
        errors.append(f"{page}: no 'graddesc addition' note in the DOM")
    if "&gt;&gt;&gt;" not in dom and ">>>" not in dom:
        errors.append(f"{page}: no example (>>>) in the DOM")
    print(f"API page: {len(entries)} entries rendered")
    return errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--browser", required=True)
    ap.add_argument("--site", required=True, help="the built site's html folder")
    ap.add_argument("flags", nargs="*", help="browser flags (after --)")
    args = ap.parse_args()
    site = os.path.abspath(args.site)
    errors = check_tutorial(args.browser, args.flags, site) + check_api(args.browser,
                                                                        args.flags, site)
    for e in errors:
        print("error:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
