"""Pipeline benchmarks on the embedded broker (Tansu + Redis), with their in-run baseline.

Same topics, same contents, same broker, same run:
- **bare Faust**: a Faust agent with the worker's consumer settings that only counts the input
  messages (``bench.bare_faust``), once as Faust ships it and once on the worker's own
  transport (``streams.transport``) — their rates are Faust's own ceilings;
- **pipeline**: one ``zhichao worker`` deciding every passage (axle kernel, site join, fusion,
  verdict kernel, Redis, ``vehicles.verdicts``).

Both read the topics from the beginning after they have been filled, so they run at full speed.
Rates are input messages (passages + camera reads) per second: the bare loop from its first to
its last message; the pipeline from the moment it holds its partitions to the verdict of the
last *measured* passage. The traffic has a tail of 10 % more vehicles that is not measured: the
last weighings of a finite stream would otherwise wait for the wall-clock bound instead of the
next reads (that is latency, not throughput).

Latency (``paced_latency``): after the throughput run, a stretch of traffic (again with an
unmeasured tail) is published paced at a fraction of the measured rate, on a fresh broker and
Redis each time; latency is from the passage handed to the producer to its verdict in Redis (the
stream entry's time, Redis' clock on the same machine). Beside it, in the same run: the broker's
own delivery of those messages to a bare consumer, and the decision floor (``bench.floor``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.floor import decision_floor_s
from schemas import topics as T
from schemas.registry import CHINA, Registry
from schemas.units import US
from sim.config import SimConfig
from sim.publish import Event, PaceClock, events_of, producer_for, send_events
from sim.traffic import CitySimulator, CityTraffic
from sinks import constants as K
from streams.embedded import EmbeddedStack, embedded_stack
from streams.transport import FETCH_MAX_WAIT_MS
from zhichao.up import start_worker, stop_worker

TAIL = 0.10
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
        SimConfig(
            vehicles=int(vehicles * (1 + TAIL)),
            seed=seed,
            start=start,
            first_passage=seed * 1_000_000,  # the paced runs after the backlog are new passages
        ),
        registry,
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
    mixed_in: Iterable[Event] = (),
) -> None:
    """Publish the traffic's inputs (passages and reads), as fast as the broker takes them or
    paced at ``speedup``, with ``mixed_in`` (e.g. malformed messages) at their own times;
    ``sent_at`` records when each passage went to the producer."""
    events = [e for e in events_of(traffic) if e[1] in INPUTS] + list(mixed_in)
    origin = min(p["ts_us"] for p in traffic.passages)
    await publish(stack, events, partitions, PaceClock(origin, speedup), sent_at)


async def publish(
    stack: EmbeddedStack,
    events: list[Event],
    partitions: int,
    clock: PaceClock | None = None,
    sent_at: dict[str, float] | None = None,
) -> None:
    """Publish ``events`` in time order, paced by ``clock`` (none: as fast as the broker takes
    them)."""
    await T.ensure_topics(stack.bootstrap, partitions)
    events = sorted(events, key=lambda e: e[0])  # stable: the given order within a moment
    producer = producer_for(stack.bootstrap)
    await producer.start()
    try:
        mark = (lambda pid: sent_at.setdefault(pid, time.time())) if sent_at is not None else None
        await send_events(producer, events, clock or PaceClock(0, 0.0), mark)
        await producer.flush()
    finally:
        await producer.stop()


def dead_letter_consumer(bootstrap: str) -> AIOKafkaConsumer:
    """A consumer of ``dead.letters`` from its start, with room for the large letters of a
    flood (a malformed passage carries its samples): not started."""
    return AIOKafkaConsumer(
        T.DEAD_LETTERS,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=64 << 20,
    )


def _env(stack: EmbeddedStack, partitions: int, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ZHICHAO_BROKER_URL": stack.broker_url,
        "ZHICHAO_REDIS_DSN": stack.redis_dsn,
        "ZHICHAO_PARTITIONS": str(partitions),
        **extra,
    }


def bare_rate(
    module: str,
    stack: EmbeddedStack,
    topics: tuple[str, ...],
    expected: int,
    partitions: int,
    log: Path,
    timeout_s: float = 300.0,
    stock: bool = False,
) -> float:
    """Messages per second of a bare counting loop (``bench.bare_faust`` or ``bench.bare_quix``)
    over ``topics``, from its first to its last message; ``stock``: Faust as shipped, not on
    the worker's transport."""
    client = redis.Redis.from_url(stack.redis_dsn)
    key = f"zc:bench:{module}{'-stock' if stock else ''}:{'+'.join(topics)}"
    client.delete(key)
    env = _env(
        stack,
        partitions,
        BENCH_TOPICS=",".join(topics),
        BENCH_KEY=key,
        BENCH_APP_ID=f"bench-{module}-{time.time_ns()}",
        BENCH_STATE_DIR=str(log.parent / f"state-{module}{'-stock' if stock else ''}"),
        BENCH_STOCK="1" if stock else "0",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", f"bench.{module}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            seen = client.hgetall(key)
            if seen and int(seen[b"n"]) >= expected:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"{module} exited with {proc.returncode}, see {log}")
            time.sleep(0.2)
        else:
            raise TimeoutError(f"{module} did not count {expected} in {timeout_s} s, see {log}")
        n, first, last = (float(seen[k]) for k in (b"n", b"first", b"last"))
        return (n - 1) / (last - first)
    finally:
        stop_worker(proc, grace_s=5.0)
        client.close()


