"""Two workers in one consumer group split the partitions between them, and every passage still
gets exactly one verdict — the one ``zhichao replay`` gives."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from schemas.policy import load_policy
from schemas.topics import ensure_topics
from sim.config import SimConfig
from sim.output import write_traffic
from sim.publish import publish
from sim.traffic import CitySimulator
from sinks import constants as K
from streams.embedded import embedded_stack, free_port
from tests.integration.helpers import verdicts_in_redis
from zhichao.replay import load_inputs, replay
from zhichao.up import start_worker, stop_worker

VEHICLES = 300
PARTITIONS = 4


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = (
        urllib.request.urlopen(  # noqa: S310 - our own loopback endpoint
            f"http://127.0.0.1:{port}/metrics", timeout=5
        )
        .read()
        .decode()
    )
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def assigned(port: int) -> float:
    try:
        return scrape(port).get(("zhichao_assigned_partitions", ()), 0.0)
    except OSError:
        return 0.0  # not serving yet


@pytest.fixture(scope="module")
def run(tmp_path_factory, registry):
    work = tmp_path_factory.mktemp("two-workers")
    traffic = CitySimulator(SimConfig(vehicles=VEHICLES, seed=88), registry).run()
    write_traffic(traffic, work / "inputs", "avro")
    ports = [free_port(), free_port()]
    with embedded_stack(work) as stack:
        asyncio.run(ensure_topics(stack.bootstrap, PARTITIONS))
        workers = [
            start_worker(stack, PARTITIONS, work / f"worker{i}.log", port)
            for i, port in enumerate(ports)
        ]
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not all(assigned(p) > 0 for p in ports):
                assert all(w.poll() is None for w in workers), "a worker exited"
                time.sleep(1)
            shares_before = [assigned(p) for p in ports]
            asyncio.run(publish(traffic, stack.bootstrap, PARTITIONS, speedup=0))
            client = redis.Redis.from_url(stack.redis_dsn)
            while time.monotonic() < deadline and len(verdicts_in_redis(client)) < VEHICLES:
                time.sleep(1)
            time.sleep(3)
            streamed = verdicts_in_redis(client)
            feed = client.xlen(K.VERDICT_STREAM)
            metrics = [scrape(p) for p in ports]
        finally:
            for w in workers:
                stop_worker(w)
        logs = [(work / f"worker{i}.log").read_text(errors="replace") for i in range(2)]
    return {
        "traffic": traffic,
        "streamed": streamed,
        "feed": feed,
        "metrics": metrics,
        "shares": shares_before,
        "logs": logs,
        "inputs": work / "inputs",
    }


def test_both_workers_hold_and_consume_partitions(run):
    assert all(share > 0 for share in run["shares"]), run["logs"][0][-2000:]
    passages = [
        m.get(("zhichao_events_in_total", (("topic", "wim.passages"),)), 0.0)
        for m in run["metrics"]
    ]
    assert all(n > 0 for n in passages), passages
    assert sum(passages) >= VEHICLES


def test_every_passage_gets_exactly_one_verdict_equal_to_replay(run, registry):
    assert len(run["streamed"]) == VEHICLES
    assert run["feed"] == VEHICLES  # no passage was decided twice
    verdicts, _ = replay(load_inputs(sorted(run["inputs"].glob("*.avro"))), registry, load_policy())
    assert run["streamed"] == {v["passage_id"]: v for v in verdicts}
