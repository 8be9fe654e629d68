"""The case register on the desk (案件登记): search the store of record by plate, days, state,
site and local/non-local, and download the same rows as CSV or Excel.

Reading only: whoever the desk lets read (reviewers, the command centre) may search and export;
``reader`` is the desk's check and raises the HTTP answer for anyone else. A filter that cannot
be searched on is a 400 ``{"error", "message"}``, logged; an export larger than
``EXPORT_LIMIT`` is refused rather than cut short, since a partial register reads as a whole.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from sinks.records.case_store import CaseStore
from sinks.records.register import (
    CHINA,
    EXPORT_LIMIT,
    SEARCH_LIMIT,
    BadFilter,
    parse_filters,
    search,
    to_csv,
    to_xlsx,
)
from sinks.web import access
from sinks.web.answers import json_answer, refusal

log = logging.getLogger(__name__)
Reader = Callable[[web.Request], Awaitable[access.Principal]]
EXPORTS = {
    "csv": (to_csv, "text/csv; charset=utf-8"),
    "xlsx": (to_xlsx, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
}


def _json(data: Any, headers: dict[str, str] | None = None) -> web.Response:
    return json_answer(data, headers=headers)


def _refusal(error: str, message: str, who: access.Principal) -> web.HTTPBadRequest:
    """The 400 answer ``{"error", "message"}``, logged; raised by the handler."""
    answer = refusal(400, error, message, who, "register")
    return web.HTTPBadRequest(text=answer.text, content_type="application/json")


def attachment(filename: str, ascii_fallback: str) -> str:
    """A Content-Disposition naming the file in Chinese (RFC 5987 ``filename*``) with an ASCII
    name for clients that know only ``filename``."""
    return f"attachment; filename=\"{ascii_fallback}\"; filename*=UTF-8''{quote(filename)}"


def add_register(
    routes: web.RouteTableDef,
    reader: Reader,
    store: CaseStore,
    page: Callable[[str], str],
) -> None:
    """The register's page and API on ``routes``."""

    async def found(request: web.Request, limit: int) -> tuple[access.Principal, list[Any]]:
        """Who asks and the rows of the request's filters (at most ``limit`` + 1, so that more
        than ``limit`` shows); a bad filter is raised as the 400 answer."""
        who = await reader(request)
        try:
            filters = parse_filters(request.query, store.rules)
        except BadFilter as exc:
            raise _refusal(exc.code, str(exc), who) from None
        rows = await search(store.pool, **filters.as_kwargs(), limit=limit + 1, rules=store.rules)
        return who, rows

    @routes.get("/desk/register")
    async def register_page(request: web.Request) -> web.Response:
        await reader(request)
        return web.Response(text=page("register.html"), content_type="text/html")

    @routes.get("/desk/register/options")
    async def register_options(request: web.Request) -> web.Response:
        who = await reader(request)
        return _json(
            {
                "name": who.label,
                "role": who.role,
                "states": store.rules.states,
                "limit": SEARCH_LIMIT,
                "export_limit": EXPORT_LIMIT,
            }
        )

    @routes.get("/desk/register/search")
    async def register_search(request: web.Request) -> web.Response:
        _, rows = await found(request, SEARCH_LIMIT)
        truncated = len(rows) > SEARCH_LIMIT
        return _json(
            rows[:SEARCH_LIMIT], headers={"X-Register-Truncated": "1" if truncated else "0"}
        )

    async def export(request: web.Request, kind: str) -> web.Response:
        who, rows = await found(request, EXPORT_LIMIT)
        if len(rows) > EXPORT_LIMIT:
            raise _refusal(
                "too_many",
                f"结果超过 {EXPORT_LIMIT} 件，请缩小日期范围或加上其他条件后再导出",
                who,
            )
        write, content_type = EXPORTS[kind]
        day = dt.datetime.now(CHINA).strftime("%Y%m%d")
        log.info("register: %s exported %d cases as %s", who.label, len(rows), kind)
        return web.Response(
            body=write(rows),
            headers={
                "Content-Type": content_type,
                "Content-Disposition": attachment(
                    f"案件登记_{day}.{kind}", f"register_{day}.{kind}"
                ),
                "Cache-Control": "no-store",
            },
        )

    @routes.get("/desk/register/export.csv")
    async def register_csv(request: web.Request) -> web.Response:
        return await export(request, "csv")

    @routes.get("/desk/register/export.xlsx")
    async def register_xlsx(request: web.Request) -> web.Response:
        return await export(request, "xlsx")
