"""The reviewers' desk (审核台): the queue of cases awaiting 审核, one case's evidence, and the
actions a reviewer takes on it (``schemas.cases``), written to the store of record.

Before a case is shown, and again before it is filed, its evidence record is checked in its
site's chain (hash, HMAC, links, the verdict it was sealed on): a case whose evidence fails
cannot be filed (行政处罚法 第四十一条). Reviewers act; the command centre may read; a unit's
officer cannot open the desk at all. An action names the case version it was decided on: when
another reviewer acted first, the answer is 409 and nothing changes. Every refusal is a 4xx
JSON answer ``{"error", "message"}``, logged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from schemas.cases import CaseRefused
from sinks.evidence import EvidenceCheck, check_record, site_lines
from sinks.records.case_store import CaseConflict, CaseStore, UnknownCase
from sinks.web import access

log = logging.getLogger(__name__)
Principal = Callable[[web.Request], Awaitable[access.Principal | None]]
READERS = ("reviewer", "command")
QUEUE_LIMIT = 200


def _json(data: Any, status: int = 200) -> web.Response:
    body = orjson.dumps(data, default=str)
    return web.Response(body=body, status=status, content_type="application/json")


def _error(
    status: int, error: str, message: str, who: access.Principal | None = None
) -> web.Response:
    log.warning("desk: %s (%s) for %s", error, message, who.label if who else "anonymous")
    return _json({"error": error, "message": message}, status)


def add_desk(
    routes: web.RouteTableDef,
    principal: Principal,
    cases: CaseStore,
    page: Callable[[str], str],
    redis: Any,
    evidence_key: bytes,
) -> None:
    """The desk's page and API on ``routes``; ``redis`` holds the evidence chains, checked with
    ``evidence_key`` before a case is shown and again before it is filed."""

    async def evidence_of(case: dict[str, Any]) -> EvidenceCheck:
        lines = await site_lines(redis, case["site_id"])
        return check_record(
            lines, evidence_key, case["passage_id"], case["verdict"]["evidence_hash"]
        )

    async def reader(request: web.Request) -> access.Principal:
        who = await principal(request)
        if who is None:
            if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
                raise web.HTTPFound("/login")
            raise web.HTTPUnauthorized(text="需要有效的令牌 (token required)")
        if who.role not in READERS:
            raise web.HTTPForbidden(text="审核台仅限审核员和指挥中心")
        return who

    @routes.get("/desk")
    async def desk_page(request: web.Request) -> web.Response:
        await reader(request)
        return web.Response(text=page("desk.html"), content_type="text/html")

    @routes.get("/desk/me")
    async def desk_me(request: web.Request) -> web.Response:
        who = await reader(request)
        rules = cases.rules
        return _json(
            {
                "name": who.label,
                "role": who.role,
                "acts": who.role == "reviewer",
                "states": rules.states,
                "actions": {"open": "开案", **{n: a.label for n, a in rules.actions.items()}},
                "decline_reasons": rules.decline_reasons,
                "note_required_for": rules.note_required_for,
            }
        )

    @routes.get("/desk/queue")
    async def desk_queue(request: web.Request) -> web.Response:
        await reader(request)
        state = request.query.get("state", cases.rules.initial)
        if state not in cases.rules.states:
            return _error(400, "unknown_state", f"未知的案件状态：{state!r}")
        site = request.query.get("site") or None
        return _json(await cases.queue(state, site, QUEUE_LIMIT))

    @routes.get("/desk/cases/{case_id}")
    async def desk_case(request: web.Request) -> web.Response:
        who = await reader(request)
        case_id = _case_id(request)
        if case_id is None:
            return _error(400, "bad_case_id", "案件编号应为数字", who)
        try:
            case = await cases.case(case_id)
        except UnknownCase as exc:
            return _error(404, "unknown_case", str(exc), who)
        check = await evidence_of(case)
        return _json({**case, "evidence": check.__dict__})

    @routes.post("/desk/cases/{case_id}")
    async def desk_act(request: web.Request) -> web.Response:
        who = await reader(request)
        if who.role != "reviewer":
            return _error(403, "not_reviewer", "只有审核员可以处理案件", who)
        case_id = _case_id(request)
        if case_id is None:
            return _error(400, "bad_case_id", "案件编号应为数字", who)
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "bad_json", "请求体不是 JSON", who)
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            return _error(400, "bad_request", "请求体应为对象，含 action 与 version", who)
        version = body.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            return _error(400, "bad_version", "version 应为案件当前版本号（整数）", who)
        fields = {k: body.get(k) for k in ("reason_code", "note", "fine_cny") if k in body}
        if body["action"] == "file":  # 行政处罚法 第四十一条: no filing on evidence that fails
            try:
                check = await evidence_of(await cases.case(case_id))
            except UnknownCase as exc:
                return _error(404, "unknown_case", str(exc), who)
            if not check.ok:
                return _error(422, "evidence_failed", f"不能立案：{check.message}", who)
        try:
            after = await cases.apply(case_id, version, body["action"], who.label, who.role, fields)
        except UnknownCase as exc:
            return _error(404, "unknown_case", str(exc), who)
        except CaseConflict as exc:
            return _error(409, "conflict", str(exc), who)
        except CaseRefused as exc:
            return _error(422, exc.reason, str(exc), who)
        log.info("desk: %s %s case %d -> %s", who.label, body["action"], case_id, after["state"])
        return _json(after)


def _case_id(request: web.Request) -> int | None:
    raw = request.match_info["case_id"]
    return int(raw) if raw.isdigit() and len(raw) < 19 else None
