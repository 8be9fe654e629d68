"""Publish simulated traffic to Kafka in event-time order, paced at ``speedup`` × real time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import schemas
from sim.traffic import CityTraffic
from streams import topics as T

US = 1_000_000


def _events(traffic: CityTraffic) -> list[tuple[int, str, bytes, bytes]]:
    out: list[tuple[int, str, bytes, bytes]] = []

    def add(records: list[dict[str, Any]], topic: str, codec: schemas.Codec, key: str) -> None:
        for r in records:
            wire = {k: v for k, v in r.items() if not k.startswith("_")}
            out.append((r["ts_us"], topic, r[key].encode(), codec.encode_wire(wire)))

    add(traffic.passages, T.WIM_PASSAGES, schemas.WIM_PASSAGE, "site_id")
    add(traffic.reads, T.ANPR_READS, schemas.CAMERA_READ, "site_id")
    add(traffic.heartbeats, T.DEVICE_HEARTBEATS, schemas.DEVICE_HEARTBEAT, "device_id")
    out.sort(key=lambda e: e[0])
    return out


async def publish(traffic: CityTraffic, bootstrap: str, partitions: int,
                  speedup: float = 10.0) -> int:
    """Send every event; ``speedup`` 0 sends as fast as the broker takes them."""
    from aiokafka import AIOKafkaProducer

    await T.ensure_topics(bootstrap, partitions)
    events = _events(traffic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 << 20,
                                compression_type=None, linger_ms=5)
    await producer.start()
    try:
        t0_event = events[0][0] if events else 0
        t0_wall = time.monotonic()
        for ts, topic, key, value in events:
            if speedup > 0:
                due = t0_wall + (ts - t0_event) / US / speedup
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return len(events)
