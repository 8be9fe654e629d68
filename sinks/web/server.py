"""The worker's web server (aiohttp): the officer page (phone), the command-centre dashboard, and
their live feeds as server-sent events.

- ``/login?token=…`` (or the form) checks a token (``sinks.web.access``) and keeps it in an
  HttpOnly, SameSite=Strict cookie; every other route wants that cookie (or a Bearer header).
- ``/officer/events``: the unit's own order stream ``zc:orders:{unit}`` — a snapshot of its live
  orders, then every new order and change, each with its stream id as the event id. A dropped
  connection resumes after the last id it saw (``Last-Event-ID`` or ``?after=``): nothing is
  missed, the stream is the record. A keep-alive every ``KEEPALIVE_S`` re-checks the token.
- ``POST /officer/orders/{id}``: accept (接受) / arrived (到达) / outcome (处置结果, with the
  static re-weigh 复磅). Checked here (the unit's own order, a change its status allows) for a
  clear answer at once, then sent to ``dispatch.feedback``; the worker applies it and the page
  sees the change on its feed. ``POST /officer/status``: 在岗 / 忙碌 / 下班.
- ``/dashboard``, ``/dashboard/state`` (``sinks.web.dashboard``; the case KPIs from ``cases``,
  the store of record, when there is one), ``/dashboard/events`` (alerts
  and order changes, for the page to refresh), ``POST /dashboard/orders/{id}`` (the command
  centre accepts and closes its own orders, 劝返 included, and may cancel any).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from schemas.orders import COMMAND_CENTRE, OrderRefused
from schemas.registry import Registry
from schemas.units import US
from sinks import constants as K
from sinks.records.case_store import CaseStore
from sinks.web import access
from sinks.web.dashboard import dashboard_state
from sinks.web.desk import Review, add_desk
from sinks.web.history import add_history

log = logging.getLogger(__name__)
COOKIE = "zc_token"
KEEPALIVE_S = 10.0
REDIS_SOCKET_TIMEOUT_S = 5.0  # redis-py 8's connections, unless the DSN says otherwise


def feed_block_s(client: Any) -> float:
    """How long a feed's XREAD may block: a keep-alive's time, but under the client's socket
    timeout (redis-py 8 sets 5 s by default). A block longer than that ends in a TimeoutError,
    the feed drops, and the page reconnects every few seconds, missing nothing but delaying
    an order that comes while it does (the page retries after 2 s)."""
    kwargs = client.connection_pool.connection_kwargs  # a DSN's socket_timeout lands here
    socket_timeout = kwargs.get("socket_timeout", REDIS_SOCKET_TIMEOUT_S)
    return KEEPALIVE_S if not socket_timeout else min(KEEPALIVE_S, 0.8 * socket_timeout)


HOME_OF = {"unit": "/officer", "command": "/dashboard", "reviewer": "/desk"}  # after login
SendFeedback = Callable[[dict[str, Any]], Awaitable[None]]
CheckReport = Callable[[dict[str, Any], dict[str, Any]], object]


def page(name: str) -> str:
    return resources.files("sinks.web").joinpath("static", name).read_text(encoding="utf-8")


def sse(event: str, data: bytes | str, event_id: str | None = None) -> bytes:
    text = data.decode() if isinstance(data, bytes) else data
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {text}\n\n".encode()


def feedback_record(unit_id: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A ``zhichao.DispatchFeedback`` record from a page's request body."""
    gvw = body.get("static_gvw_kg")
    try:
        static = float(gvw) if gvw not in (None, "") else None
    except (TypeError, ValueError):
        raise OrderRefused("bad_reweigh", f"复磅重量 {gvw!r} 不是数字") from None
    return {
        "feedback_id": secrets.token_hex(12),
        "unit_id": unit_id,
        "kind": kind,
        "ts_us": int(time.time() * US),
        "order_id": body.get("order_id"),
        "status": body.get("status"),
        "location_id": body.get("location_id") or None,
        "outcome": body.get("outcome"),
        "static_gvw_kg": static,
        "note": (str(body["note"])[:200] if body.get("note") else None),
        "assign_to": body.get("unit_id") if kind == "assign" else None,
    }


