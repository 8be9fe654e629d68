"""The reviewers' desk (审核台): the queue of cases, one case's evidence on one screen, and the
actions a reviewer takes on it (``schemas.cases``), written to the store of record.

Before a case is shown, and again before it is filed, its evidence record is checked as the
store of record keeps it (hash, HMAC, and its links to the records before and after it in its
site's chain; the live chain in Redis for a record not copied yet), and the weighing is decided
again from the record (``Review.redecide``): a case whose evidence fails, or whose weighing
decides otherwise now, cannot be filed (行政处罚法 第四十一条). 告知 serves a 违法行为通知书
(HTML and PDF, kept as served); 处罚决定 takes at most the fine schedule's amount and names the
一超四罚 parties. Reviewers act; the command centre may read; a unit's officer cannot open the
desk at all. An action names the case version it was decided on: when another reviewer acted
first, the answer is 409 and nothing changes. Every refusal is a 4xx JSON answer
``{"error", "message"}``, logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from schemas.axle_groups import axle_groups
from schemas.cases import CaseRefused
from schemas.policy import Policy
from sinks.evidence import EvidenceCheck, check_record, check_stored, parse, site_lines
from sinks.records.case_store import CaseConflict, CaseStore, UnknownCase
from sinks.records.notices import make_notice
from sinks.web import access
from sinks.web.answers import json_answer, refusal
from sinks.web.register import add_register

log = logging.getLogger(__name__)
Principal = Callable[[web.Request], Awaitable[access.Principal | None]]
READERS = ("reviewer", "command")
QUEUE_LIMIT = 200
FIELDS = ("reason_code", "note", "fine_cny")


@dataclass(frozen=True)
class Review:
    """What the desk checks and documents a case with: the evidence key, the policy in force
    (axle groups), the issuing agency named on notices, and the worker's second decision of a
    weighing from its evidence record (``streams.review``; an evidence body in, a
    ``Redecision.as_dict()`` out)."""

    evidence_key: bytes
    policy: Policy
    agency: str
    redecide: Callable[[dict[str, Any]], dict[str, Any]] | None = None


_json = json_answer


def _error(
    status: int, error: str, message: str, who: access.Principal | None = None
) -> web.Response:
    return refusal(status, error, message, who, "desk")


@dataclass(frozen=True)
class Examined:
    check: EvidenceCheck
    source: str  # where the record was read: the store of record, or the live chain
    record: dict[str, Any] | None  # its body, when it could be read
    digest: str | None
    redecision: dict[str, Any] | None

    @property
    def fileable(self) -> tuple[bool, str]:
        if not self.check.ok:
            return False, self.check.message
        if self.redecision is not None and self.redecision["agrees"] is False:
            return False, self.redecision["message"]
        return True, ""


def add_desk(
    routes: web.RouteTableDef,
    principal: Principal,
    cases: CaseStore,
    page: Callable[[str], str],
    redis: Any,
    review: Review,
) -> None:
    """The desk's page and API on ``routes``; ``redis`` holds the live evidence chains."""

    async def examine(case: dict[str, Any]) -> Examined:
        wanted = case["verdict"]["evidence_hash"]
        stored = await cases.evidence(case["passage_id"])
        if stored.line is not None:
            line, source = stored.line, "记录库"
            check = check_stored(
                review.evidence_key, stored.line, stored.before, stored.after, wanted
            )
        else:  # not copied into the store of record (yet): its site's live chain
            lines = await site_lines(redis, case["site_id"])
            check = check_record(lines, review.evidence_key, case["passage_id"], wanted)
            line, source = _line_of(lines, case["passage_id"]), "实时证据链"
        record = digest = None
        if line is not None:
            try:
                digest, _, _, record = parse(line)
            except (ValueError, TypeError, UnicodeError):
                record = None  # the check above says why
        redecision = None
        if check.ok and record is not None and review.redecide is not None:
            redecision = review.redecide(record)
        return Examined(check, source, record, digest, redecision)

    async def reader(request: web.Request) -> access.Principal:
        who = await principal(request)
        if who is None:
            if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
                raise web.HTTPFound("/login")
            raise web.HTTPUnauthorized(text="需要有效的令牌 (token required)")
        if who.role not in READERS:
            raise web.HTTPForbidden(text="审核台仅限审核员和指挥中心")
        return who

    add_register(routes, reader, cases, page)  # the case register (案件登记), its search and export

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
                "initial": rules.initial,
                "actions": {"open": "开案", **{n: a.label for n, a in rules.actions.items()}},
                "decline_reasons": rules.decline_reasons,
                "note_required_for": rules.note_required_for,
                "penalty_parties": rules.penalty_parties,
                "agency": review.agency,
            }
        )

    @routes.get("/desk/queue")
    async def desk_queue(request: web.Request) -> web.Response:
        who = await reader(request)
        q = request.query
        state = q.get("state", cases.rules.initial)
        if state not in cases.rules.states:
            return _error(400, "unknown_state", f"未知的案件状态：{state!r}", who)
        day = None
        if q.get("day"):
            try:
                day = dt.date.fromisoformat(q["day"])
            except ValueError:
                return _error(400, "bad_day", f"日期应为 YYYY-MM-DD，而不是 {q['day']!r}", who)
        local = {"": None, "1": True, "0": False}.get(q.get("local", ""), "bad")
        if local == "bad":
            return _error(400, "bad_local", "local 应为 1（本地）、0（外地）或空", who)
        found = await cases.queue(state, q.get("site") or None, QUEUE_LIMIT, day, local)
        return _json(found)

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
        ex = await examine(case)
        fileable, why_not = ex.fileable
        v = case["verdict"]
        notice = await cases.notice(case_id)
        record = ex.record or {}
        return _json(
            {
                **case,
                "evidence": {**ex.check.__dict__, "source": ex.source, "digest": ex.digest},
                "redecision": ex.redecision,
                "fileable": fileable,
                "not_fileable_because": why_not,
                "record": {
                    "device": record.get("device"),
                    "reads": record.get("reads"),
                    "read_ids": record.get("read_ids"),
                    "samples_sha256": record.get("samples_sha256"),
                },
                "groups": axle_groups(v["axle_loads_kg"], v["axle_spacings_m"], review.policy),
                "margin_kg": round(v["gvw_kg"] - v["enforce_threshold_kg"], 1)
                if v.get("enforce_threshold_kg")
                else None,
                "schedule_fine_cny": v.get("fine_cny"),
                "notice": None
                if notice is None
                else {k: notice[k] for k in ("notice_no", "issued_at", "issued_by")}
                | {"sha256": notice["document_sha256"]},
                "penalty": await cases.penalty(case_id),
            }
        )

    @routes.get("/desk/cases/{case_id}/notice.{kind}")
    async def desk_notice(request: web.Request) -> web.Response:
        who = await reader(request)
        case_id, kind = _case_id(request), request.match_info["kind"]
        if case_id is None or kind not in ("html", "pdf"):
            return _error(404, "no_such_document", "没有此文书", who)
        notice = await cases.notice(case_id)
        if notice is None:
            return _error(404, "no_notice", f"案件 {case_id} 尚未告知，没有通知书", who)
        if kind == "html":
            return web.Response(text=notice["html"], content_type="text/html")
        return web.Response(
            body=bytes(notice["pdf"]),
            content_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{notice["notice_no"]}.pdf"'},
        )

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
        action = body["action"]
        names = (*FIELDS, *cases.rules.penalty_parties)
        fields = {k: body.get(k) for k in names if k in body}
        notice = None
        try:
            if action in ("file", "notify"):
                case = await cases.case(case_id)
                ex = await examine(case)
                fileable, why_not = ex.fileable
                if action == "file" and not fileable:  # 行政处罚法 第四十一条
                    return _error(422, "evidence_failed", f"不能立案：{why_not}", who)
                if action == "notify" and case["version"] == version:
                    notice = await asyncio.to_thread(
                        make_notice,
                        case,
                        None if ex.record is None else {**ex.record, "digest": ex.digest},
                        dt.datetime.now(dt.UTC),
                        who.label,
                        review.agency,
                    )
            after = await cases.apply(
                case_id, version, action, who.label, who.role, fields, notice=notice
            )
        except UnknownCase as exc:
            return _error(404, "unknown_case", str(exc), who)
        except CaseConflict as exc:
            return _error(409, "conflict", str(exc), who)
        except CaseRefused as exc:
            return _error(422, exc.reason, str(exc), who)
        log.info("desk: %s %s case %d -> %s", who.label, action, case_id, after["state"])
        return _json(after)


def _line_of(lines: list[bytes], passage_id: str) -> bytes | None:
    needle = f'"passage_id":"{passage_id}"'.encode()
    return next((line for line in lines if needle in line), None)


def _case_id(request: web.Request) -> int | None:
    raw = request.match_info["case_id"]
    return int(raw) if raw.isdigit() and len(raw) < 19 else None
