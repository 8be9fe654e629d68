"""``zhichao up``: the whole stack on one machine — broker, Redis, one worker, the simulated city
streaming live — with a live summary, and a bounded shutdown on Ctrl-C or after ``--for``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from schemas.registry import CHINA, Registry
from schemas.topics import DEAD_LETTERS
from schemas.units import US
from sim.config import SimConfig
from sim.officers import run_officers
from sim.publish import PaceClock, events_of, inputs_of_the_weighed, producer_for, send_events
from sim.reviewer import run_reviewer
from sim.traffic import CitySimulator
from sinks import constants as K
from sinks.devices import health
from sinks.kpi import day_of
from sinks.web import access
from streams.embedded import EmbeddedError, EmbeddedStack
from zhichao.page_watch import watch_pages
from zhichao.screenshots import take_screenshots

# Tansu's memory:// storage keeps every message (≈ 60 MB a minute at demo load, raw signals are
# ≈ 66 kB a passage) and answers fetches more slowly the more it holds (docs/performance.md)
BROKER_MEMORY_WARN_MIB = 2048
BROKER_MEMORY_WARNING = (
    "注意 the embedded broker holds {mib:,.0f} MB: it keeps every message in memory and slows "
    "down as it fills. Restart the demo, or run `zhichao worker` against Kafka for long runs."
)
CHUNK_VEHICLES = 400  # the simulator runs ahead of the clock in chunks of this many vehicles
# when the demo stops, the vehicles already weighed still pass their cameras: a truck at walking
# pace reaches a gate 20 m on some 15 s after its last axle (event time); at most this long
# (wall time) is spent sending them
TAIL_US = 30 * US
TAIL_WALL_S = 5.0


@dataclass
class Tally:
    published_at: dict[str, float] = field(default_factory=dict)  # passage_id -> wall clock
    latencies_ms: list[float] = field(default_factory=list)
    # passage published -> its order in the unit's stream (what the officer page pushes)
    order_latencies_ms: list[float] = field(default_factory=list)
    order_stream_id: str = "0-0"
    order_published_at: dict[str, float] = field(default_factory=dict)  # order_id -> its passage's
    on_page_at: dict[str, float] = field(default_factory=dict)  # order_id -> reached its page
    provisional_orders: int = 0  # of those, planned on the front reads (预判)
    withdrawn_orders: int = 0  # provisional orders their verdict did not confirm
    verdicts: int = 0
    overlimit: int = 0
    enforceable: int = 0
    stream_id: str = "0-0"
    devices_online: int = 0
    devices_total: int = 0

    def mark_published(self, passage_id: str) -> None:
        self.published_at.setdefault(passage_id, time.time())

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float | None:
            return round(float(np.percentile(values, q)), 1) if values else None

        lat, orders = self.latencies_ms, self.order_latencies_ms
        on_pages = [
            (at - self.order_published_at[order_id]) * 1000.0
            for order_id, at in self.on_page_at.items()
            if order_id in self.order_published_at
        ]
        return {
            "passages_in": len(self.published_at),
            "verdicts_out": self.verdicts,
            "overlimit": self.overlimit,
            "enforceable": self.enforceable,
            "p50_weigh_to_verdict_ms": pct(lat, 50),
            "p99_weigh_to_verdict_ms": pct(lat, 99),
            "orders": len(orders),
            "p50_passage_to_order_ms": pct(orders, 50),
            "p99_passage_to_order_ms": pct(orders, 99),
            "orders_on_pages": len(on_pages),
            "p50_passage_to_page_ms": pct(on_pages, 50),
            "p99_passage_to_page_ms": pct(on_pages, 99),
            "provisional_orders": self.provisional_orders,
            "withdrawn_orders": self.withdrawn_orders,
            "devices_online": self.devices_online,
            "devices_total": self.devices_total,
        }


async def _feed(
    registry: Registry, stack: EmbeddedStack, speedup: float, tally: Tally, stop: asyncio.Event
) -> None:
    """Simulate chunk after chunk and publish it paced in event time on one producer. Events of
    a chunk later than its last weighing (downstream sightings) wait to be merged with the
    next chunk, so weighings flow without gaps; the next chunk is simulated in a thread while
    this one is sent (simulating raw signals takes seconds, and the last weighings of a chunk
    would wait that long for their reads). On ``stop`` no new weighing is published, but the
    reads of the vehicles already weighed are: the last orders' latency is then the system's,
    not the wait for reads a stopped feed never sends (max_wait_s, 10 s and more)."""

    def simulate(seed: int, start: dt.datetime):
        return CitySimulator(
            SimConfig(
                seed=seed,
                vehicles=CHUNK_VEHICLES,
                start=start,
                first_passage=(seed - 1) * CHUNK_VEHICLES,  # passage ids unique over chunks
            ),
            registry,
        ).run()

    def after(traffic) -> dt.datetime:
        last = max(p["ts_us"] for p in traffic.passages)
        return dt.datetime.fromtimestamp(last / US + 1.0, tz=CHINA)

    seed = 1
    carried: list = []
    unsent: list = []  # when stopped: events not sent
    weighed_until = 0  # event time of the last event sent
    clock: PaceClock | None = None
    producer = producer_for(stack.bootstrap)
    await producer.start()
    upcoming = asyncio.create_task(asyncio.to_thread(simulate, seed, dt.datetime.now(CHINA)))
    try:
        while not stop.is_set():
            traffic = await upcoming
            seed += 1
            upcoming = asyncio.create_task(asyncio.to_thread(simulate, seed, after(traffic)))
            last_passage = max(p["ts_us"] for p in traffic.passages)
            if clock is None:
                clock = PaceClock(min(p["ts_us"] for p in traffic.passages), speedup)
            events = sorted(carried + events_of(traffic), key=lambda e: e[0])
            now = [e for e in events if e[0] <= last_passage]
            carried = [e for e in events if e[0] > last_passage]
            sent = await send_events(producer, now, clock, tally.mark_published, stop)
            unsent = now[sent:] + carried
            weighed_until = now[sent - 1][0] if sent else weighed_until
        if clock is not None:  # no new weighing; the reads of those weighed still come
            tail = inputs_of_the_weighed(unsent, weighed_until, TAIL_US)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(send_events(producer, tail, clock), TAIL_WALL_S)
        await producer.flush()
    finally:
        upcoming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upcoming
        await producer.stop()


async def _watch(stack: EmbeddedStack, tally: Tally) -> None:
    """Read the verdict and order feeds: counts, weigh -> verdict and passage -> order latency
    (published to written in Redis, on Redis' clock)."""
    client = aioredis.Redis.from_url(stack.redis_dsn)
    try:
        entries = await client.xread({K.VERDICT_STREAM: tally.stream_id}, count=5000)
        for _, items in entries or []:
            for entry_id, fields in items:
                tally.stream_id = entry_id.decode()
                v = json.loads(fields[b"verdict"])
                tally.verdicts += 1
                tally.overlimit += v["verdict"] == "overlimit"
                tally.enforceable += bool(v["enforceable"])
                written_s = int(entry_id.decode().split("-")[0]) / 1000.0  # Redis' ms clock
                sent_s = tally.published_at.get(v["passage_id"])
                if sent_s is not None:
                    tally.latencies_ms.append((written_s - sent_s) * 1000.0)
        entries = await client.xread({K.ORDER_STREAM: tally.order_stream_id}, count=5000)
        for _, items in entries or []:
            for entry_id, fields in items:
                tally.order_stream_id = entry_id.decode()
                if b"order" not in fields:  # a change of an order, not a new one
                    change = json.loads(fields[b"update"])
                    tally.withdrawn_orders += change.get("outcome") == "withdrawn"
                    continue
                order = json.loads(fields[b"order"])
                sent_s = tally.published_at.get(order["vehicle"]["passage_id"])
                if order["escalation"] == 0:
                    tally.provisional_orders += bool(order.get("provisional"))
                if sent_s is not None and order["escalation"] == 0:
                    tally.order_published_at[order["order_id"]] = sent_s
                    written_s = int(entry_id.decode().split("-")[0]) / 1000.0
                    tally.order_latencies_ms.append((written_s - sent_s) * 1000.0)
    finally:
        await client.aclose()


async def _devices(stack: EmbeddedStack, registry: Registry, tally: Tally) -> None:
    """Device online count, judged at the newest heartbeat time (the simulated clock)."""
    client = aioredis.Redis.from_url(stack.redis_dsn)
    try:
        ids = [i.decode() for i in await client.smembers(K.DEVICES_KEY)]
        states = {}
        for device_id in ids:
            raw = await client.hgetall(K.DEVICE_KEY.format(device_id=device_id))
            states[device_id] = {k.decode(): v.decode() for k, v in raw.items()}
    finally:
        await client.aclose()
    known = sorted(registry.wim_devices) + sorted(registry.cameras)
    now_us = max((int(s["last_seen_us"]) for s in states.values()), default=0)
    h = health(known, states, now_us, SimConfig().heartbeat_interval_s)
    tally.devices_online, tally.devices_total = h.online, h.total


async def _dead_letters(bootstrap: str) -> int:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        DEAD_LETTERS,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        total = 0
        for batch in (await consumer.getmany(timeout_ms=1500)).values():
            total += len(batch)
        return total
    finally:
        await consumer.stop()


async def wait_ready(
    stack: EmbeddedStack, echo, worker: subprocess.Popen | None = None, timeout_s: float = 180.0
) -> None:
    """Until the worker has its partitions (it marks that in Redis), or it exits."""
    client = aioredis.Redis.from_url(stack.redis_dsn)
    started = time.monotonic()
    try:
        while not await client.exists(K.WORKER_READY_KEY):
            if worker is not None and worker.poll() is not None:
                raise EmbeddedError(
                    f"the worker exited with code {worker.returncode} before it got its partitions"
                )
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"no worker got its partitions within {timeout_s:.0f} s")
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()
    echo(f"worker ready after {time.monotonic() - started:.1f} s (consumer group joined)")


