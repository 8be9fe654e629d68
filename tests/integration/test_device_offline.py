"""Operators hear of devices in trouble: one that stops sending heartbeats turns offline in the
KPIs (设备在线率) within three of its heartbeat intervals while the others stay online; a camera
that publishes a read long after capture (设备上传延迟) and one whose clock runs two minutes
ahead of the others (设备时钟超前) each get an operator's alert, and no other camera does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import redis

import schemas
from schemas import topics as T
from schemas.units import US
from sinks import constants as K
from streams.embedded import embedded_stack
from zhichao.up import start_worker, stop_worker

INTERVAL_S = 2.0
PARTITIONS = 2


async def _beat(bootstrap: str, devices: list[tuple[str, str]], seconds: float, silent: str):
    from sim.publish import producer_for

    await T.ensure_topics(bootstrap, PARTITIONS)
    producer = producer_for(bootstrap)
    await producer.start()
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = int(time.time() * US)
            for device_id, site_id in devices:
                if device_id == silent and time.monotonic() > end - seconds + INTERVAL_S:
                    continue  # one beat, then silence
                beat = {
                    "device_id": device_id,
                    "site_id": site_id,
                    "ts_us": now,
                    "status": "ok",
                    "detail": None,
                    "temperature_c": None,
                }
                await producer.send(
                    T.DEVICE_HEARTBEATS, schemas.DEVICE_HEARTBEAT.encode_wire(beat), key=b"d"
                )
            await producer.flush()
            await asyncio.sleep(INTERVAL_S / 2)
    finally:
        await producer.stop()


def _read(camera: Any, registry: Any, ts_us: int, n: int) -> bytes:
    site = registry.sites[camera.site]
    read = {
        "read_id": f"{camera.id}-{n}",
        "camera_id": camera.id,
        "site_id": camera.site,
        "lane": camera.lane,
        "direction": site.direction,
        "view": camera.view,
        "ts_us": ts_us,
        "plate": "",
        "plate_color": "unknown",
        "confidence": 0.0,
        "char_conf": None,
        "image_ref": None,
    }
    return schemas.CAMERA_READ.encode_wire(read)


async def _send(bootstrap: str, messages: list[tuple[str, bytes, bytes]]) -> None:
    from sim.publish import producer_for

    await T.ensure_topics(bootstrap, PARTITIONS)
    producer = producer_for(bootstrap)
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def _reads_from_late_and_fast_cameras(bootstrap: str, registry: Any) -> tuple[str, str]:
    """Reads of now from every weigh-site front camera (every input partition gets some), then
    one of them again stamped a minute ago (late), and another stamped two minutes ahead."""
    fronts = sorted((c for c in registry.cameras.values() if c.view == "front"), key=lambda c: c.id)
    late, fast = fronts[0], fronts[-1]
    now = int(time.time() * US)
    first = [(T.ANPR_READS, c.site.encode(), _read(c, registry, now, 0)) for c in fronts]
    asyncio.run(_send(bootstrap, first))
    time.sleep(2.0)  # read to their end: the worker compares new records with the others
    asyncio.run(
        _send(
            bootstrap,
            [
                (T.ANPR_READS, fast.site.encode(), _read(fast, registry, now + 120 * US, 1)),
                (T.ANPR_READS, late.site.encode(), _read(late, registry, now - 60 * US, 2)),
            ],
        )
    )
    return late.id, fast.id


def test_a_silent_device_turns_offline_within_three_intervals(tmp_path, registry):
    devices = [(d.id, d.site) for d in registry.wim_devices.values()]
    devices += [(c.id, c.site) for c in registry.cameras.values()]
    silent = devices[0][0]
    with embedded_stack(tmp_path) as stack:
        client = redis.Redis.from_url(stack.redis_dsn)
        worker = start_worker(
            stack,
            PARTITIONS,
            tmp_path / "worker.log",
            extra_env={"ZHICHAO_HEARTBEAT_INTERVAL_S": str(INTERVAL_S)},
        )
        try:
            deadline = time.monotonic() + 180
            while not client.exists(K.WORKER_READY_KEY):
                assert time.monotonic() < deadline and worker.poll() is None, "worker not ready"
                time.sleep(0.3)
            late, fast = _reads_from_late_and_fast_cameras(stack.bootstrap, registry)
            asyncio.run(_beat(stack.bootstrap, devices, 6 * INTERVAL_S, silent))
            kpi = {k.decode(): v.decode() for k, v in client.hgetall(K.DEVICE_KPI_KEY).items()}
            ops = [orjson.loads(f[b"alert"]) for _, f in client.xrange(K.OPS_ALERT_STREAM)]
        finally:
            stop_worker(worker)
    assert kpi["offline"] == silent, kpi
    assert int(kpi["online"]) == len(devices) - 1 == int(kpi["total"]) - 1
    kinds = ("device_late", "device_clock_ahead")
    timing = {(a["device_id"], a["reason"]) for a in ops if a["reason"] in kinds}
    assert timing == {
        (late, "device_late"),
        (fast, "device_clock_ahead"),
    }, ops
    ahead = next(a for a in ops if a["reason"] == "device_clock_ahead")
    assert "超前 120 秒" in ahead["message"] or "超前 119 秒" in ahead["message"], ahead
