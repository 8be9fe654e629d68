"""The dashboard's history (历史统计): the 通报's tables over a range of days, today, this week,
month or quarter, or any range, read from the store of record, with each table as CSV and all
of them as one XLSX. The command centre only; without a store of record the answer says so.

The tables are built by ``sinks.records.analysis`` on a connection of their own in a thread:
the report's queries are synchronous, and a quarter's sums must not hold the page server's loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
from aiohttp import web

from schemas.registry import CHINA, Registry
from sinks.records.analysis import Period, PeriodError, Report, build_report
from sinks.records.kpis import TargetsError
from sinks.records.report_sheets import to_csv, to_xlsx
from sinks.records.sources import SourceRulesError
from sinks.web.answers import json_answer
from sinks.web.register import EXPORTS, attachment

log = logging.getLogger(__name__)
Need = Callable[[web.Request], Awaitable[Any]]


def _error(answer: type[web.HTTPError], error: str, message: str) -> web.HTTPError:
    """An HTTP error to raise, its body ``{"error", "message"}`` as the desk's answers are."""
    body = orjson.dumps({"error": error, "message": message}).decode()
    return answer(text=body, content_type="application/json")


def as_json(report: Report) -> dict[str, Any]:
    return {
        "period": {
            "label": report.period.label,
            "start": report.period.start.isoformat(),
            "last": (report.period.end - dt.timedelta(days=1)).isoformat(),
        },
        "site": report.site,
        "notes": report.notes,
        "tables": [
            {
                "key": t.key,
                "title": t.title,
                "columns": list(t.columns),
                "rows": [list(r) for r in t.rows],
                "chart": t.chart,
                "note": t.note,
            }
            for t in report.tables
        ],
    }


def add_history(
    routes: web.RouteTableDef, need_command: Need, dsn: str | None, registry: Registry
) -> None:
    def period_of(request: web.Request) -> tuple[Period, str | None]:
        q = request.query
        today = dt.datetime.now(CHINA).date()
        try:
            kind = q.get("range", "today")
            period = Period.named(kind, today, q.get("from", ""), q.get("to", ""))
        except PeriodError as exc:
            raise _error(web.HTTPBadRequest, "bad_range", str(exc)) from exc
        site = q.get("site") or None
        if site is not None and site not in registry.sites:
            raise _error(web.HTTPBadRequest, "unknown_site", f"站点 {site!r} 不在登记册中")
        return period, site

    async def report_for(request: web.Request) -> Report:
        await need_command(request)
        if dsn is None:
            message = "未配置记录库（ZHICHAO_PG_DSN），无历史统计"
            raise _error(web.HTTPServiceUnavailable, "no_store", message)
        period, site = period_of(request)

        def build() -> Report:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                return build_report(conn, registry, period, site)

        try:
            return await asyncio.to_thread(build)
        except psycopg.Error as exc:
            log.error("history %s: the store of record did not answer: %s", period.label, exc)
            raise _error(web.HTTPServiceUnavailable, "store_down", "记录库暂不可用") from exc
        except (SourceRulesError, TargetsError) as exc:  # a policy file an operator broke
            log.error("history %s: %s", period.label, exc)
            raise _error(web.HTTPInternalServerError, "bad_policy", str(exc)) from exc

    @routes.get("/dashboard/history")
    async def history(request: web.Request) -> web.Response:
        return json_answer(as_json(await report_for(request)))

    @routes.get("/dashboard/history.xlsx")
    async def history_xlsx(request: web.Request) -> web.Response:
        report = await report_for(request)
        name = f"通报-{report.period.label}.xlsx"
        return web.Response(
            body=await asyncio.to_thread(to_xlsx, report),
            content_type=EXPORTS["xlsx"][1],
            headers={"Content-Disposition": attachment(name, "history.xlsx")},
        )

    @routes.get("/dashboard/history/{key}.csv")
    async def history_csv(request: web.Request) -> web.Response:
        report = await report_for(request)
        key = request.match_info["key"]
        table = next((t for t in report.tables if t.key == key), None)
        if table is None:
            raise _error(web.HTTPNotFound, "unknown_table", f"没有表 {key}")
        name = f"{table.title}-{report.period.label}.csv"
        return web.Response(
            body=to_csv(table),
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": attachment(name, f"{key}.csv"),
            },
        )