async def issue_demo_tokens(stack: EmbeddedStack, registry: Registry) -> dict[str, str]:
    """The demo's page tokens, fresh per stack: the command centre's, a reviewer's (the desk),
    the simulated reviewer's and one per unit."""
    client = aioredis.Redis.from_url(stack.redis_dsn)
    try:
        tokens = {"command": await access.issue(client, "command")}
        tokens["reviewer"] = await access.issue(client, "reviewer", label="演示审核员")
        tokens["sim-reviewer"] = await access.issue(client, "reviewer", label="模拟审核员")
        for unit_id in registry.units:
            tokens[unit_id] = await access.issue(client, "unit", unit_id)
    finally:
        await client.aclose()
    return tokens


def login_url(web_port: int, token: str) -> str:
    return f"http://127.0.0.1:{web_port}/login?token={token}"


@dataclass(frozen=True)
class DemoPages:
    """The demo's pages: simulated officers answer for every unit but ``human`` (whose page a
    person can use), a simulated reviewer works part of the case queue unless
    ``human_reviewer``, and screenshots are taken once after ``screenshot_at_s``."""

    base_url: str
    tokens: dict[str, str]
    human: frozenset[str]
    screenshots: Path | None = None
    human_reviewer: bool = False
    screenshot_at_s: float = 90.0

    def url(self, who: str) -> str:
        return f"{self.base_url}/login?token={self.tokens[who]}"