def rss_mib(pid: int, peak: bool = False) -> float:
    """Resident set size of a process, now or its peak (Linux /proc: VmRSS, VmHWM)."""
    field = "VmHWM:" if peak else "VmRSS:"
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


@dataclass
class StreamClock:
    """When each record entered a Redis stream (Redis' clock, from the entry id), read as the
    stream grows: the streams are trimmed to their last ~10,000 entries, so they are followed,
    not read at the end. ``field`` holds a JSON record whose ``key`` names it."""

    client: Any
    stream: str = K.VERDICT_STREAM
    field: bytes = b"verdict"
    key: str = "passage_id"
    last_id: str = "0-0"
    times: dict[str, float] = dataclasses.field(default_factory=dict)

    def poll(self) -> None:
        while True:
            got = self.client.xread({self.stream: self.last_id}, count=5000)
            if not got:
                return
            for entry_id, fields in got[0][1]:
                name = orjson.loads(fields[self.field])[self.key]
                self.times.setdefault(name, int(entry_id.split(b"-")[0]) / 1000.0)
                self.last_id = entry_id.decode()

    def wait_for(
        self, ids: Iterable[str], procs: list[subprocess.Popen], log: Path, timeout_s: float
    ) -> dict[str, float]:
        """The entry time of each of ``ids``, once all are in (a worker stopping is an error)."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(proc.poll() is not None for proc in procs):
                raise RuntimeError(f"a worker exited, see {log}")
            self.poll()
            if wanted <= self.times.keys():
                return {name: self.times[name] for name in wanted}
            time.sleep(0.1)
        missing = len(wanted - self.times.keys())
        raise TimeoutError(f"{missing} of {self.stream} not there after {timeout_s} s, see {log}")


def batch_clock(client: Any) -> StreamClock:
    """Follows the gateway batches' summaries (batched mode)."""
    return StreamClock(client, K.GATEWAY_BATCH_STREAM, b"batch", "batch_id")


@dataclass
class PipelineRun:
    messages_per_s: float
    vehicles_per_s: float
    workers: int = 1


def wait_ready(
    client: Any, workers: list[subprocess.Popen], log: Path, timeout_s: float = 120
) -> float:
    """Wall time at which the first worker held partitions."""
    deadline = time.monotonic() + timeout_s
    while not client.exists(K.WORKER_READY_KEY):
        if any(w.poll() is not None for w in workers) or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not get its partitions, see {log}")
        time.sleep(0.05)
    return float(client.hget(K.WORKER_READY_KEY, "ts"))


def pipeline_run(
    stack: EmbeddedStack,
    work: Workload,
    partitions: int,
    workdir: Path,
    workers: int = 1,
    timeout_s: float = 300.0,
) -> PipelineRun:
    """Throughput of ``workers`` workers over the filled topics, from the moment the first holds
    partitions (a second worker's rebalance counts) to the verdict of the last measured
    passage."""
    client = redis.Redis.from_url(stack.redis_dsn)
    logs = [workdir / f"worker-{i}.log" for i in range(workers)]
    procs = [start_worker(stack, partitions, log) for log in logs]
    try:
        ready_s = wait_ready(client, procs, logs[0])
        times = StreamClock(client).wait_for(work.measured_ids, procs, logs[0], timeout_s)
        elapsed = max(times.values()) - ready_s
        return PipelineRun(
            work.measured_messages / elapsed, len(work.measured_ids) / elapsed, workers
        )
    finally:
        for proc in procs:
            stop_worker(proc)
        with contextlib.suppress(Exception):
            client.close()


def percentiles(values: Iterable[float], qs: tuple[int, ...] = (50, 95, 99)) -> dict[str, float]:
    a = np.fromiter(values, dtype=np.float64)
    return {f"p{q}": float(np.percentile(a, q)) for q in qs}


@dataclass
class Paced:
    """Produce→verdict latency at one rate (ms), beside what bounds it from below: the broker's
    own delivery of the same messages at the same moment (a bare consumer at the tail), and the
    decision floor (``bench.floor``) at this speedup."""

    vehicles_per_s: float
    speedup: float
    verdict_ms: dict[str, float]
    broker_ms: dict[str, float]
    floor_ms: dict[str, float]
    beyond_floor_ms: dict[str, float]  # each passage's latency less its own floor


