"""Valid traffic keeps its latency while a flood of bad input goes to ``dead.letters``.

The same paced traffic runs twice on a fresh stack with a warmed worker: once alone, once with
ten malformed messages for every valid one mixed in at random times of the same stretch (a
gateway sending a wrong schema id for everything, a device sending garbage after a firmware
update). The valid passages' produce→verdict p99 with the flood stays within twice its value
without it; their verdicts are replay's; every bad message is dead-lettered once with a reason.

``make test`` runs a short stretch (``ZHICHAO_FLOOD_VEHICLES``, default 200); ``make fuzz`` a
long one. The figures are printed; the bound is the issue's, loose enough for a shared
machine."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
from collections import Counter
from pathlib import Path

import pytest

from bench.broker import Workload, fill, percentiles, warmed_worker, workload
from schemas.policy import load_policy
from schemas.units import US
from sim.config import ARCHIVE_START
from sim.malformed import malformed_events
from sim.output import write_traffic
from tests.integration.helpers import dead_letters, verdicts_in_redis
from zhichao.replay import load_inputs, replay

PARTITIONS = 4
VEHICLES = int(os.environ.get("ZHICHAO_FLOOD_VEHICLES", "100"))
VALID_PER_S = 8.0  # vehicles a second: a busy city's share of one worker, well below its ceiling
FLOOD = 10  # bad messages per valid one
START = ARCHIVE_START + dt.timedelta(days=3)


def _weighing_stretch(work: Workload, after_s: float = 60.0) -> Workload:
    """``work`` without the camera reads of its vehicles' later trips past checkpoints: they
    would keep the paced publisher going for minutes after the last weighing."""
    last = max(p["ts_us"] for p in work.traffic.passages) + after_s * US
    reads = [r for r in work.traffic.reads if r["ts_us"] <= last]
    return dataclasses.replace(work, traffic=dataclasses.replace(work.traffic, reads=reads))


def _run(here: Path, warm, paced, bad: list, speedup: float) -> dict:
    def publish_warm(stack):
        asyncio.run(fill(stack, warm.traffic, PARTITIONS))

    sent_at: dict[str, float] = {}
    with warmed_worker(here, PARTITIONS, publish_warm) as (stack, proc, log, clock):
        clock.wait_for(warm.measured_ids, [proc], log, 300)
        asyncio.run(fill(stack, paced.traffic, PARTITIONS, speedup, sent_at, mixed_in=bad))
        got = clock.wait_for(paced.measured_ids, [proc], log, 300)
        letters = asyncio.run(dead_letters(stack.bootstrap, len(bad), 120 + len(bad) / 200))
        all_ids = {p["passage_id"] for p in paced.traffic.passages + warm.traffic.passages}
        clock.wait_for(all_ids, [proc], log, 120)  # the unmeasured tail too, for replay
        streamed = verdicts_in_redis(clock.client)
        alive = proc.poll() is None
    latency_ms = [(got[pid] - sent_at[pid]) * 1000.0 for pid in paced.measured_ids]
    return {
        "p": percentiles(latency_ms),
        "letters": letters,
        "streamed": streamed,
        "alive": alive,
        "log": log.read_text(errors="replace"),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory, registry):
    work = tmp_path_factory.mktemp("flood")
    warm = workload(registry, 60, seed=71, start=START)
    warm_end = max(r["ts_us"] for r in warm.traffic.passages + warm.traffic.reads)
    moment = dt.datetime.fromtimestamp(warm_end / US + 60, tz=START.tzinfo)
    paced = _weighing_stretch(workload(registry, VEHICLES, seed=72, start=moment))
    ts = sorted(p["ts_us"] for p in paced.traffic.passages)
    speedup = VALID_PER_S / ((len(ts) - 1) / ((ts[-1] - ts[0]) / US))
    valid_messages = len(paced.traffic.passages) + len(paced.traffic.reads)
    bad = list(malformed_events(paced.traffic, FLOOD * valid_messages, seed=72))
    for traffic, name in ((warm.traffic, "warm"), (paced.traffic, "paced")):
        write_traffic(traffic, work / "inputs" / name, "avro")
    quiet = _run(work / "quiet", warm, paced, [], speedup)
    flood = _run(work / "flood", warm, paced, bad, speedup)
    print(
        f"\n{VEHICLES} vehicles at {VALID_PER_S:g}/s, {len(bad):,} bad messages: "
        f"weigh→verdict quiet {quiet['p']}, flood {flood['p']} (ms)"
    )
    return {"quiet": quiet, "flood": flood, "bad": bad, "inputs": work / "inputs"}


def test_the_worker_survives_the_flood(runs):
    flood = runs["flood"]
    assert flood["alive"], flood["log"][-3000:]
    assert "Traceback" not in flood["log"], flood["log"][-3000:]


def test_valid_traffic_keeps_its_latency_during_the_flood(runs):
    quiet, flood = runs["quiet"]["p"], runs["flood"]["p"]
    assert flood["p99"] <= 2 * quiet["p99"], (quiet, flood)


def test_every_bad_message_is_dead_lettered_once_with_its_reason(runs):
    letters = runs["flood"]["letters"]
    assert len(letters) == len(runs["bad"]), Counter(x["reason"] for x in letters)
    assert len({(x["topic"], x["partition"], x["offset"]) for x in letters}) == len(letters)
    assert all(x["reason"] and x["message"] for x in letters)
    assert not runs["quiet"]["letters"]


def test_valid_verdicts_equal_replay_in_both_runs(runs, registry):
    files = sorted(runs["inputs"].glob("*/wim_passages.avro"))
    files += sorted(runs["inputs"].glob("*/camera_reads.avro"))
    verdicts, _ = replay(load_inputs(files), registry, load_policy())
    expected = {v["passage_id"]: v for v in verdicts}
    assert runs["quiet"]["streamed"] == expected
    assert runs["flood"]["streamed"] == expected
