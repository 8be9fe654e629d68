"""What the command-centre dashboard shows, read from the state the sinks write: the KPI tiles of
DESIGN §5 with their targets, each weigh site's over-limit rate by hour, device status, recent
alerts, open dispatches with their timers, dispatch outcomes and the WIM-vs-static drift.

The day shown is that of the newest verdict (China time): a replayed or accelerated city is
shown on its own clock; in production that is today.

The case workflow's KPIs (有效案件处罚率, 本地车辆处置率, 抄告, the review backlog and times) are
read from the store of record (``sinks.records.kpis``) for the cases weighed in the shown day's
year, with that year's targets. Without a store of record their tiles say so; a store that does
not answer in ``CASES_TIMEOUT_S`` shows them as unavailable (logged) and the rest of the page
as usual. The interception counters of the dispatch loop are shown as their own tiles
(本地/外地车辆拦截处置率): they are not the case KPI.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
import psycopg_pool

from schemas.registry import CHINA, Registry
from schemas.units import US
from sinks import constants as K
from sinks.devices import MISSED_HEARTBEATS_OFFLINE
from sinks.kpi import day_of
from sinks.records.kpis import case_kpis, default_targets, year_targets

if TYPE_CHECKING:
    from sinks.records.case_store import CaseStore

log = logging.getLogger(__name__)
HOURS = [f"{h:02d}" for h in range(24)]
CERT_WARNING_DAYS = 30
CASES_TIMEOUT_S = 3.0  # the store of record's answer, or the case tiles show as unavailable
NO_STORE = "未连接记录库"  # no store of record configured: there are no case figures
STORE_DOWN = "记录库暂不可用"  # configured, but it did not answer


def _num(raw: dict[bytes, bytes]) -> dict[str, float]:
    return {k.decode(): float(v) for k, v in raw.items()}


def _rate(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def _mean(total: float, n: float) -> float | None:
    return round(total / n, 1) if n else None


def tile(
    key: str,
    label: str,
    value: Any,
    unit: str,
    target: str = "",
    ok: bool | None = None,
    detail: str = "",
    unavailable: bool = False,
):
    return {
        "id": key,
        "label": label,
        "value": value,
        "unit": unit,
        "target": target,
        "ok": ok,
        "detail": detail,
        "unavailable": unavailable,
    }


def device_tile(key: str, label: str, ratio: float | None) -> dict[str, Any]:
    """A device rate against the seeds' target of 90 %."""
    value = None if ratio is None else round(100 * ratio, 1)
    return tile(key, label, value, "%", "≥ 90 %", None if ratio is None else ratio >= 0.9)


def _target(pct: float | None) -> str:
    return "" if pct is None else f"≥ {pct:g} %"


def cases_unavailable(connected: bool, year: int) -> dict[str, Any]:
    """The case KPIs when there are none to show: no store of record (``connected`` False),
    or one that did not answer; with the year's targets all the same."""
    return {"connected": connected, "available": False, "year": year, "targets": year_targets(year)}


def rate_tile(key: str, label: str, r: dict[str, Any], parts: tuple[str, str]) -> dict[str, Any]:
    """A case rate with its year's target and the counts it is made of."""
    detail = f"{parts[0]} {r['numerator']} / {parts[1]} {r['denominator']}"
    return tile(key, label, r["value"], "%", _target(r["target"]), r["met"], detail)


def case_tiles(cases: dict[str, Any]) -> list[dict[str, Any]]:
    """The case workflow's tiles from the store of record; without one, the two KPIs the plan
    sets targets for, saying that there is none (no stand-in figure is shown as the KPI)."""
    if not cases["available"]:
        targets = cases["targets"]
        why = STORE_DOWN if cases["connected"] else NO_STORE
        out = [
            tile(
                "case_penalty_rate", "有效案件处罚率", None, "%", _target(targets["penalty_rate"])
            ),
            tile(
                "local_handled",
                "本地车辆处置率",
                None,
                "%",
                _target(targets["local_handling_rate"]),
            ),
        ]
        if cases["connected"]:
            out += [
                tile("case_handover", "异地案件抄告率", None, "%"),
                tile("review_backlog", "待审核案件", None, "件"),
                tile("review_h", "称重→审核 中位", None, "小时"),
                tile("notice_h", "审核→告知 中位", None, "小时"),
            ]
        return [{**t, "detail": why, "unavailable": True} for t in out]
    backlog, review, notice = cases["backlog"], cases["review_h"], cases["notice_h"]
    age = backlog["oldest_age_h"]
    return [
        rate_tile("case_penalty_rate", "有效案件处罚率", cases["penalty_rate"], ("已处罚", "立案")),
        rate_tile(
            "local_handled", "本地车辆处置率", cases["local_handling_rate"], ("处置", "立案")
        ),
        rate_tile("case_handover", "异地案件抄告率", cases["handover_share"], ("抄告", "立案")),
        tile(
            "review_backlog",
            "待审核案件",
            backlog["pending_review"],
            "件",
            detail="" if age is None else f"最久 {age:.1f} 小时",
        ),
        tile("review_h", "称重→审核 中位", review["median"], "小时", detail=f"{review['n']} 件"),
        tile("notice_h", "审核→告知 中位", notice["median"], "小时", detail=f"{notice['n']} 件"),
    ]


