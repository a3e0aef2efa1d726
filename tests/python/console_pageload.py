"""Times the console's overview page in Debian's Chromium (Playwright): from navigation start to
the routes table filled and every chart drawn, over several loads. Run by
loadtest/console.sh against `llmopt bench console --serve`.

Usage: console_pageload.py URL ROUTES LOADS
"""

import json
import shutil
import statistics
import sys

from playwright.sync_api import sync_playwright

URL, ROUTES, LOADS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

with sync_playwright() as p:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("Debian's chromium is not installed (scripts/system-packages.sh installs it)")
    browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    times = []
    for i in range(LOADS + 1):
        page.goto("about:blank")
        page.goto(URL + "/#/")
        page.wait_for_function(
            f"document.querySelectorAll('#routes tbody tr').length === {ROUTES}"
            " && document.querySelectorAll('figure.chart svg').length === 4",
            timeout=60_000,
        )
        ms = page.evaluate("performance.now()")
        if i > 0:  # the first load warms the browser's caches
            times.append(ms)
    browser.close()
print(json.dumps({"routes": ROUTES, "loads": LOADS, "median_ms": statistics.median(times),
                  "max_ms": max(times)}))