def web_app(
    client: Any,
    registry: Registry,
    send_feedback: SendFeedback,
    check_report: CheckReport,
    heartbeat_interval_s: float = 60.0,
    accept_timeout_s: float = 60.0,
    cases: CaseStore | None = None,
    review: Review | None = None,
) -> web.Application:
    """The pages and their APIs over ``client`` (redis.asyncio). ``check_report(order, fb)`` is
    the worker's own rule for a report on an order (it raises ``OrderRefused``), so that a page
    refuses at once, with the reason, what the worker would refuse later. With ``cases`` (the
    store of record) the reviewers' desk is served too (``sinks.web.desk``), checking cases
    with ``review``."""
    routes = web.RouteTableDef()

    async def principal(request: web.Request) -> access.Principal | None:
        token = request.cookies.get(COOKIE)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[7:]
        return await access.who(client, token)

    async def need(request: web.Request, role: str) -> access.Principal:
        who = await principal(request)
        if who is None or who.role != role:
            if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
                raise web.HTTPFound("/login")
            raise web.HTTPUnauthorized(text="需要有效的令牌 (token required)")
        return who

    @routes.get("/")
    async def root(request: web.Request) -> web.Response:
        raise web.HTTPFound("/dashboard")

    @routes.get("/healthz")
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    @routes.get("/login")
    @routes.post("/login")
    async def login(request: web.Request) -> web.Response:
        token = request.query.get("token")
        if request.method == "POST":
            token = (await request.post()).get("token")
        if not token:
            return web.Response(text=page("login.html"), content_type="text/html")
        who = await access.who(client, str(token).strip())
        if who is None:
            log.warning("login refused from %s", request.remote)
            return web.Response(
                text=page("login.html").replace("<!--error-->", "令牌无效或已吊销"),
                content_type="text/html",
                status=401,
            )
        response = web.HTTPFound(HOME_OF[who.role])
        secure = request.secure or request.headers.get("X-Forwarded-Proto") == "https"
        response.set_cookie(
            COOKIE, str(token).strip(), httponly=True, samesite="Strict", secure=secure, path="/"
        )
        raise response

    @routes.get("/logout")
    async def logout(request: web.Request) -> web.Response:
        response = web.HTTPFound("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    def html_page(name: str, role: str):
        async def handler(request: web.Request) -> web.Response:
            await need(request, role)
            return web.Response(text=page(name), content_type="text/html")

        return handler

    routes.get("/officer")(html_page("officer.html", "unit"))
    routes.get("/dashboard")(html_page("dashboard.html", "command"))

    @routes.get("/officer/me")
    async def officer_me(request: web.Request) -> web.Response:
        who = await need(request, "unit")
        unit = registry.units[who.unit_id]
        raw = await client.hget(K.UNITS_KEY, who.unit_id)
        points = [{"id": p.id, "name": p.name} for p in registry.interception_points.values()]
        return web.json_response(
            {
                "unit_id": unit.id,
                "name": unit.name,
                "home": unit.home,
                "state": orjson.loads(raw) if raw else {"status": "available", "at": None},
                "points": points,
            }
        )

    async def live_orders(unit_id: str) -> list[dict[str, Any]]:
        keys = await client.zrange(K.ACTIVE_ORDERS_KEY, 0, -1)
        bodies = await client.mget(keys) if keys else []
        orders = [orjson.loads(b) for b in bodies if b]
        return [o for o in orders if o["unit_id"] == unit_id]

    async def feed(
        request: web.Request,
        who: access.Principal,
        cursors: dict[str, str],
        first: list[bytes],
    ) -> web.StreamResponse:
        """Stream ``cursors``' entries as events after ``first``, until the client leaves or
        its token is revoked."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        block_ms = int(feed_block_s(client) * 1000)
        try:
            await response.write(b"retry: 2000\n\n" + b"".join(first))
            while True:
                got = await client.xread(cursors, count=200, block=block_ms)
                if not got:
                    if await principal(request) is None:
                        await response.write(sse("revoked", "{}"))
                        break
                    await response.write(sse("ping", "{}"))  # the page's watchdog hears it
                    continue
                out = []
                for stream, entries in got:
                    name = stream.decode()
                    for entry_id, fields in entries:
                        cursors[name] = entry_id.decode()
                        for kind, body in fields.items():
                            out.append(sse(kind.decode(), body, entry_id.decode()))
                await response.write(b"".join(out))
        except (ConnectionResetError, asyncio.CancelledError):
            log.debug("feed of %s closed", who.label)
        return response

    @routes.get("/officer/events")
    async def officer_events(request: web.Request) -> web.StreamResponse:
        who = await need(request, "unit")
        stream = K.UNIT_ORDERS_KEY.format(unit_id=who.unit_id)
        after = request.headers.get("Last-Event-ID") or request.query.get("after")
        first = []
        if not after:  # a fresh page: the live orders, then what comes after them
            last = await client.xrevrange(stream, count=1)
            after = last[0][0].decode() if last else "0-0"
            first = [sse("order", orjson.dumps(o), after) for o in await live_orders(who.unit_id)]
        return await feed(request, who, {stream: after}, first)

    async def body_of(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="请求体不是 JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="请求体应为对象")
        return body

    async def report(by: str, order_id: str, body: dict[str, Any]) -> web.Response:
        kind = body.get("action")
        kinds = ("accept", "arrived", "outcome") + (("assign",) if by == COMMAND_CENTRE else ())
        if kind not in kinds:
            raise web.HTTPBadRequest(text=f"action: {', '.join(kinds)}")
        raw = await client.get(K.ORDER_KEY.format(order_id=order_id))
        order = orjson.loads(raw) if raw else None
        if order is None or (by != COMMAND_CENTRE and order["unit_id"] != by):
            raise web.HTTPNotFound(text="没有这条指令")  # another unit's order does not exist here
        try:
            fb = feedback_record(by, kind, {**body, "order_id": order_id})
            check_report(order, fb)
        except OrderRefused as exc:
            return web.json_response({"error": exc.reason, "message": str(exc)}, status=409)
        await send_feedback(fb)
        return web.json_response({"feedback_id": fb["feedback_id"]}, status=202)

    @routes.post("/officer/orders/{order_id}")
    async def officer_report(request: web.Request) -> web.Response:
        who = await need(request, "unit")
        return await report(who.unit_id, request.match_info["order_id"], await body_of(request))

    @routes.post("/officer/status")
    async def officer_status(request: web.Request) -> web.Response:
        who = await need(request, "unit")
        body = await body_of(request)
        if body.get("status") not in ("available", "busy", "off_duty"):
            raise web.HTTPBadRequest(text="status: available, busy 或 off_duty")
        if body.get("location_id") and body["location_id"] not in registry.interception_points:
            raise web.HTTPBadRequest(text="未知的拦截点")
        fb = feedback_record(who.unit_id, "status", body)
        await send_feedback(fb)
        return web.json_response({"feedback_id": fb["feedback_id"]}, status=202)

    @routes.get("/dashboard/state")
    async def dashboard_json(request: web.Request) -> web.Response:
        await need(request, "command")
        state = await dashboard_state(
            client, registry, heartbeat_interval_s, accept_timeout_s, cases
        )
        return web.Response(body=orjson.dumps(state), content_type="application/json")

    @routes.get("/dashboard/events")
    async def dashboard_events(request: web.Request) -> web.StreamResponse:
        who = await need(request, "command")
        cursors = {}
        for stream in (K.ALERT_STREAM, K.ORDER_STREAM):
            last = await client.xrevrange(stream, count=1)
            cursors[stream] = last[0][0].decode() if last else "0-0"
        return await feed(request, who, cursors, [])

    @routes.post("/dashboard/orders/{order_id}")
    async def command_report(request: web.Request) -> web.Response:
        await need(request, "command")
        return await report(COMMAND_CENTRE, request.match_info["order_id"], await body_of(request))

    async def need_command(request: web.Request) -> access.Principal:
        return await need(request, "command")

    add_history(routes, need_command, cases.pool.conninfo if cases else None, registry)
    if cases is not None and review is not None:
        add_desk(routes, principal, cases, page, client, review)
    app = web.Application()
    app.add_routes(routes)
    return app


async def serve(app: web.Application, addr: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, addr, port).start()
    return runner