async def cases_state(cases: CaseStore | None, day: str) -> dict[str, Any]:
    """The case KPIs of the year of ``day`` (``sinks.records.kpis.case_kpis``), under
    ``connected`` and ``available``; a store of record that cannot answer is logged and shown
    as unavailable, never an error of the page."""
    today = dt.date.fromisoformat(day)
    if cases is None:
        return cases_unavailable(False, today.year)
    try:
        kpis = await asyncio.wait_for(case_kpis(cases.pool, today.year, today), CASES_TIMEOUT_S)
    except (psycopg.Error, psycopg_pool.PoolTimeout, OSError, TimeoutError) as exc:
        log.warning(
            "dashboard: no case KPIs, the store of record did not answer: %s",
            str(exc) or type(exc).__name__,
        )
        return {**cases_unavailable(True, today.year), "error": type(exc).__name__}
    return {"connected": True, "available": True, **kpis}


def overlimit_tile(over: float | None, year: int) -> dict[str, Any]:
    """The city's over-limit rate today against the year's ceiling (``targets.yaml``)."""
    targets = default_targets()
    target = targets.for_year("overlimit_rate", year)
    if target is None:
        return tile("overlimit_rate", "超限率", over, "%")
    at_most = targets.at_most("overlimit_rate")
    met = None if over is None else (over <= target if at_most else over >= target)
    bound = f"{'≤' if at_most else '≥'} {target:g} %"
    return tile("overlimit_rate", "超限率", over, "%", bound, met)


def tiles(
    city: dict[str, float],
    dispatch: dict[str, float],
    devices: dict[str, Any],
    cases: dict[str, Any] | None = None,
):
    """The KPI tiles, each with its target where the seeds name one (DESIGN §5); ``cases``:
    the case KPIs as ``cases_state`` gives them."""
    vehicles = city.get("vehicles", 0)
    over = _rate(city.get("overlimit", 0), vehicles)
    online = devices.get("online_rate")
    normal = devices.get("normal_rate")
    local = _rate(dispatch.get("handled_local", 0), city.get("overlimit_local", 0))
    nonlocal_ = _rate(dispatch.get("handled_nonlocal", 0), city.get("overlimit_nonlocal", 0))
    found = dispatch.get("intercepted", 0) + dispatch.get("not_found", 0)
    cases = cases or cases_unavailable(False, dt.datetime.now(CHINA).year)
    return [
        tile("vehicles", "称重车辆", int(vehicles), "辆"),
        overlimit_tile(over, cases["year"]),
        tile("enforceable", "可处罚超限", int(city.get("enforceable", 0)), "起"),
        tile(
            "unidentified_rate", "未识别车牌率", _rate(city.get("unidentified", 0), vehicles), "%"
        ),
        device_tile("device_online", "设备在线率", online),
        device_tile("device_normal", "设备正常率", normal),
        *case_tiles(cases),
        # the dispatch loop's own figures: over-limit verdicts whose interception order was
        # handled (拦截 or 劝返), not the cases settled
        tile("local_intercepted", "本地车辆拦截处置率", local, "%"),
        tile("nonlocal_intercepted", "外地车辆拦截处置率", nonlocal_, "%"),
        tile(
            "orders",
            "调度指令",
            int(
                dispatch.get("intercept", 0)
                + dispatch.get("refuse_entry", 0)
                + dispatch.get("command_centre", 0)
            ),
            "条",
        ),
        tile("intercepted", "已拦截", int(dispatch.get("intercepted", 0)), "辆"),
        tile("yield", "拦截成功率", _rate(dispatch.get("intercepted", 0), found), "%"),
        tile(
            "accept_s",
            "预警→接受 平均",
            _mean(dispatch.get("accept_s_total", 0), dispatch.get("accepted", 0)),
            "秒",
        ),
        tile(
            "intercept_s",
            "预警→拦截 平均",
            _mean(dispatch.get("intercept_s_total", 0), dispatch.get("intercepted", 0)),
            "秒",
        ),
        tile(
            "reweigh_confirmed",
            "复磅确认率",
            _rate(dispatch.get("reweigh_confirmed", 0), dispatch.get("reweighed", 0)),
            "%",
        ),
    ]


def drift_of(raw: dict[str, float]) -> list[dict[str, Any]]:
    """Per WIM device: re-weighs, mean and spread of (WIM - static) / static in %."""
    devices = sorted({k.rsplit(":", 1)[0] for k in raw})
    out = []
    for d in devices:
        n = raw.get(f"{d}:n", 0)
        if not n:
            continue
        mean = raw.get(f"{d}:sum", 0) / n
        var = max(raw.get(f"{d}:sumsq", 0) / n - mean * mean, 0.0)
        out.append(
            {
                "device_id": d,
                "n": int(n),
                "mean_pct": round(mean, 2),
                "sd_pct": round(math.sqrt(var), 2),
            }
        )
    return out


