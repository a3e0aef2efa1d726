"""The console in a real browser: Playwright driving Debian's Chromium against `llmopt demo
--console --propose` (started by tests/console_browser.rs).

Checks: the overview lists every route; the outage's alert appears on the alerts page live
(server-sent events, no reload); a pending decision is approved from the UI with a token and the
route's live weights change on its page. Writes a screenshot of every page to OUT_DIR.

Usage: console_browser.py URL TOKEN ROUTES OUT_DIR
"""

import os
import shutil
import sys

from playwright.sync_api import expect, sync_playwright

URL, TOKEN, ROUTES, OUT = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
LIVE = 90_000  # ms: the demo at --speed 60 reaches the outage in about 20 s


def shot(page, name):
    path = os.path.join(OUT, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    print(f"screenshot {path}")


def main():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("Debian's chromium is not installed (scripts/system-packages.sh installs it)")
    os.makedirs(OUT, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        # Overview: every route of the fleet, with live figures.
        page.goto(URL + "/#/")
        for route in ROUTES:
            expect(page.locator(f'#routes tr[data-route="{route}"]')).to_be_visible(timeout=LIVE)
        expect(page.locator("#routes tbody tr")).to_have_count(len(ROUTES))

        # Alerts: the outage's alert arrives while the page stays open (no reload).
        page.goto(URL + "/#/alerts")
        page.wait_for_selector("#firing")
        expect(page.locator("#alert-history tbody tr").first).to_be_visible(timeout=LIVE)
        expect(page.locator("#live")).to_have_class("on", timeout=LIVE)
        shot(page, "alerts")

        # Decisions: approve the first pending one with the operator's token.
        page.fill("#token", TOKEN)
        page.dispatch_event("#token", "change")
        page.goto(URL + "/#/decisions")
        # One that moves traffic (a quantization request changes no weights).
        movers = page.locator("#pending tr[data-decision]").filter(
            has=page.locator("td:nth-child(5)", has_text="shift_traffic")
        ).or_(
            page.locator("#pending tr[data-decision]").filter(
                has=page.locator("td:nth-child(5)", has_text="start_canary")
            )
        )
        expect(movers.first).to_be_visible(timeout=LIVE)
        row = movers.first
        decision = row.get_attribute("data-decision")
        route = row.locator("td").nth(3).inner_text()
        shot(page, "decisions")
        page.goto(URL + "/#/route/" + route)
        page.wait_for_selector("#live-targets")
        before = page.locator("#live-targets").inner_text()
        page.goto(URL + "/#/decisions")
        page.locator(f'#pending tr[data-decision="{decision}"] button.approve').click()
        expect(page.locator(f'#pending tr[data-decision="{decision}"]')).to_have_count(0, timeout=LIVE)
        print(f"approved {decision} on {route}")

        # The route's page shows the new weights once the actuator applied the decision.
        page.goto(URL + "/#/route/" + route)
        expect(page.locator("#live-targets")).not_to_have_text(before, timeout=LIVE)
        after = page.locator("#live-targets").inner_text()
        print(f"weights on {route}: {before!r} -> {after!r}")
        shot(page, "route")

        # The overview again, with half an hour of windows in its charts.
        page.goto(URL + "/#/")
        expect(page.locator("#routes tbody tr")).to_have_count(len(ROUTES))
        page.wait_for_selector("figure.chart svg path")
        shot(page, "overview")

        page.goto(URL + "/#/cost")
        page.wait_for_selector("text=What each decision saved")
        shot(page, "cost")
        page.goto(URL + "/#/quantization")
        page.wait_for_selector("text=Quantization artifacts")
        shot(page, "quantization")
        browser.close()


if __name__ == "__main__":
    main()
