"""Publish simulated traffic to Kafka in event-time order, paced at ``speedup`` × real time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import schemas
from schemas import topics as T
from schemas.units import US
from sim.traffic import CityTraffic

Event = tuple[int, str, bytes, bytes, str | None]  # ts, topic, key, value, passage_id


def events_of(traffic: CityTraffic) -> list[Event]:
    """Every record as a wire-format event, sorted by event time."""
    out: list[Event] = []

    def add(records: list[dict[str, Any]], topic: str, codec: schemas.Codec, key: str) -> None:
        for r in records:
            wire = {k: v for k, v in r.items() if not k.startswith("_")}
            out.append(
                (r["ts_us"], topic, r[key].encode(), codec.encode_wire(wire), r.get("passage_id"))
            )

    add(traffic.passages, T.WIM_PASSAGES, schemas.WIM_PASSAGE, "site_id")
    add(traffic.reads, T.ANPR_READS, schemas.CAMERA_READ, "site_id")
    add(traffic.heartbeats, T.DEVICE_HEARTBEATS, schemas.DEVICE_HEARTBEAT, "device_id")
    out.sort(key=lambda e: e[0])
    return out


@dataclass
class PaceClock:
    """Maps event time to wall time: ``origin_us`` happens now, later events ``speedup`` × faster.
    Events before the origin (upstream sightings of the first vehicles) go out at once."""

    origin_us: int
    speedup: float
    wall_origin: float = 0.0

    def __post_init__(self) -> None:
        self.wall_origin = time.monotonic()

    async def wait_until(self, ts_us: int) -> None:
        if self.speedup <= 0:
            return
        delay = self.wall_origin + (ts_us - self.origin_us) / US / self.speedup - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def send_events(
    producer: Any,
    events: list[Event],
    clock: PaceClock,
    on_passage: Callable[[str], Any] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Send ``events`` in order, each at its time on ``clock``; how many were sent. Once
    ``stop`` is set, the next event due is not sent."""
    for sent, (ts, topic, key, value, passage_id) in enumerate(events):
        await clock.wait_until(ts)
        if stop is not None and stop.is_set():
            return sent
        await producer.send(topic, value, key=key)
        if on_passage is not None and passage_id is not None and topic == T.WIM_PASSAGES:
            on_passage(passage_id)
    return len(events)


def inputs_of_the_weighed(
    events: list[Event], weighed_until_us: int, within_us: int
) -> list[Event]:
    """Of ``events`` not yet sent when weighing stopped at ``weighed_until_us``: those the
    vehicles already weighed still need to be decided as they would have been — camera reads
    (and heartbeats) up to ``within_us`` later, no new weighing. Without them a feed that stops
    leaves its last weighings waiting out ``max_wait_s`` for reads that never come."""
    return [e for e in events if e[1] != T.WIM_PASSAGES and e[0] <= weighed_until_us + within_us]


def producer_for(bootstrap: str) -> Any:
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_request_size=16 << 20, compression_type=None, linger_ms=5
    )


async def publish(
    traffic: CityTraffic,
    bootstrap: str,
    partitions: int,
    speedup: float = 10.0,
    on_passage: Callable[[str], Any] | None = None,
) -> int:
    """Send every event; ``speedup`` 0 sends as fast as the broker takes them.
    ``on_passage(passage_id)`` is called as each WIM passage is handed to the producer."""
    await T.ensure_topics(bootstrap, partitions)
    events = events_of(traffic)
    origin = min((p["ts_us"] for p in traffic.passages), default=events[0][0] if events else 0)
    producer = producer_for(bootstrap)
    await producer.start()
    try:
        sent = await send_events(producer, events, PaceClock(origin, speedup), on_passage)
        await producer.flush()
    finally:
        await producer.stop()
    return sent