async def newest_day(client: Any) -> str:
    last = await client.xrevrange(K.VERDICT_STREAM, count=1)
    if last:
        verdict = orjson.loads(last[0][1][b"verdict"])
        return day_of(verdict["ts_us"])
    return day_of(int(time.time() * US))


async def dashboard_state(
    client: Any,
    registry: Registry,
    heartbeat_interval_s: float,
    accept_timeout_s: float,
    cases: CaseStore | None = None,
) -> dict[str, Any]:
    """What the dashboard shows; ``cases``: the store of record, for the case KPIs."""
    now_us = int(time.time() * US)
    day = await newest_day(client)
    case_figures = asyncio.ensure_future(cases_state(cases, day))  # while Redis answers
    sites = registry.weigh_sites
    device_ids = sorted(registry.wim_devices) + sorted(registry.cameras)
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(K.KPI_CITY_DAY_KEY.format(day=day))
        pipe.hgetall(K.DISPATCH_KPI_KEY.format(day=day_of(now_us)))
        pipe.hgetall(K.DEVICE_KPI_KEY)
        pipe.hgetall(K.DRIFT_KEY)
        pipe.xrevrange(K.ALERT_STREAM, count=20)
        pipe.xrevrange(K.OPS_ALERT_STREAM, count=20)
        pipe.zrange(K.ACTIVE_ORDERS_KEY, 0, 99)
        for site in sites:
            for hour in HOURS:
                pipe.hgetall(K.KPI_SITE_HOUR_KEY.format(site_id=site.id, day=day, hour=hour))
        for d in device_ids:
            pipe.hgetall(K.DEVICE_KEY.format(device_id=d))
        try:
            city, dispatch, devices, drift, alerts, ops, active, *rest = await pipe.execute()
        except BaseException:
            case_figures.cancel()
            raise
    case_state = await case_figures
    hourly_raw, device_raw = rest[: 24 * len(sites)], rest[24 * len(sites) :]
    bodies = await client.mget(active) if active else []
    health = {k.decode(): v.decode() for k, v in devices.items()}
    device_health = {
        k: float(health[k])
        for k in ("online_rate", "normal_rate", "online", "total")
        if k in health
    }
    judged_us = int(health.get("judged_at_us", now_us))
    allowance_us = MISSED_HEARTBEATS_OFFLINE * heartbeat_interval_s * US
    return {
        "day": day,
        "now_us": now_us,
        "tiles": tiles(_num(city), _num(dispatch), device_health, case_state),
        "cases": case_state,
        "hourly": {
            "hours": HOURS,
            "sites": [
                {
                    "site_id": site.id,
                    "name": site.name,
                    "rate_pct": [
                        _rate(float(h.get(b"overlimit", 0)), float(h.get(b"vehicles", 0)))
                        for h in hourly_raw[i * 24 : (i + 1) * 24]
                    ],
                }
                for i, site in enumerate(sites)
            ],
        },
        "devices": [
            device_row(d, registry, raw, judged_us, allowance_us)
            for d, raw in zip(device_ids, device_raw, strict=True)
        ],
        "alerts": [orjson.loads(fields[b"alert"]) for _, fields in alerts],
        "ops_alerts": [orjson.loads(fields[b"alert"]) for _, fields in ops],
        "orders": [
            {**o, "age_s": round((now_us - o["ts_us"]) / US, 1), "timeout_s": accept_timeout_s}
            for o in map(orjson.loads, filter(None, bodies))
        ],
        "drift": drift_of(_num(drift)),
        "units": [{"id": u.id, "name": u.name} for u in registry.units.values()],
    }


def device_row(
    device_id: str, registry: Registry, raw: dict[bytes, bytes], now_us: int, allowance_us: float
) -> dict[str, Any]:
    state = {k.decode(): v.decode() for k, v in raw.items()}
    seen = int(state["last_seen_us"]) if "last_seen_us" in state else None
    online = seen is not None and now_us - seen <= allowance_us
    wim = registry.wim_devices.get(device_id)
    camera = registry.cameras.get(device_id)
    site = (wim or camera).site
    cert_days = None
    if wim is not None:
        cert_days = (wim.cert_to_us - now_us) // (86_400 * US)
    if not online:
        status = "离线"
    elif state.get("status") != "ok":
        status = "异常"
    else:
        status = "正常"
    return {
        "device_id": device_id,
        "kind": "称重" if wim else "卡口相机",
        "site_id": site,
        "status": status,
        "detail": state.get("detail", ""),
        "seen_s_ago": None if seen is None else round((now_us - seen) / US),
        "cert_days_left": cert_days,
        "cert_warning": cert_days is not None and cert_days <= CERT_WARNING_DAYS,
    }
