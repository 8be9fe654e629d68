"""Worker memory with a city's worth of plates in its state (issue 7): a million plates on the
黑名单 and a million plates with sightings (trajectories), put into Redis before the worker
starts, then raw-signal traffic and gateway batches through it.

The per-plate state of zhichao lives in Redis by design (docs/semantics.md, State: Faust
tables would write a changelog per update and hold every key in the worker); the worker holds
only its match buffers. So the figure to watch is the worker's peak RSS with and without the
plates, next to Redis' own memory for them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

from bench.broker import Workload, batch_clock, fill, rss_mib, wait_ready
from schemas import topics as T
from sim.gateway import Batch, publish
from sinks import constants as K
from sinks.sightings import SIGHTINGS_KEY
from streams.embedded import EmbeddedStack
from zhichao.up import start_worker, stop_worker

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXY"
SERIAL = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CHUNK = 10_000


def synthetic_plates(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct plates of the ordinary 7-character form."""
    rng = np.random.default_rng(seed)
    out: set[str] = set()
    while len(out) < n:
        m = n - len(out)
        p = rng.integers(len(PROVINCES), size=m)
        a = rng.integers(len(LETTERS), size=m)
        s = rng.integers(len(SERIAL), size=(m, 5))
        out.update(
            PROVINCES[p[i]] + LETTERS[a[i]] + "".join(SERIAL[j] for j in s[i]) for i in range(m)
        )
    return sorted(out)


def load_plates(client: redis.Redis, plates: list[str], ts_us: int) -> None:
    """Every plate on the 黑名单 and with one sighting at a checkpoint camera."""
    for i in range(0, len(plates), CHUNK):
        chunk = plates[i : i + CHUNK]
        with client.pipeline(transaction=False) as pipe:
            pipe.sadd(K.BLACKLIST_KEY, *chunk)
            for plate in chunk:
                member = f"{ts_us}|SX-G60-KK10-CAM|SX-G60-KK10|R-{plate}|0.950"
                pipe.zadd(SIGHTINGS_KEY.format(plate=plate), {member: ts_us})
            pipe.execute()


@dataclass(frozen=True)
class StateRun:
    plates: int
    worker_peak_rss_mib: float
    redis_used_mib: float
    vehicles: int


def state_run(
    stack: EmbeddedStack,
    plates: list[str],
    work: Workload,
    gateway: list[Batch],
    partitions: int,
    workdir: Path,
    timeout_s: float = 300.0,
) -> StateRun:
    """Peak RSS of one worker deciding ``work`` and ``gateway`` with ``plates`` in its state."""
    client = redis.Redis.from_url(stack.redis_dsn)
    ts_us = min(p["ts_us"] for p in work.traffic.passages)
    load_plates(client, plates, ts_us)
    asyncio.run(fill(stack, work.traffic, partitions))
    asyncio.run(publish(stack.bootstrap, T.WIM_BATCHES, [(b.key, b.value) for b in gateway]))
    log = workdir / "state-worker.log"
    worker = start_worker(stack, partitions, log)
    try:
        wait_ready(client, [worker], log)
        batch_clock(client).wait_for([b.batch_id for b in gateway], [worker], log, timeout_s)
        deadline = time.monotonic() + timeout_s
        while client.xlen(K.VERDICT_STREAM) < min(len(work.measured_ids), K.VERDICT_STREAM_MAXLEN):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise TimeoutError(f"raw traffic not decided, see {log}")
            time.sleep(0.2)
        used = int(client.info("memory")["used_memory"]) / 2**20
        return StateRun(
            len(plates),
            rss_mib(worker.pid, peak=True),
            used,
            len(work.measured_ids) + sum(b.vehicles for b in gateway),
        )
    finally:
        stop_worker(worker)
        client.close()
