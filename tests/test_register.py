"""The case register (案件登记) on a real PostgreSQL server: search by plate, China days, state,
site and local/non-local; the CSV and Excel exports read back; and the desk's routes for it."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from importlib import resources
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openpyxl import load_workbook

from sim.config import ARCHIVE_START
from sinks.records.case_store import CaseStore
from sinks.records.migrate import upgrade
from sinks.records.register import (
    CHINA,
    COLUMNS,
    BadFilter,
    parse_filters,
    plate_pattern,
    search,
    to_csv,
    to_xlsx,
)
from sinks.web import access
from sinks.web.register import add_register

DAY_A = ARCHIVE_START.date()
DAY_B = DAY_A + dt.timedelta(days=3)
ROW_KEYS = {
    "case_id",
    "state",
    "state_label",
    "plate",
    "plate_rear",
    "site_id",
    "weighed_at",
    "vehicle_class",
    "axle_count",
    "gvw_kg",
    "limit_kg",
    "excess_kg",
    "overload_pct",
    "is_local",
    "reviewer",
    "reason_code",
    "reason_label",
    "fine_cny",
    "evidence_hash",
}


@pytest.fixture(scope="module")
def verdicts(two_day_verdicts):
    return two_day_verdicts


def on_register(pg_dsn, verdicts, work):
    """Store the verdicts, file the two oldest cases and decline the third, then
    ``work(store, acted)``; ``acted`` maps case id to the state it was put in."""
    upgrade(pg_dsn)

    async def run():
        store = await CaseStore(pg_dsn).open()
        try:
            await store.store_verdicts(verdicts)
            queue = await store.queue(limit=3)
            acted = {}
            for case in queue[:2]:
                await store.apply(case["case_id"], 1, "file", "审核员甲", "reviewer")
                acted[case["case_id"]] = "filed"
            await store.apply(
                queue[2]["case_id"],
                1,
                "decline",
                "审核员乙",
                "reviewer",
                {"reason_code": "duplicate"},
            )
            acted[queue[2]["case_id"]] = "not_filed"
            return await work(store, acted)
        finally:
            await store.close()

    return asyncio.run(run())


def test_filters_from_text_are_checked_with_clear_messages():
    f = parse_filters(
        {"plate": " 苏e ", "since": "2026-11-20", "until": "2026-11-23", "local": "0"}
    )
    assert (f.plate, f.since, f.until, f.local) == ("苏e", DAY_A, DAY_B, False)
    assert parse_filters({"state": "", "site": "", "local": ""}) == parse_filters({})
    for query, code, words in (
        ({"since": "20.11.2026"}, "bad_date", "起始日期"),
        ({"until": "2026-13-01"}, "bad_date", "截止日期"),
        ({"state": "lost"}, "unknown_state", "未知的案件状态"),
        ({"since": "2026-11-23", "until": "2026-11-20"}, "bad_range", "晚于截止日期"),
        ({"local": "maybe"}, "bad_local", "本地车辆"),
        ({"plate": "X" * 40}, "bad_plate", "车牌"),
    ):
        with pytest.raises(BadFilter, match=words) as caught:
            parse_filters(query)
        assert caught.value.code == code
    assert plate_pattern("苏e·12_%") == "%苏E12\\_\\%%"
    assert plate_pattern(" ") is None


def test_search_by_plate_days_state_site_and_local(pg_dsn, verdicts):
    enforceable = [v for v in verdicts if v["enforceable"]]

    async def work(store, acted):
        pool = store.pool
        every = await search(pool)
        some = next(r for r in every if r["plate"] and not r["is_local"])
        plate = some["plate"]
        found = {
            "every": every,
            "exact": await search(pool, plate=plate),
            "lower": await search(pool, plate=plate.lower()),
            "prefix": await search(pool, plate=plate[:2]),
            "middle": await search(pool, plate=plate[2:5]),
            "day_a": await search(pool, since=DAY_A, until=DAY_A),
            "from_b": await search(pool, since=DAY_B),
            "until_a": await search(pool, until=DAY_A + dt.timedelta(days=1)),
            "between": await search(
                pool, since=DAY_A + dt.timedelta(days=1), until=DAY_B - dt.timedelta(days=1)
            ),
            "filed": await search(pool, state="filed"),
            "declined": await search(pool, state="not_filed"),
            "site": await search(pool, site_id=some["site_id"]),
            "local": await search(pool, local=True),
            "non_local": await search(pool, local=False),
            "two": await search(pool, limit=2),
            "nothing": await search(pool, plate="京A00000"),
        }
        with pytest.raises(BadFilter):
            await search(pool, state="lost")
        with pytest.raises(BadFilter):
            await search(pool, since=DAY_B, until=DAY_A)
        return found, acted, plate

    found, acted, plate = on_register(pg_dsn, verdicts, work)
    every = found["every"]
    assert len(every) == len(enforceable) > 10
    assert all(set(r) == ROW_KEYS for r in every)
    assert [r["weighed_at"] for r in every] == sorted(
        (r["weighed_at"] for r in every), reverse=True
    )
    assert all(r["weighed_at"].utcoffset() == dt.timedelta(hours=8) for r in every)
    # the same truck on both days: an exact plate finds both, in any case of its letters
    assert len(found["exact"]) == 2 and {r["plate"] for r in found["exact"]} == {plate}
    assert [r["case_id"] for r in found["lower"]] == [r["case_id"] for r in found["exact"]]
    assert {r["weighed_at"].date() for r in found["exact"]} == {DAY_A, DAY_B}
    assert all(
        plate[:2] in r["plate"] or plate[:2] in (r["plate_rear"] or "") for r in found["prefix"]
    )
    assert {r["case_id"] for r in found["exact"]} <= {r["case_id"] for r in found["prefix"]}
    assert {r["case_id"] for r in found["exact"]} <= {r["case_id"] for r in found["middle"]}
    # China days, both ends included
    next_day_us = (ARCHIVE_START + dt.timedelta(days=1)).timestamp() * 1e6
    day_a = [v for v in enforceable if v["ts_us"] < next_day_us]
    assert len(found["day_a"]) == len(day_a) and {
        r["weighed_at"].date() for r in found["day_a"]
    } == {DAY_A}
    assert len(found["from_b"]) == len(enforceable) - len(day_a)
    assert found["until_a"] == found["day_a"] and found["between"] == []
    assert {r["case_id"]: "filed" for r in found["filed"]} == {
        k: s for k, s in acted.items() if s == "filed"
    }
    assert {r["state_label"] for r in found["filed"]} == {"已立案"}
    assert all(r["reviewer"] == "审核员甲" for r in found["filed"])
    [declined] = found["declined"]
    assert (declined["reason_code"], declined["reason_label"], declined["state_label"]) == (
        "duplicate",
        "重复记录",
        "不予立案",
    )
    assert {r["state_label"] for r in every} == {"待审核", "已立案", "不予立案"}
    assert found["site"] and all(
        r["site_id"] == found["exact"][0]["site_id"] for r in found["site"]
    )
    assert len(found["local"]) + len(found["non_local"]) == len(every)
    assert all(r["is_local"] for r in found["local"]) and not any(
        r["is_local"] for r in found["non_local"]
    )
    assert found["two"] == every[:2] and found["nothing"] == []
    by_passage = {v["evidence_hash"]: v for v in enforceable}
    for row in every:
        v = by_passage[row["evidence_hash"]]
        assert (row["gvw_kg"], row["axle_count"], row["vehicle_class"]) == (
            round(v["gvw_kg"], 1),
            v["axle_count"],
            v["vehicle_class"],
        )


def test_csv_and_xlsx_exports_read_back(pg_dsn, verdicts):
    rows = on_register(pg_dsn, verdicts, lambda store, acted: search(store.pool))
    rows[0] = {**rows[0], "reviewer": '=HYPERLINK("x")'}  # a name a spreadsheet would run
    headers = [h for _, h in COLUMNS]

    data = to_csv(rows)
    assert data.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert table[0] == headers and len(table) == len(rows) + 1
    first = dict(zip(headers, table[1], strict=True))
    assert first["案件编号"] == str(rows[0]["case_id"])
    assert first["称重时间"] == rows[0]["weighed_at"].strftime("%Y-%m-%d %H:%M:%S")
    assert first["本地车辆"] in ("是", "否") and first["审核人"].startswith("'=")
    assert {r[1] for r in table[1:]} <= {"待审核", "已立案", "不予立案"}

    book = load_workbook(io.BytesIO(to_xlsx(rows)))
    assert book.sheetnames == ["案件登记"]
    sheet = book["案件登记"]
    cells = list(sheet.iter_rows())
    assert [c.value for c in cells[0]] == headers and all(c.font.b for c in cells[0])
    assert len(cells) == len(rows) + 1
    for row, line in zip(rows, cells[1:], strict=True):
        got = dict(zip(headers, (c.value for c in line), strict=True))
        assert got["案件编号"] == row["case_id"]
        assert got["称重时间"] == row["weighed_at"].replace(tzinfo=None, microsecond=0)
        assert isinstance(got["总重（千克）"], int | float) and got["总重（千克）"] == row["gvw_kg"]
        assert got["轴数"] == row["axle_count"] and got["车牌"] == row["plate"]
        assert got["证据摘要（SHA-256）"] == row["evidence_hash"]
    assert cells[1][13].value == '=HYPERLINK("x")' and cells[1][13].data_type == "s"
    assert to_csv([]).decode("utf-8-sig").strip() == ",".join(headers)


def page(name: str) -> str:
    """The pages as the server serves them (``sinks.web.server.page``)."""
    return resources.files("sinks.web").joinpath("static", name).read_text(encoding="utf-8")


READER = access.Principal("reviewer", None, "审核员甲")


async def fake_reader(request: web.Request) -> access.Principal:
    """The desk's reader, reduced to one token."""
    if request.headers.get("Authorization") != "Bearer good":
        raise web.HTTPUnauthorized(text="需要有效的令牌 (token required)")
    return READER


