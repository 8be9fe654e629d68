"""The dashboard's history (历史统计) over HTTP, on real PostgreSQL and Redis: the tables of a range
as JSON, each as CSV and all as XLSX, the same figures as ``zhichao report`` builds; a range
that cannot be read or an unknown site is a clear 400; no store of record is a 503 that says
so; only the command centre may read it."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io

import orjson
import psycopg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from openpyxl import load_workbook

from schemas.policy import load_policy
from schemas.registry import CHINA
from sim.config import SimConfig
from sim.traffic import CitySimulator
from sinks.records.analysis import Period, build_report
from sinks.records.case_store import CaseStore
from sinks.records.load import load_verdicts
from sinks.records.migrate import upgrade
from sinks.web import access
from sinks.web.server import web_app
from streams.feedback import report_check
from streams.stages import decide, measure_passages

START = dt.datetime(2026, 3, 2, 0, 10, tzinfo=CHINA)


@pytest.fixture(scope="module")
def verdicts(registry):
    config = SimConfig(vehicles=500, seed=61, start=START, city_rate_per_s=500 / (2.5 * 86400))
    traffic = CitySimulator(config, registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    return decide(measured, traffic.reads, registry, load_policy(registry.policy))


def on_page(redis_dsn, registry, dsn, requests, role="command"):
    """GET each of ``requests`` (path and query) as ``role``: [(status, headers, body)]."""

    async def run():
        client = aioredis.Redis.from_url(redis_dsn)
        store = await CaseStore(dsn).open() if dsn else None

        async def no_feedback(fb):
            raise AssertionError("history sends no feedback")

        app = web_app(client, registry, no_feedback, report_check(registry), cases=store)
        token = await access.issue(client, role, unit_id="U-KQ-01" if role == "unit" else None)
        out = []
        try:
            async with TestClient(TestServer(app)) as http:
                for path in requests:
                    r = await http.get(path, headers={"Authorization": f"Bearer {token}"})
                    out.append((r.status, r.headers, await r.read()))
        finally:
            if store is not None:
                await store.close()
            await client.aclose()
        return out

    return asyncio.run(run())


QUERY = "range=custom&from=2026-03-02&to=2026-03-04"


def test_a_range_as_json_csv_and_xlsx_holds_the_reports_figures(
    pg_dsn, redis_dsn, registry, verdicts
):
    upgrade(pg_dsn)
    asyncio.run(load_verdicts(pg_dsn, verdicts))
    with psycopg.connect(pg_dsn) as conn:
        want = build_report(conn, registry, Period.days("2026-03-02", "2026-03-04"))
    (js, _, body), (xs, xh, xlsx), (cs, ch, raw) = on_page(
        redis_dsn,
        registry,
        pg_dsn,
        [
            f"/dashboard/history?{QUERY}",
            f"/dashboard/history.xlsx?{QUERY}",
            f"/dashboard/history/site_rates.csv?{QUERY}",
        ],
    )
    assert js == xs == cs == 200
    got = orjson.loads(body)
    assert got["period"] == {"label": "2026-03-02–2026-03-04", "start": "2026-03-02",
                             "last": "2026-03-04"}  # fmt: skip
    assert [t["key"] for t in got["tables"]] == [t.key for t in want.tables]
    for table, mine in zip(got["tables"], want.tables, strict=True):
        assert [tuple(r) for r in table["rows"]] == mine.rows, table["key"]
    vehicles = sum(r[1] for r in want.table("by_class").rows)
    assert vehicles == len(verdicts)  # the whole simulation lies within the three days

    book = load_workbook(io.BytesIO(xlsx))
    for table in want.tables:
        rows = [tuple(r) for r in book[table.title[:31]].iter_rows(values_only=True)]
        assert rows == [table.columns, *table.rows]
    assert "filename*=UTF-8''" in xh["Content-Disposition"]

    assert ch["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    sites = want.table("site_rates")
    assert lines[0] == list(sites.columns)
    assert lines[1:] == [["" if v is None else str(v) for v in row] for row in sites.rows]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("range=decade", "范围应为"),
        ("range=custom&from=2026-03-05&to=2026-03-01", "早于开始日期"),
        ("range=custom&from=2026-3-5&to=2026-03-09", "日期应写作"),
        ("range=custom&from=2024-01-01&to=2026-03-01", "最长 400 天"),
        ("range=month&site=NOWHERE", "不在登记册中"),
    ],
)
def test_a_range_that_cannot_be_read_is_a_clear_400(pg_dsn, redis_dsn, registry, query, says):
    upgrade(pg_dsn)
    [(status, _, body)] = on_page(redis_dsn, registry, pg_dsn, [f"/dashboard/history?{query}"])
    assert status == 400 and says in body.decode()


def test_without_a_store_of_record_history_says_so(redis_dsn, registry):
    [(status, _, body)] = on_page(redis_dsn, registry, None, ["/dashboard/history?range=today"])
    assert status == 503 and "未配置记录库" in body.decode()


def test_an_officer_cannot_read_the_history(pg_dsn, redis_dsn, registry):
    upgrade(pg_dsn)
    [(status, _, _)] = on_page(
        redis_dsn, registry, pg_dsn, ["/dashboard/history?range=today"], role="unit"
    )
    assert status == 401


@pytest.mark.parametrize(
    ("kind", "first", "last", "before_first", "before_last"),
    [
        ("today", "2026-03-04", "2026-03-04", "2026-03-03", "2026-03-03"),
        # a Wednesday: from its Monday, against the same weekdays a week earlier
        ("week", "2026-03-02", "2026-03-04", "2026-02-23", "2026-02-25"),
        # to date, against as many days from the start of the month or quarter before
        ("month", "2026-03-01", "2026-03-04", "2026-02-01", "2026-02-04"),
        ("quarter", "2026-01-01", "2026-03-04", "2025-10-01", "2025-12-02"),
    ],
)
def test_the_named_ranges_and_what_they_are_compared_with(
    kind, first, last, before_first, before_last
):
    def days(p):
        return p.start.isoformat(), (p.end - dt.timedelta(days=1)).isoformat()

    p = Period.named(kind, dt.date(2026, 3, 4))
    assert days(p) == (first, last)
    assert days(p.previous()) == (before_first, before_last)


def test_a_month_to_date_is_never_compared_with_more_than_the_month_before():
    p = Period.named("month", dt.date(2026, 3, 31))
    assert (p.previous().start, p.previous().end) == (dt.date(2026, 2, 1), dt.date(2026, 3, 1))
