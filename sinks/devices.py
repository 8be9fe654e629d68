"""Device health from heartbeats: last seen, reported status, and online / normal rates
(DESIGN §5: device online rate and normal rate, target ≥ 90 %)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sinks import constants as K

MISSED_HEARTBEATS_OFFLINE = 3  # offline after this many intervals without a heartbeat


@dataclass(frozen=True)
class DeviceHealth:
    total: int
    online: int
    normal: int
    offline_ids: tuple[str, ...]
    abnormal_ids: tuple[str, ...] = ()  # online, but reporting something other than ok

    @property
    def online_rate(self) -> float:
        return self.online / self.total if self.total else 0.0

    @property
    def normal_rate(self) -> float:
        return self.normal / self.total if self.total else 0.0


def latest_heartbeats(heartbeats: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest heartbeat of each device in a batch (older ones change nothing)."""
    latest: dict[str, dict[str, Any]] = {}
    for hb in heartbeats:
        seen = latest.get(hb["device_id"])
        if seen is None or hb["ts_us"] > seen["ts_us"]:
            latest[hb["device_id"]] = hb
    return latest


def health(
    device_ids: list[str], states: dict[str, dict[str, Any]], now_us: int, interval_s: float
) -> DeviceHealth:
    """Which of ``device_ids`` are online (heard within the allowance) and normal at ``now_us``."""
    allowance_us = MISSED_HEARTBEATS_OFFLINE * interval_s * 1e6
    online, normal, offline, abnormal = 0, 0, [], []
    for device_id in device_ids:
        state = states.get(device_id)
        if state is None or now_us - int(state["last_seen_us"]) > allowance_us:
            offline.append(device_id)
            continue
        online += 1
        if state.get("status") == "ok":
            normal += 1
        else:
            abnormal.append(device_id)
    return DeviceHealth(len(device_ids), online, normal, tuple(offline), tuple(abnormal))


async def write_heartbeats(client: Any, heartbeats: list[dict[str, Any]], ttl_s: int) -> None:
    """Record the newest heartbeat per device, never moving a device's clock backwards."""
    latest = latest_heartbeats(heartbeats)
    if not latest:
        return
    async with client.pipeline(transaction=False) as pipe:
        for device_id in latest:
            pipe.hget(K.DEVICE_KEY.format(device_id=device_id), "last_seen_us")
        stored = await pipe.execute()
    async with client.pipeline(transaction=False) as pipe:
        for (device_id, hb), before in zip(latest.items(), stored, strict=True):
            if before is not None and int(before) >= hb["ts_us"]:
                continue
            key = K.DEVICE_KEY.format(device_id=device_id)
            pipe.hset(
                key,
                mapping={
                    "site_id": hb["site_id"],
                    "last_seen_us": hb["ts_us"],
                    "status": hb["status"],
                    "detail": hb.get("detail") or "",
                },
            )
            pipe.expire(key, ttl_s)
            pipe.sadd(K.DEVICES_KEY, device_id)
        await pipe.execute()


async def device_kpis(
    client: Any, device_ids: list[str], interval_s: float, wall_now_us: int
) -> DeviceHealth:
    """Judge every registered device and store the result in ``zc:health:devices`` (设备在线率).
    "Now" is the later of the wall clock and the newest heartbeat: a replayed or accelerated
    city is judged on its own clock, and if every device falls silent the wall clock still
    moves on and they all turn offline."""
    async with client.pipeline(transaction=False) as pipe:
        for device_id in device_ids:
            pipe.hgetall(K.DEVICE_KEY.format(device_id=device_id))
        raw = await pipe.execute()
    states = {
        d: {k.decode(): v.decode() for k, v in r.items()}
        for d, r in zip(device_ids, raw, strict=True)
        if r
    }
    newest = max((int(s["last_seen_us"]) for s in states.values()), default=0)
    now_us = max(newest, wall_now_us)
    h = health(device_ids, states, now_us, interval_s)
    await client.hset(
        K.DEVICE_KPI_KEY,
        mapping={
            "total": h.total,
            "online": h.online,
            "normal": h.normal,
            "online_rate": round(h.online_rate, 4),
            "normal_rate": round(h.normal_rate, 4),
            "offline": ",".join(h.offline_ids),
            "judged_at_us": now_us,
        },
    )
    return h