def over_http(pg_dsn, verdicts, scenario):
    async def work(store, acted):
        routes = web.RouteTableDef()
        add_register(routes, fake_reader, store, page)
        app = web.Application()
        app.add_routes(routes)
        async with TestClient(TestServer(app)) as http:
            return await scenario(http)

    return on_register(pg_dsn, verdicts, work)


GOOD = {"Authorization": "Bearer good"}


def test_the_routes_search_export_and_refuse_bad_filters(pg_dsn, verdicts, caplog):
    async def scenario(http):
        got = {}
        r = await http.get("/desk/register/search", params={"state": "filed"}, headers=GOOD)
        got["filed"] = (r.status, await r.json(), r.headers["X-Register-Truncated"])
        r = await http.get("/desk/register/search", params={"since": "2026-11-23"}, headers=GOOD)
        got["day_b"] = await r.json()
        for query in (
            {"since": "yesterday"},
            {"state": "lost"},
            {"since": "2026-11-23", "until": "2026-11-20"},
        ):
            r = await http.get("/desk/register/search", params=query, headers=GOOD)
            got.setdefault("bad", []).append((r.status, r.content_type, await r.json()))
        r = await http.get("/desk/register/export.csv", params={"state": "filed"}, headers=GOOD)
        got["csv"] = (r.status, r.headers["Content-Disposition"], r.content_type, await r.read())
        r = await http.get("/desk/register/export.xlsx", headers=GOOD)
        got["xlsx"] = (r.status, r.headers["Content-Disposition"], await r.read())
        r = await http.get("/desk/register/export.xlsx", params={"until": "x"}, headers=GOOD)
        got["bad_export"] = (r.status, await r.json())
        r = await http.get("/desk/register", headers=GOOD)
        got["page"] = (r.status, r.content_type, await r.text())
        r = await http.get("/desk/register/options", headers=GOOD)
        got["options"] = await r.json()
        got["nobody"] = [
            (await http.get(path)).status
            for path in ("/desk/register", "/desk/register/search", "/desk/register/export.csv")
        ]
        return got

    got = over_http(pg_dsn, verdicts, scenario)
    status, filed, truncated = got["filed"]
    assert (status, len(filed), truncated) == (200, 2, "0")
    assert {r["state"] for r in filed} == {"filed"} and set(filed[0]) == ROW_KEYS
    assert filed[0]["weighed_at"].endswith("+08:00")
    assert got["day_b"] and all(r["weighed_at"].startswith("2026-11-23") for r in got["day_b"])
    assert [(s, t, b["error"]) for s, t, b in got["bad"]] == [
        (400, "application/json", "bad_date"),
        (400, "application/json", "unknown_state"),
        (400, "application/json", "bad_range"),
    ]
    assert "起始日期" in got["bad"][0][2]["message"]
    assert sum("register: bad_date" in r.getMessage() for r in caplog.records) >= 1
    assert all(
        r.levelname == "WARNING" for r in caplog.records if "register: bad" in r.getMessage()
    )
    status, disposition, content_type, body = got["csv"]
    today = dt.datetime.now(CHINA).strftime("%Y%m%d")
    assert (status, content_type) == (200, "text/csv")
    assert disposition == (
        f'attachment; filename="register_{today}.csv"; '
        f"filename*=UTF-8''{quote(f'案件登记_{today}.csv')}"
    )
    assert len(body.decode("utf-8-sig").strip().splitlines()) == 3  # the header and 2 filed
    status, disposition, body = got["xlsx"]
    assert status == 200 and quote(f"案件登记_{today}.xlsx") in disposition
    assert load_workbook(io.BytesIO(body))["案件登记"].max_row == 1 + sum(
        v["enforceable"] for v in verdicts
    )
    assert (
        got["bad_export"] == (400, got["bad_export"][1])
        and got["bad_export"][1]["error"] == "bad_date"
    )
    status, content_type, html = got["page"]
    assert (status, content_type) == (200, "text/html") and "案件登记" in html
    assert (
        got["options"]["states"]["handed_over"] == "已抄告" and got["options"]["name"] == "审核员甲"
    )
    assert got["nobody"] == [401, 401, 401]
