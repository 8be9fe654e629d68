"""A flood of malformed input through one worker (issue 35): ``dead_letters_per_s``, and
``dead_letters_vs_bare_faust`` against the bare Faust loop as Faust ships it over the same
messages (same topics, same broker, same run).

The topics are filled first with malformed messages of every kind ``sim.malformed`` makes (one
in a thousand is megabytes of samples), and nothing else; then the bare loop counts them, then a
worker turns every one into a dead letter. The worker's rate is from the moment it holds its
partitions to the broker's time of the last dead letter (each carries the worker's produce
time); the bare loop's is from its first message to its last. Three pairs on fresh stacks, the
median by ratio is reported. In ``make test`` a small version runs once so that the harness
cannot rot; the figures are reported, not asserted."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
import redis

from bench.broker import bare_rate, dead_letter_consumer, publish, wait_ready, workload
from sim.config import ARCHIVE_START
from sim.malformed import malformed_events
from streams.embedded import EmbeddedStack, embedded_stack
from zhichao.up import start_worker, stop_worker

PARTITIONS = 4
PAIRS = 3


@dataclasses.dataclass(frozen=True)
class Pair:
    bare_per_s: float
    worker_per_s: float

    @property
    def ratio(self) -> float:
        return self.worker_per_s / self.bare_per_s


async def last_dead_letter_s(bootstrap: str, expected: int, timeout_s: float) -> float:
    """The produce time (s) of the last of ``expected`` dead letters, once all are in; more than
    ``expected`` is an error (a message dead-lettered twice)."""
    consumer = dead_letter_consumer(bootstrap)
    await consumer.start()
    seen, last_ms = 0, 0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{seen} of {expected} dead letters after {timeout_s} s")
            for records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                seen += len(records)
                last_ms = max([last_ms] + [r.timestamp for r in records])
        await asyncio.sleep(1.0)  # anything beyond the expected would be a duplicate
        extra = sum(len(r) for r in (await consumer.getmany(timeout_ms=500)).values())
        if extra:
            raise AssertionError(f"{seen + extra} dead letters for {expected} messages")
    finally:
        await consumer.stop()
    return last_ms / 1000.0


def worker_rate(stack: EmbeddedStack, n: int, where: Path, timeout_s: float) -> float:
    client = redis.Redis.from_url(stack.redis_dsn)
    log = where / "worker.log"
    proc = start_worker(stack, PARTITIONS, log)
    try:
        ready_s = wait_ready(client, [proc], log)
        last_s = asyncio.run(last_dead_letter_s(stack.bootstrap, n, timeout_s))
        if proc.poll() is not None:
            raise RuntimeError(f"the worker stopped, see {log}")
        return n / (last_s - ready_s)
    finally:
        stop_worker(proc)
        client.close()


def flood_pair(registry, n: int, seed: int, where: Path) -> Pair:
    template = workload(registry, 50, seed=seed, start=ARCHIVE_START).traffic
    bad = list(malformed_events(template, n, seed=seed))
    topics = tuple(sorted({e[1] for e in bad}))
    (where / "stack").mkdir(parents=True)
    with embedded_stack(where / "stack") as stack:
        # only the malformed messages go on the topics: the traffic is their template
        asyncio.run(publish(stack, bad, PARTITIONS))
        bare = bare_rate("bare_faust", stack, topics, n, PARTITIONS, where / "bare.log", stock=True)
        return Pair(bare, worker_rate(stack, n, where, timeout_s=120 + n / 100))


@pytest.mark.benchmark(group="dead-letters")
def test_dead_letters_vs_bare_faust(benchmark, registry, smoke, tmp_path):
    n = 2_000 if smoke else 30_000

    def run():
        return [
            flood_pair(registry, n, 35 + i, tmp_path / f"pair-{i}")
            for i in range(1 if smoke else PAIRS)
        ]

    pairs = benchmark.pedantic(run, rounds=1, iterations=1)
    median = sorted(pairs, key=lambda p: p.ratio)[len(pairs) // 2]
    info = benchmark.extra_info
    info["malformed_messages"] = n
    info["dead_letters_per_s"] = median.worker_per_s
    info["dead_letters_bare_faust_messages_per_s"] = median.bare_per_s
    info["dead_letters_vs_bare_faust"] = median.ratio
    info["dead_letters_vs_bare_faust_pairs"] = [p.ratio for p in pairs]
    print(
        f"\n{n:,} malformed messages: worker {median.worker_per_s:,.0f} dead letters/s, bare "
        f"Faust as shipped {median.bare_per_s:,.0f} msg/s = {median.ratio:.2f} (pairs: "
        + ", ".join(f"{p.ratio:.2f}" for p in pairs)
        + ")"
    )
    assert median.worker_per_s > 0 and median.bare_per_s > 0
