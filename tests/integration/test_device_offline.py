"""A device that stops sending heartbeats turns offline in the KPIs (设备在线率) within three
of its heartbeat intervals, while the others stay online."""

from __future__ import annotations

import asyncio
import time

import redis

import schemas
from sinks import constants as K
from streams import topics as T
from streams.embedded import embedded_stack
from zhichao.up import start_worker, stop_worker

US = 1_000_000
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
            asyncio.run(_beat(stack.bootstrap, devices, 6 * INTERVAL_S, silent))
            kpi = {k.decode(): v.decode() for k, v in client.hgetall(K.DEVICE_KPI_KEY).items()}
        finally:
            stop_worker(worker)
    assert kpi["offline"] == silent, kpi
    assert int(kpi["online"]) == len(devices) - 1 == int(kpi["total"]) - 1
