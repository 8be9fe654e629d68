"""Screenshots of the pages for the README (``zhichao up --screenshots DIR``), taken with
Debian's Chromium through Playwright (no browser download)."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# what Chromium needs on a machine without a screen or network beyond loopback
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def take_screenshots(
    dashboard_url: str, officer_url: str, out: Path, desk_url: str | None = None
) -> list[Path]:
    """The dashboard (desktop) and its history section, an officer page (phone) and, given
    ``desk_url``, the reviewers' desk (desktop) as PNG files in ``out``."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = [out / "dashboard.png", out / "officer.png"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            desk = browser.new_context(viewport={"width": 1440, "height": 1000})
            page = desk.new_page()
            page.goto(dashboard_url)
            page.wait_for_function("window.zc && window.zc.refreshes > 0")
            page.wait_for_timeout(1000)
            history = page.locator("#history")
            top = history.bounding_box()["y"]  # the live part above, the history apart
            live = {"x": 0, "y": 0, "width": 1440, "height": top}
            page.screenshot(path=shots[0], full_page=True, clip=live)
            page.wait_for_function("window.zcHistory && window.zcHistory.shown > 0")
            shots.append(out / "history.png")
            history.screenshot(path=shots[-1])
            phone = browser.new_context(
                viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
            )
            page = phone.new_page()
            page.goto(officer_url)
            page.wait_for_function("window.zc && window.zc.connected === true")
            page.wait_for_timeout(1000)
            page.screenshot(path=shots[1])
            if desk_url is not None:
                shots.append(out / "desk.png")
                page = desk.new_page()
                page.goto(desk_url)
                page.wait_for_function("window.zcDesk && window.zcDesk.shown > 0")
                page.wait_for_timeout(500)
                page.screenshot(path=shots[-1], full_page=True)
        finally:
            browser.close()
    return shots