# the demo's simulated city runs ``speedup`` times faster than the wall clock, so its event
# times run ahead of it: the worker's "not too far ahead" check must allow that
DEMO_EVENT_AHEAD_S = 30 * 24 * 3600


def start_worker(
    stack: EmbeddedStack,
    partitions: int,
    log_path: Path,
    metrics_port: int = 0,
    extra_env: dict[str, str] | None = None,
    web_port: int = 0,
) -> subprocess.Popen:
    """A worker on the embedded stack; ``metrics_port``/``web_port`` 0: no metrics/pages."""
    env = {
        **os.environ,
        "ZHICHAO_BROKER_URL": stack.broker_url,
        "ZHICHAO_REDIS_DSN": stack.redis_dsn,
        "ZHICHAO_PG_DSN": stack.pg_dsn,
        "ZHICHAO_PARTITIONS": str(partitions),
        "ZHICHAO_METRICS_PORT": str(metrics_port),
        "ZHICHAO_WEB_PORT": str(web_port),
        "ZHICHAO_EVIDENCE_KEY": stack.evidence_key,
        "ZHICHAO_DATA_DIR": str(Path(log_path).with_suffix(".data")),
        **(extra_env or {}),  # last: a test may point the worker elsewhere
    }
    with open(log_path, "wb") as log:
        return subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "zhichao.cli", "worker", "--loglevel", "info"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_worker(worker: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL: a Faust worker against Tansu may hang on shutdown."""
    if worker.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(grace_s)


def _line(tally: Tally, elapsed: float, broker_mib: float | None) -> str:
    s = tally.summary()
    rate = tally.verdicts / elapsed if elapsed else 0.0
    over = 100.0 * tally.overlimit / tally.verdicts if tally.verdicts else 0.0
    p50, p99 = s["p50_weigh_to_verdict_ms"], s["p99_weigh_to_verdict_ms"]
    latency = f"p50 {p50:.0f} ms p99 {p99:.0f} ms" if p50 is not None else "—"
    return (
        f"[{elapsed:6.0f}s] 过车 passages {s['passages_in']:6d} | 判定 verdicts "
        f"{s['verdicts_out']:6d} ({rate:5.1f}/s) | 超限率 {over:4.1f}% | 可处罚 "
        f"{s['enforceable']:4d} | 设备在线 devices {s['devices_online']}/{s['devices_total']}"
        f" | weigh→verdict {latency}"
        + (f" | broker 内存 {broker_mib:,.0f} MB" if broker_mib is not None else "")
    )


async def run_up(
    registry: Registry,
    stack: EmbeddedStack,
    *,
    speedup: float,
    seconds: float | None,
    echo,
    worker: subprocess.Popen | None = None,
    pages: DemoPages | None = None,
) -> dict[str, Any]:
    tally = Tally()
    stop = asyncio.Event()
    await wait_ready(stack, echo, worker)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    feeder = asyncio.create_task(_feed(registry, stack, speedup, tally, stop))
    officers = watching = reviewing = None
    drained = asyncio.Event()  # the page feeds are read until the last orders are in
    if pages is not None:
        officers = asyncio.create_task(
            run_officers(stack.redis_dsn, pages.base_url, pages.tokens, stop, pages.human)
        )
        if not pages.human_reviewer:
            reviewing = asyncio.create_task(
                run_reviewer(pages.base_url, pages.tokens["sim-reviewer"], stop)
            )
        watching = asyncio.create_task(
            watch_pages(
                pages.base_url, pages.tokens, list(registry.units), tally.on_page_at, drained
            )
        )
    started = time.monotonic()
    last_print, warned = 0.0, False
    while not stop.is_set():
        await asyncio.sleep(0.5)
        await _watch(stack, tally)
        elapsed = time.monotonic() - started
        if elapsed - last_print >= 2.0:
            await _devices(stack, registry, tally)
            broker_mib = stack.broker.rss_mib()
            echo(_line(tally, elapsed, broker_mib))
            last_print = elapsed
            if broker_mib and broker_mib > BROKER_MEMORY_WARN_MIB and not warned:
                echo(BROKER_MEMORY_WARNING.format(mib=broker_mib))
                warned = True
        if pages is not None and pages.screenshots and elapsed >= pages.screenshot_at_s:
            shots = await asyncio.to_thread(
                take_screenshots,
                pages.url("command"),
                pages.url(min(pages.human)),
                pages.screenshots,
                pages.url("reviewer"),
            )
            echo("screenshots: " + ", ".join(map(str, shots)))
            pages = DemoPages(  # once
                pages.base_url, pages.tokens, pages.human, human_reviewer=pages.human_reviewer
            )
        if seconds is not None and elapsed >= seconds:
            stop.set()
    await feeder
    if officers is not None:
        await officers
    if reviewing is not None:
        await reviewing
    drain_until = time.monotonic() + 20.0  # the last weighings are decided
    while tally.verdicts < len(tally.published_at) and time.monotonic() < drain_until:
        await asyncio.sleep(0.5)
        await _watch(stack, tally)
    if watching is not None:
        await asyncio.sleep(1.0)  # an order written last reaches its page
        drained.set()
        await watching
    result = tally.summary()
    result["broker_rss_mib"] = round(stack.broker.rss_mib() or 0.0)
    result["dead_letters"] = await _dead_letters(stack.bootstrap)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["day"] = day_of(int(time.time() * US))
    return result
