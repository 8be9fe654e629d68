"""What the command-centre dashboard shows, read from the state the sinks write: the KPI tiles of
DESIGN §5 with their targets, each weigh site's over-limit rate by hour, device status, recent
alerts, open dispatches with their timers, dispatch outcomes and the WIM-vs-static drift.

The day shown is that of the newest verdict (China time): a replayed or accelerated city is
shown on its own clock; in production that is today.
"""

from __future__ import annotations

import math
import time
from typing import Any

import orjson

from schemas.registry import Registry
from schemas.units import US
from sinks import constants as K
from sinks.devices import MISSED_HEARTBEATS_OFFLINE
from sinks.kpi import day_of

HOURS = [f"{h:02d}" for h in range(24)]
CERT_WARNING_DAYS = 30


def _num(raw: dict[bytes, bytes]) -> dict[str, float]:
    return {k.decode(): float(v) for k, v in raw.items()}


def _rate(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def _mean(total: float, n: float) -> float | None:
    return round(total / n, 1) if n else None


def tile(key: str, label: str, value: Any, unit: str, target: str = "", ok: bool | None = None):
    return {"id": key, "label": label, "value": value, "unit": unit, "target": target, "ok": ok}


def device_tile(key: str, label: str, ratio: float | None) -> dict[str, Any]:
    """A device rate against the seeds' target of 90 %."""
    value = None if ratio is None else round(100 * ratio, 1)
    return tile(key, label, value, "%", "≥ 90 %", None if ratio is None else ratio >= 0.9)


def tiles(city: dict[str, float], dispatch: dict[str, float], devices: dict[str, Any]):
    """The KPI tiles, each with its target where the seeds name one (DESIGN §5)."""
    vehicles = city.get("vehicles", 0)
    over = _rate(city.get("overlimit", 0), vehicles)
    online = devices.get("online_rate")
    normal = devices.get("normal_rate")
    local = _rate(dispatch.get("handled_local", 0), city.get("overlimit_local", 0))
    nonlocal_ = _rate(dispatch.get("handled_nonlocal", 0), city.get("overlimit_nonlocal", 0))
    found = dispatch.get("intercepted", 0) + dispatch.get("not_found", 0)
    return [
        tile("vehicles", "称重车辆", int(vehicles), "辆"),
        tile("overlimit_rate", "超限率", over, "%", "< 2 %", None if over is None else over < 2),
        tile("enforceable", "可处罚超限", int(city.get("enforceable", 0)), "起"),
        tile(
            "unidentified_rate", "未识别车牌率", _rate(city.get("unidentified", 0), vehicles), "%"
        ),
        device_tile("device_online", "设备在线率", online),
        device_tile("device_normal", "设备正常率", normal),
        tile(
            "local_handled",
            "本地车辆处置率",
            local,
            "%",
            "≥ 50 %",
            None if local is None else local >= 50,
        ),
        tile("nonlocal_handled", "外地车辆处置率", nonlocal_, "%"),
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
    client: Any, registry: Registry, heartbeat_interval_s: float, accept_timeout_s: float
) -> dict[str, Any]:
    now_us = int(time.time() * US)
    day = await newest_day(client)
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
        city, dispatch, devices, drift, alerts, ops, active, *rest = await pipe.execute()
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
        "tiles": tiles(_num(city), _num(dispatch), device_health),
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
