"""The reviewers' desk (审核台) in Debian's Chromium, on the live stack: a reviewer files one
case with the keyboard and declines another with a reason; a second reviewer acting on a case
the first has filed gets the conflict and nothing changes; the command centre only reads; an
officer cannot open the desk."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import redis.asyncio as aioredis

from sinks.web import access
from tests.browser.conftest import publish_traffic


def issue_reviewer(live, name: str) -> str:
    async def issue():
        client = aioredis.Redis.from_url(live.stack.redis_dsn)
        try:
            return await access.issue(client, "reviewer", label=name)
        finally:
            await client.aclose()

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's loop
        return pool.submit(asyncio.run, issue()).result()


def case_rows(live) -> dict[int, tuple[str, int, str | None]]:
    with psycopg.connect(live.stack.pg_dsn) as conn:
        rows = conn.execute("SELECT case_id, state, version, reviewer FROM cases").fetchall()
    return {case_id: (state, version, reviewer) for case_id, state, version, reviewer in rows}


@pytest.fixture(scope="module")
def cases(live, registry):
    publish_traffic(live, registry, vehicles=120, seed=19)
    live.wait(lambda: len(case_rows(live)) >= 4, timeout_s=120)
    return case_rows(live)


def open_desk(browser, url):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("window.zcDesk && window.zcDesk.shown > 0", timeout=60_000)
    return page


def shown_case(page) -> int:
    return int(page.locator("#queue tr.sel").get_attribute("data-id"))


def test_a_reviewer_files_with_the_keyboard_and_declines_with_a_reason(live, browser, cases):
    page = open_desk(browser, live.url("reviewer"))
    assert page.url.endswith("/desk")
    first = shown_case(page)
    page.keyboard.press("a")
    page.wait_for_function(
        "document.getElementById('message').textContent.includes('已立案')", timeout=60_000
    )
    page.wait_for_function("window.zcDesk.shown > 1", timeout=60_000)  # the next case of the queue
    second = shown_case(page)
    assert second != first
    page.select_option("#reason", "plate_mismatch")
    page.click("#decline")
    page.wait_for_function(
        "document.getElementById('message').textContent.includes('不予立案')", timeout=60_000
    )
    rows = case_rows(live)
    assert rows[first] == ("filed", 2, "演示审核员")
    assert rows[second] == ("not_filed", 2, "演示审核员")
    page.context.close()


def test_a_second_reviewer_on_a_filed_case_sees_the_conflict(live, browser, cases):
    first = open_desk(browser, live.url("reviewer"))
    other = open_desk(
        browser, f"http://127.0.0.1:{live.web_port}/login?token=" + issue_reviewer(live, "审核员乙")
    )
    case_id = shown_case(first)
    assert shown_case(other) == case_id  # both look at the oldest case
    first.keyboard.press("a")
    first.wait_for_function(
        "document.getElementById('message').textContent.includes('已立案')", timeout=60_000
    )
    other.select_option("#reason", "duplicate")
    other.click("#decline")
    other.wait_for_function(
        "document.getElementById('message').textContent.includes('冲突')", timeout=60_000
    )
    assert case_rows(live)[case_id] == ("filed", 2, "演示审核员")
    first.context.close()
    other.context.close()


def test_the_command_centre_only_reads_and_an_officer_cannot_open_the_desk(
    live, browser, cases, registry
):
    context = browser.new_context()
    page = context.new_page()
    page.goto(live.url("command"))  # lands on the dashboard
    page.goto(f"http://127.0.0.1:{live.web_port}/desk")
    page.wait_for_function("window.zcDesk && window.zcDesk.shown > 0", timeout=60_000)
    assert page.locator("#file").is_disabled()
    assert "只能查看" in page.locator("#message").text_content()
    context.close()
    officer = browser.new_context()
    page = officer.new_page()
    page.goto(live.url(next(iter(registry.units))))
    response = page.goto(f"http://127.0.0.1:{live.web_port}/desk")
    assert response.status == 403
    officer.close()