async def fill_timing_the_broker(
    stack: EmbeddedStack,
    traffic: CityTraffic,
    partitions: int,
    speedup: float,
    sent_at: dict[str, float],
) -> list[float]:
    """``fill`` paced, while a bare consumer reading the input topics at their tail, with the
    worker's fetch settings, records how long after being produced each message reached it."""
    tps = [TopicPartition(t, p) for t in INPUTS for p in range(partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.bootstrap,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        max_partition_fetch_bytes=32 << 20,
    )
    await consumer.start()
    delays: list[float] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now, before anything is produced
            await consumer.position(tp)
        # Tansu 0.6 (memory://) answers ListOffsets(latest) with the first offset of a
        # partition's last batch + 1, not its end (15 records sent as batches of 10 and 5: 11;
        # fetches report 15), so the seek lands before that batch: those records, produced
        # before this fill, are not part of it
        since_ms = time.time() * 1000.0
        publishing = asyncio.ensure_future(fill(stack, traffic, partitions, speedup, sent_at))
        expected = len(traffic.passages) + len(traffic.reads)
        deadline = None
        while len(delays) < expected:
            got = await consumer.getmany(timeout_ms=100)
            now_ms = time.time() * 1000.0
            delays += [
                now_ms - r.timestamp
                for records in got.values()
                for r in records
                if r.timestamp >= since_ms
            ]
            if publishing.done():
                deadline = deadline or time.monotonic() + 10.0
                if time.monotonic() > deadline:
                    await publishing  # its error, if it failed
                    raise RuntimeError(f"the broker delivered {len(delays)} of {expected}")
        await publishing
    finally:
        await consumer.stop()
    return delays


@contextlib.contextmanager
def warmed_worker(
    here: Path, partitions: int, publish_warm: Callable[[EmbeddedStack], Any]
) -> Iterator[tuple[EmbeddedStack, subprocess.Popen, Path, StreamClock]]:
    """A fresh broker and Redis in ``here`` with ``publish_warm(stack)``'s backlog on it, and a
    worker that holds its partitions: (stack, worker, its log, a clock on the verdict stream);
    all stopped on exit. Latency runs wait for the backlog's verdicts first (warm kernels)."""
    (here / "stack").mkdir(parents=True)
    with embedded_stack(here / "stack") as stack:
        publish_warm(stack)
        client = redis.Redis.from_url(stack.redis_dsn)
        log = here / "worker.log"
        proc = start_worker(stack, partitions, log)
        try:
            wait_ready(client, [proc], log)
            yield stack, proc, log, StreamClock(client)
        finally:
            stop_worker(proc)
            client.close()


def paced_latency(
    registry: Registry,
    vehicles_per_s: float,
    fractions: tuple[float, ...],
    vehicles: int,
    partitions: int,
    workdir: Path,
    start: dt.datetime,
    timeout_s: float = 300.0,
) -> dict[float, Paced]:
    """Produce→verdict latency at ``fractions`` of ``vehicles_per_s``, each on a fresh broker
    and Redis with a worker warmed up on a short backlog first.

    Fresh, because Tansu's ``memory://`` storage answers a fetch at the tail more slowly the
    more it holds (with no worker, a bare consumer at 340 vehicles/s gets messages at p99
    ~0.1 s behind a 3,000-vehicle backlog and ~2.5 s behind 12,000; docs/performance.md):
    behind the throughput run's backlog the broker, not the worker, would set the figure."""
    warm = workload(registry, max(vehicles // 10, 50), seed=98, start=start)
    warm_end = max(r["ts_us"] for r in warm.traffic.passages + warm.traffic.reads)
    paced = workload(
        registry, vehicles, seed=99, start=dt.datetime.fromtimestamp(warm_end / US + 60, tz=CHINA)
    )
    floor_s = decision_floor_s(paced.traffic, registry)
    ts = sorted(p["ts_us"] for p in paced.traffic.passages)
    sim_rate = (len(ts) - 1) / ((ts[-1] - ts[0]) / US)
    out = {}

    def publish_warm(stack: EmbeddedStack) -> None:
        asyncio.run(fill(stack, warm.traffic, partitions))

    for fraction in fractions:
        speedup = fraction * vehicles_per_s / sim_rate
        with warmed_worker(workdir / f"paced-{fraction:g}", partitions, publish_warm) as run:
            stack, proc, log, clock = run
            clock.wait_for(warm.measured_ids, [proc], log, timeout_s)
            sent_at: dict[str, float] = {}
            delays = asyncio.run(
                fill_timing_the_broker(stack, paced.traffic, partitions, speedup, sent_at)
            )
            got = clock.wait_for(paced.measured_ids, [proc], log, timeout_s)
        ids = sorted(paced.measured_ids & floor_s.keys())
        lat = {pid: (got[pid] - sent_at[pid]) * 1000.0 for pid in paced.measured_ids}
        floor = {pid: floor_s[pid] / speedup * 1000.0 for pid in ids}
        out[fraction] = Paced(
            fraction * vehicles_per_s,
            speedup,
            percentiles(lat.values()),
            percentiles(delays),
            percentiles(floor.values()),
            percentiles(lat[pid] - floor[pid] for pid in ids),
        )
    return out
