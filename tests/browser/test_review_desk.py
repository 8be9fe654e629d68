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
    assert page.locator("#file").count() == 0  # no actions on a reader's page
    assert "只能查看" in page.locator("#message").text_content()
    case_id, (state, version, _) = next(iter(sorted(case_rows(live).items())))
    approve = page.request.post(
        f"http://127.0.0.1:{live.web_port}/desk/cases/{case_id}",
        data={"action": "file", "version": version},
    )
    assert (approve.status, approve.json()["error"]) == (403, "not_reviewer")
    assert case_rows(live)[case_id] == (state, version, case_rows(live)[case_id][2])
    context.close()
    officer = browser.new_context()
    page = officer.new_page()
    page.goto(live.url(next(iter(registry.units))))
    response = page.goto(f"http://127.0.0.1:{live.web_port}/desk")
    assert response.status == 403
    officer.close()


def test_one_byte_changed_in_a_stored_evidence_record_shows_and_refuses_filing(
    live, browser, cases
):
    pending = sorted(c for c, (state, _, _) in case_rows(live).items() if state == "pending_review")
    case_id = pending[0]  # the oldest, the desk's first
    with psycopg.connect(live.stack.pg_dsn, autocommit=True) as conn:
        (passage_id,) = conn.execute(
            "SELECT passage_id FROM cases WHERE case_id = %s", (case_id,)
        ).fetchone()
        # with the database owner's rights: nobody else gets past the append-only trigger
        conn.execute("ALTER TABLE evidence_records DISABLE TRIGGER evidence_records_append_only")
        changed = conn.execute(
            "UPDATE evidence_records SET line = replace(line, '\"gvw_kg\":', '\"gvw_kg\":1') "
            "WHERE passage_id = %s",
            (passage_id,),
        ).rowcount
        conn.execute("ALTER TABLE evidence_records ENABLE TRIGGER evidence_records_append_only")
    assert changed == 1
    page = open_desk(browser, live.url("reviewer"))
    assert shown_case(page) == case_id
    assert "证据链校验未通过" in page.locator("#evidence").text_content()
    assert page.locator("#file").is_disabled()
    assert "不能立案" in page.locator("#message").text_content()
    page.keyboard.press("a")  # the shortcut does nothing either
    page.wait_for_timeout(500)
    assert case_rows(live)[case_id][:2] == ("pending_review", 1)
    page.context.close()


def penalty_rate_tile(page) -> str:
    page.reload()
    page.wait_for_selector('[data-tile="case_penalty_rate"] .value', timeout=60_000)
    return page.locator('[data-tile="case_penalty_rate"]').text_content()


def test_a_notice_and_a_penalty_move_the_dashboards_penalty_rate(live, browser, cases):
    command = browser.new_context().new_page()
    command.goto(live.url("command"))
    before = penalty_rate_tile(command)
    page = open_desk(browser, live.url("reviewer"))
    page.click('#tabs button[data-s="filed"]')  # a case the first test filed
    page.wait_for_selector("#notify", timeout=60_000)
    case_id = shown_case(page)
    page.keyboard.press("n")
    page.wait_for_selector("#notice a", timeout=60_000)
    assert "违法行为通知书" in page.locator("#notice").text_content()
    pdf = page.request.get(f"http://127.0.0.1:{live.web_port}/desk/cases/{case_id}/notice.pdf")
    assert pdf.status == 200 and pdf.body()[:4] == b"%PDF"
    page.wait_for_selector("#penalize", timeout=60_000)
    assert int(page.input_value("#fine")) > 0  # the schedule's amount, filled in
    page.fill('[data-party="driver_name"]', "张三")
    page.fill('[data-party="transport_company"]', "某物流有限公司")
    page.click("#penalize")
    page.wait_for_selector("#penalty", timeout=60_000)
    assert "张三" in page.locator("#penalty").text_content()
    assert case_rows(live)[case_id][0] == "penalized"
    live.wait(lambda: penalty_rate_tile(command) != before, timeout_s=30)
    assert "有效案件处罚率" in before
    page.context.close()
    command.context.close()


def sightings_this_month(live) -> int:
    """Vehicles in the store of record weighed this month, China time."""
    with psycopg.connect(live.stack.pg_dsn) as conn:
        return conn.execute(
            "SELECT count(*) FROM sightings WHERE date_trunc('month', seen_at AT TIME ZONE "
            "'Asia/Shanghai') = date_trunc('month', now() AT TIME ZONE 'Asia/Shanghai')"
        ).fetchone()[0]


def test_the_command_centre_reads_the_months_history_and_downloads_it(live, browser, cases):
    def stored():
        """every vehicle of the published traffic has its sighting"""
        with psycopg.connect(live.stack.pg_dsn) as conn:
            return conn.execute("SELECT count(*) FROM sightings").fetchone()[0] >= 120

    live.wait(stored, timeout_s=120)
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.goto(live.url("command"))
    page.wait_for_function("window.zcHistory && window.zcHistory.shown > 0", timeout=60_000)
    page.click('.hist-bar button[data-range="month"]')
    page.wait_for_function(
        "window.zcHistory.query === 'range=month' && window.zcHistory.shown > 1", timeout=60_000
    )
    shown = int(page.locator('[data-h="vehicles"]').inner_text().replace(",", ""))
    assert shown == sightings_this_month(live) >= 120
    assert page.locator('.hist-table[data-table="site_rates"] tbody tr').count() >= 1
    with page.expect_download() as download:
        page.click("#h-xlsx")
    import io
    from pathlib import Path

    from openpyxl import load_workbook

    assert download.value.suggested_filename.endswith(".xlsx")
    book = load_workbook(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert {"按车型", "按时段", "各站点超限率与年度目标"} <= set(book.sheetnames)
    context.close()
