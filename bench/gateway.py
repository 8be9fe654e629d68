"""Batched gateway mode on the embedded broker (issue 7): one worker judging ``VehicleBatch``
messages, against the per-vehicle baselines over the same vehicles, same broker, same run:

- a bare **Quix Streams** application (``bench.bare_quix``) counting the vehicles published one
  ``WimVehicle`` message each (``wim.vehicles``);
- the bare **Faust** loop (``bench.bare_faust``) counting those same messages.

Throughput: the worker starts after ``wim.batches`` is filled; vehicles per second from the
moment it holds its partitions to the last batch's summary in Redis (``zc:verdict-batches``).
Latency: batches published paced at a fraction of that rate, on a fresh broker and Redis each
time with a worker warmed up first, each stamped with the time it went to the producer; latency
is to its summary in Redis (Redis' clock, same machine).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

import schemas
from bench.broker import batch_clock, percentiles, rss_mib, wait_ready, warmed_worker
from schemas import topics as T
from schemas.registry import Registry
from sim.gateway import Batch, Pool, batches, publish, vehicles_of
from streams.embedded import EmbeddedStack
from zhichao.up import start_worker, stop_worker

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


def per_vehicle_messages(gateway: list[Batch]) -> list[tuple[bytes, bytes]]:
    """The same vehicles as one ``WimVehicle`` message each."""
    out = []
    for b in gateway:
        _, record = schemas.decode_any_wire(b.value)
        out += [(b.key, schemas.WIM_VEHICLE.encode_wire(v)) for v in vehicles_of(record)]
    return out


@dataclass
class GatewayRun:
    vehicles_per_s: float
    worker_rss_mib: float


def gateway_run(
    stack: EmbeddedStack,
    gateway: list[Batch],
    partitions: int,
    workdir: Path,
    timeout_s: float = 300.0,
) -> GatewayRun:
    """Throughput of one worker over the filled ``wim.batches``, and its RSS after it."""
    client = redis.Redis.from_url(stack.redis_dsn)
    log = workdir / "gateway-worker.log"
    worker = start_worker(stack, partitions, log)
    try:
        ready_s = wait_ready(client, [worker], log)
        ids = [b.batch_id for b in gateway]
        times = batch_clock(client).wait_for(ids, [worker], log, timeout_s)
        vehicles = sum(b.vehicles for b in gateway)
        return GatewayRun(vehicles / (max(times.values()) - ready_s), rss_mib(worker.pid))
    finally:
        stop_worker(worker)
        with contextlib.suppress(Exception):
            client.close()


def gateway_latency(
    warm: list[Batch],
    fractions: tuple[float, ...],
    make_paced: Any,
    rate: float,
    partitions: int,
    workdir: Path,
    timeout_s: float = 300.0,
) -> dict[float, dict[str, float]]:
    """Produce→verdict latency at ``fractions`` of ``rate`` (``make_paced(fraction, rate)``:
    fresh batches for that stretch), each on a fresh broker and Redis with a worker warmed up
    on ``warm``: behind the throughput run's backlog the broker would set the figure
    (``bench.broker.paced_latency``)."""
    latency = {}

    def publish_warm(stack: EmbeddedStack) -> None:
        asyncio.run(T.ensure_topics(stack.bootstrap, partitions))
        asyncio.run(publish(stack.bootstrap, T.WIM_BATCHES, [(b.key, b.value) for b in warm]))

    for fraction in fractions:
        fresh = make_paced(fraction, rate)
        here = workdir / f"gateway-paced-{fraction:g}"
        with warmed_worker(here, partitions, publish_warm) as (stack, worker, log, stream):
            clock = batch_clock(stream.client)
            clock.wait_for([b.batch_id for b in warm], [worker], log, timeout_s)
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
            got = clock.wait_for([b.batch_id for b in fresh], [worker], log, timeout_s)
        latency[fraction] = percentiles(
            (got[b.batch_id] - s) * 1000 for b, s in zip(fresh, sent, strict=True)
        )
    return latency
