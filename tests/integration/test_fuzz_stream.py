"""Malformed messages of many kinds mixed into valid traffic, through the real worker on the
real broker: the worker never stops, every bad message is in ``dead.letters`` with a reason,
and the valid traffic's verdicts are exactly replay's (as in a clean run).

``make test`` mixes ``ZHICHAO_FUZZ_MESSAGES`` (default 3,000) bad messages; ``make fuzz`` runs
it with 100,000."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter

import pytest
import redis

from schemas.policy import load_policy
from sim.config import SimConfig
from sim.malformed import malformed_events
from sim.output import write_traffic
from sim.publish import events_of
from sim.traffic import CitySimulator
from sinks import constants as K
from streams.embedded import embedded_stack
from tests.integration.helpers import dead_letters, publish_events, verdicts_in_redis
from zhichao.replay import load_inputs, replay
from zhichao.up import start_worker, stop_worker

VEHICLES = 150
PARTITIONS = 4
MALFORMED = int(os.environ.get("ZHICHAO_FUZZ_MESSAGES", "3000"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, registry):
    work = tmp_path_factory.mktemp("fuzz")
    traffic = CitySimulator(SimConfig(vehicles=VEHICLES, seed=13), registry).run()
    write_traffic(traffic, work / "inputs", "avro")
    valid = events_of(traffic)
    bad = list(malformed_events(traffic, MALFORMED, seed=13))
    events = valid + bad
    rng = random.Random(13)
    # the bad messages land among the valid ones at random places; the valid keep their order
    order = sorted(range(len(events)), key=lambda i: (events[i][0], rng.random()))
    events = [events[i] for i in order]
    with embedded_stack(work) as stack:
        client = redis.Redis.from_url(stack.redis_dsn)
        worker = start_worker(stack, PARTITIONS, work / "worker.log")
        try:
            asyncio.run(publish_events(events, stack.bootstrap, PARTITIONS))
            letters = asyncio.run(dead_letters(stack.bootstrap, MALFORMED, 240 + MALFORMED / 200))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and client.xlen(K.VERDICT_STREAM) < VEHICLES:
                time.sleep(0.5)
            time.sleep(2)
            streamed = verdicts_in_redis(client)
            alive = worker.poll() is None
        finally:
            stop_worker(worker)
    return {
        "letters": letters,
        "streamed": streamed,
        "alive": alive,
        "inputs": work / "inputs",
        "log": (work / "worker.log").read_text(errors="replace"),
    }


def test_the_worker_survives_every_bad_message(run):
    assert run["alive"], run["log"][-3000:]
    assert "Traceback" not in run["log"], run["log"][-3000:]


def test_every_bad_message_is_a_dead_letter_with_a_reason(run):
    letters = run["letters"]
    assert len(letters) == MALFORMED, Counter(x["reason"] for x in letters)
    assert all(x["reason"] and x["message"] for x in letters)
    assert len({(x["topic"], x["partition"], x["offset"]) for x in letters}) == MALFORMED
    reasons = Counter(x["reason"] for x in letters)
    for expected in (
        "undecodable",
        "wrong_schema",
        "bad_calib",
        "saturated_signal",
        "bad_speed",
        "bad_plate",
        "bad_timestamp",
        "unknown_camera",
        "unknown_device",
    ):
        assert reasons[expected] > 0, reasons


def test_valid_traffic_gets_exactly_the_verdicts_of_replay(run, registry):
    verdicts, _ = replay(load_inputs(sorted(run["inputs"].glob("*.avro"))), registry, load_policy())
    assert run["streamed"] == {v["passage_id"]: v for v in verdicts}
