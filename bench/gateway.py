"""Batched gateway mode on the embedded broker (issue 7): one worker judging ``VehicleBatch``
messages, against the per-vehicle baselines over the same vehicles, same broker, same run:

- a bare **Quix Streams** application (``bench.bare_quix``) counting the vehicles published one
  ``WimVehicle`` message each (``wim.vehicles``);
- the bare **Faust** loop (``bench.bare_faust``) counting those same messages.

Throughput: the worker starts after ``wim.batches`` is filled; vehicles per second from the
moment it holds its partitions to the last batch's summary in Redis (``zc:verdict-batches``).
Latency: batches published paced at a fraction of that rate, each stamped with the time it went
to the producer; latency is to its summary in Redis (Redis' clock, same machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis

import schemas
from bench.broker import rss_mib, wait_ready
from schemas.registry import Registry
from sim.gateway import Batch, Pool, batches, vehicles_of
from sim.publish import producer_for
from sinks import constants as K
from streams import topics as T
from streams.embedded import EmbeddedStack
from zhichao.up import start_worker, stop_worker

US = 1_000_000
PER_BATCH = 250  # vehicles per lane per 50 ms at ~100,000 vehicles/s over the example's lanes


def make_batches(
    pool: Pool, registry: Registry, vehicles: int, start_us: int, seed: int = 1, prefix: str = "gw"
) -> list[Batch]:
    return list(
        batches(
            pool,
            registry,
            vehicles,
            PER_BATCH,
            start_us,
            rate_per_s=100_000.0,
            seed=seed,
            prefix=prefix,
        )
    )


async def publish(
    bootstrap: str,
    topic: str,
    messages: list[tuple[bytes, bytes]],
    rate_per_s: float = 0.0,
    weights: list[int] | None = None,
    sent_at: list[float] | None = None,
) -> None:
    """Messages to ``topic``, as fast as the broker takes them or paced so that ``weights``
    (vehicles per message) arrive at ``rate_per_s``; ``sent_at`` gets each send time."""
    producer = producer_for(bootstrap)
    await producer.start()
    try:
        start, due = time.monotonic(), 0.0
        for i, (key, value) in enumerate(messages):
            if rate_per_s:
                wait = start + due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                due += (weights[i] if weights else 1) / rate_per_s
            if sent_at is not None:
                sent_at.append(time.time())
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def per_vehicle_messages(gateway: list[Batch]) -> list[tuple[bytes, bytes]]:
    """The same vehicles as one ``WimVehicle`` message each."""
    out = []
    for b in gateway:
        _, record = schemas.decode_any_wire(b.value)
        out += [(b.key, schemas.WIM_VEHICLE.encode_wire(v)) for v in vehicles_of(record)]
    return out


@dataclass
class BatchClock:
    """When each gateway batch's summary entered Redis (Redis' clock), followed as it grows."""

    client: Any
    last_id: str = "0-0"
    times: dict[str, float] = field(default_factory=dict)
    vehicles: int = 0

    def poll(self) -> None:
        while True:
            got = self.client.xread({K.GATEWAY_BATCH_STREAM: self.last_id}, count=5000)
            if not got:
                return
            for entry_id, fields in got[0][1]:
                summary = orjson.loads(fields[b"batch"])
                if summary["batch_id"] not in self.times:
                    self.times[summary["batch_id"]] = int(entry_id.split(b"-")[0]) / 1000.0
                    self.vehicles += summary["vehicles"]
                self.last_id = entry_id.decode()

    def wait_for(
        self, ids: list[str], proc: subprocess.Popen, log: Path, timeout_s: float
    ) -> dict[str, float]:
        deadline = time.monotonic() + timeout_s
        wanted = set(ids)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}, see {log}")
            self.poll()
            if wanted <= self.times.keys():
                return {i: self.times[i] for i in ids}
            time.sleep(0.1)
        missing = len(wanted - self.times.keys())
        raise TimeoutError(f"{missing} gateway batches not judged after {timeout_s} s, see {log}")


@dataclass
class GatewayRun:
    vehicles_per_s: float
    latency_ms: dict[float, dict[str, float]]  # fraction of the max rate -> p50/p95/p99
    worker_rss_mib: float


def gateway_run(
    stack: EmbeddedStack,
    gateway: list[Batch],
    paced: tuple[float, ...],
    make_paced: Any,
    partitions: int,
    workdir: Path,
    timeout_s: float = 300.0,
) -> GatewayRun:
    """Throughput of one worker over the filled ``wim.batches``, then latency at fractions of
    it (``make_paced(fraction, rate)``: fresh batches for that stretch)."""
    client = redis.Redis.from_url(stack.redis_dsn)
    log = workdir / "gateway-worker.log"
    worker = start_worker(stack, partitions, log)
    try:
        ready_s = wait_ready(client, [worker], log)
        clock = BatchClock(client)
        times = clock.wait_for([b.batch_id for b in gateway], worker, log, timeout_s)
        vehicles = sum(b.vehicles for b in gateway)
        rate = vehicles / (max(times.values()) - ready_s)
        latency = {}
        for fraction in paced:
            fresh = make_paced(fraction, rate)
            sent: list[float] = []
            asyncio.run(
                publish(
                    stack.bootstrap,
                    T.WIM_BATCHES,
                    [(b.key, b.value) for b in fresh],
                    rate_per_s=fraction * rate,
                    weights=[b.vehicles for b in fresh],
                    sent_at=sent,
                )
            )
            got = clock.wait_for([b.batch_id for b in fresh], worker, log, timeout_s)
            lat = np.array([(got[b.batch_id] - s) * 1000 for b, s in zip(fresh, sent, strict=True)])
            latency[fraction] = {f"p{q}": float(np.percentile(lat, q)) for q in (50, 95, 99)}
        return GatewayRun(rate, latency, rss_mib(worker.pid))
    finally:
        stop_worker(worker)
        with contextlib.suppress(Exception):
            client.close()
