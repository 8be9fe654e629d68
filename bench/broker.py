"""Pipeline benchmarks on the embedded broker (Tansu + Redis), with their in-run baseline.

Same topics, same contents, same broker, same run:
- **bare Faust**: a Faust agent (same transport and consumer settings as the worker) that only
  counts the input messages (``bench.bare_faust``) — its rate is Faust's own ceiling;
- **pipeline**: one ``zhichao worker`` deciding every passage (axle kernel, site join, fusion,
  verdict kernel, Redis, ``vehicles.verdicts``).

Both read the topics from the beginning after they have been filled, so they run at full speed.
Rates are input messages (passages + camera reads) per second: the bare loop from its first to
its last message; the pipeline from the moment it holds its partitions to the verdict of the
last *measured* passage. The traffic has a tail of 10 % more vehicles that is not measured: the
last weighings of a finite stream would otherwise wait for the wall-clock bound instead of the
next reads (that is latency, not throughput).

Latency: after the throughput run, a second stretch of traffic (again with an unmeasured tail) is
published paced at a fraction of the measured rate; latency is from the passage handed to the
producer to its verdict in Redis (the stream entry's time, Redis' clock on the same machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis

from schemas.registry import Registry
from sim.config import SimConfig
from sim.publish import PaceClock, events_of, producer_for, send_events
from sim.traffic import CitySimulator, CityTraffic
from sinks import constants as K
from streams import topics as T
from streams.embedded import EmbeddedStack
from zhichao.up import start_worker, stop_worker

US = 1_000_000
TAIL = 0.10
CHINA = dt.timezone(dt.timedelta(hours=8))
INPUTS = (T.WIM_PASSAGES, T.ANPR_READS)


@dataclass(frozen=True)
class Workload:
    traffic: CityTraffic
    measured_ids: frozenset[str]  # passages whose verdicts time the run
    measured_messages: int  # input messages up to the last measured passage
    total_messages: int

    @property
    def messages_per_vehicle(self) -> float:
        return self.measured_messages / len(self.measured_ids)


def workload(registry: Registry, vehicles: int, seed: int, start: dt.datetime) -> Workload:
    traffic = CitySimulator(
        SimConfig(vehicles=int(vehicles * (1 + TAIL)), seed=seed, start=start), registry
    ).run()
    passages = sorted(traffic.passages, key=lambda p: p["ts_us"])
    measured = passages[:vehicles]
    cut = measured[-1]["ts_us"]
    inputs = [r["ts_us"] for r in traffic.passages + traffic.reads]
    return Workload(
        traffic,
        frozenset(p["passage_id"] for p in measured),
        sum(1 for ts in inputs if ts <= cut),
        len(inputs),
    )


async def fill(
    stack: EmbeddedStack,
    traffic: CityTraffic,
    partitions: int,
    speedup: float = 0.0,
    sent_at: dict[str, float] | None = None,
) -> None:
    """Publish the traffic's inputs (passages and reads), as fast as the broker takes them or
    paced at ``speedup``; ``sent_at`` records when each passage went to the producer."""
    await T.ensure_topics(stack.bootstrap, partitions)
    events = [e for e in events_of(traffic) if e[1] in INPUTS]
    origin = min(p["ts_us"] for p in traffic.passages)
    producer = producer_for(stack.bootstrap)
    await producer.start()
    try:
        mark = (lambda pid: sent_at.setdefault(pid, time.time())) if sent_at is not None else None
        await send_events(producer, events, PaceClock(origin, speedup), mark)
        await producer.flush()
    finally:
        await producer.stop()


def _env(stack: EmbeddedStack, partitions: int) -> dict[str, str]:
    return {
        **os.environ,
        "ZHICHAO_BROKER_URL": stack.broker_url,
        "ZHICHAO_REDIS_DSN": stack.redis_dsn,
        "ZHICHAO_PARTITIONS": str(partitions),
    }


def bare_faust_rate(
    stack: EmbeddedStack, work: Workload, partitions: int, log: Path, timeout_s: float = 300.0
) -> float:
    """Input messages per second of a Faust agent that only counts them."""
    client = redis.Redis.from_url(stack.redis_dsn)
    client.delete("zc:bench:bare")
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "bench.bare_faust"],
            env=_env(stack, partitions),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            seen = client.hgetall("zc:bench:bare")
            if seen and int(seen[b"n"]) >= work.total_messages:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"bare Faust loop exited with {proc.returncode}, see {log}")
            time.sleep(0.3)
        else:
            raise TimeoutError(f"bare Faust loop did not finish in {timeout_s} s, see {log}")
        n, first, last = (float(seen[k]) for k in (b"n", b"first", b"last"))
        return (n - 1) / (last - first)
    finally:
        stop_worker(proc, grace_s=5.0)


@dataclass
class VerdictClock:
    """When each passage's verdict entered the Redis stream (Redis' clock), read as it grows:
    the stream is trimmed to its last ~10,000 entries, so it is followed, not read at the end."""

    client: Any
    last_id: str = "0-0"
    times: dict[str, float] = field(default_factory=dict)

    def poll(self) -> None:
        while True:
            got = self.client.xread({K.VERDICT_STREAM: self.last_id}, count=5000)
            if not got:
                return
            for entry_id, fields in got[0][1]:
                pid = orjson.loads(fields[b"verdict"])["passage_id"]
                self.times.setdefault(pid, int(entry_id.split(b"-")[0]) / 1000.0)
                self.last_id = entry_id.decode()

    def wait_for(
        self, ids: frozenset[str], proc: subprocess.Popen, log: Path, timeout_s: float
    ) -> dict[str, float]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}, see {log}")
            self.poll()
            if ids <= self.times.keys():
                return {pid: self.times[pid] for pid in ids}
            time.sleep(0.2)
        missing = len(ids - self.times.keys())
        raise TimeoutError(f"{missing} passages had no verdict after {timeout_s} s, see {log}")


@dataclass
class PipelineRun:
    messages_per_s: float
    vehicles_per_s: float
    latency_ms: dict[str, float]
    paced_vehicles_per_s: float


def pipeline_run(
    stack: EmbeddedStack,
    registry: Registry,
    work: Workload,
    partitions: int,
    workdir: Path,
    latency_fraction: float,
    latency_vehicles: int,
    timeout_s: float = 300.0,
) -> PipelineRun:
    """Throughput of one worker over the filled topics, then latency at a fraction of it."""
    client = redis.Redis.from_url(stack.redis_dsn)
    log = workdir / "worker.log"
    worker = start_worker(stack, partitions, log)
    try:
        deadline = time.monotonic() + 120
        while not client.exists(K.WORKER_READY_KEY):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not get its partitions, see {log}")
            time.sleep(0.2)
        ready_s = float(client.hget(K.WORKER_READY_KEY, "ts"))
        clock = VerdictClock(client)
        times = clock.wait_for(work.measured_ids, worker, log, timeout_s)
        elapsed = max(times.values()) - ready_s
        messages_per_s = work.measured_messages / elapsed
        vehicles_per_s = len(work.measured_ids) / elapsed

        # latency: new traffic after the first, paced at a fraction of the measured rate
        last_ts = max(p["ts_us"] for p in work.traffic.passages + work.traffic.reads)
        start = dt.datetime.fromtimestamp(last_ts / US + 60, tz=CHINA)
        paced_work = workload(registry, latency_vehicles, seed=99, start=start)
        paced = paced_work.traffic
        ts = sorted(p["ts_us"] for p in paced.passages)
        sim_rate = (len(ts) - 1) / ((ts[-1] - ts[0]) / US)
        target = latency_fraction * vehicles_per_s
        sent_at: dict[str, float] = {}
        asyncio.run(fill(stack, paced, partitions, speedup=target / sim_rate, sent_at=sent_at))
        ids = paced_work.measured_ids  # the tail keeps traffic flowing behind the last of them
        got = clock.wait_for(ids, worker, log, timeout_s)
        lat = np.array([(got[pid] - sent_at[pid]) * 1000.0 for pid in ids])
        latency = {f"p{q}": float(np.percentile(lat, q)) for q in (50, 95, 99)}
        return PipelineRun(messages_per_s, vehicles_per_s, latency, target)
    finally:
        stop_worker(worker)
        with contextlib.suppress(Exception):
            client.close()
