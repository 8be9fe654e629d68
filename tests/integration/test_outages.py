"""Outages under load, with the real broker and Redis:

- Redis goes away for 30 s (a restart that keeps its data) while traffic keeps coming: the worker
  stays up, says so in its log and metrics, holds its batches unacknowledged and writes them when
  Redis is back: every passage ends with its one verdict, equal to replay, KPIs not doubled.
- The broker freezes for 20 s (SIGSTOP: unreachable, as in a network partition): the worker
  reconnects by itself, with no restart, and decides everything.
- PostgreSQL, the store of record, goes away for 30 s: the live path goes on deciding and
  alerting meanwhile; the cases agent holds its batch and, once the server is back, every
  weighing and case is in the store, each once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import threading
import time
import urllib.request

import psycopg
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from schemas.policy import load_policy
from sim.config import SimConfig
from sim.output import write_traffic
from sim.publish import publish
from sim.traffic import CitySimulator
from sinks import constants as K
from streams.embedded import embedded_stack, free_port
from tests.integration.helpers import expected_kpi, kpi_in_redis, verdicts_in_redis
from zhichao.replay import load_inputs, replay
from zhichao.up import start_worker, stop_worker

VEHICLES = 300
PARTITIONS = 4
RUN_S = 45.0  # the traffic is published over this much wall time
REDIS_DOWN_S = 30.0
BROKER_FROZEN_S = 20.0
POSTGRES_DOWN_S = 30.0


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.ConnectionError):
            if predicate():
                return True
        time.sleep(0.5)
    return False


def _gauge(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()  # noqa: S310
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise KeyError(name)


def _paced_publisher(traffic, stack) -> threading.Thread:
    first = min(p["ts_us"] for p in traffic.passages)
    last = max(r["ts_us"] for r in traffic.passages + traffic.reads)
    speedup = (last - first) / 1e6 / RUN_S
    thread = threading.Thread(
        target=lambda: asyncio.run(publish(traffic, stack.bootstrap, PARTITIONS, speedup=speedup))
    )
    thread.start()
    return thread


def _outcome(stack, client, worker, work, publisher) -> dict:
    publisher.join(timeout=300)
    _wait(lambda: client.xlen(K.VERDICT_STREAM) >= VEHICLES, 180)
    time.sleep(2)
    return {
        "alive": worker.poll() is None,
        "streamed": verdicts_in_redis(client),
        "feed": client.xlen(K.VERDICT_STREAM),
        "kpi": kpi_in_redis(client),
    }


def _records(dsn: str, streamed: dict, timeout_s: float = 90.0) -> dict:
    """The store of record once it holds every stored weighing (or the time is up)."""
    stored = {p for p, v in streamed.items() if v["verdict"] in ("warning", "overlimit")}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=2) as conn:
                weighings = [p for (p,) in conn.execute("SELECT passage_id FROM weighings")]
                cases = [p for (p,) in conn.execute("SELECT passage_id FROM cases")]
                evidence = [p for (p,) in conn.execute("SELECT passage_id FROM evidence_records")]
            if set(weighings) >= stored or time.monotonic() > deadline:
                return {"weighings": weighings, "cases": cases, "evidence": evidence}
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def _traffic(registry):
    """The city's traffic without the long tail after the last weighing (downstream
    checkpoint sightings, heartbeats), so that pacing spreads the weighings over the run."""
    traffic = CitySimulator(SimConfig(vehicles=VEHICLES, seed=41), registry).run()
    end = max(p["ts_us"] for p in traffic.passages) + 60_000_000
    return dataclasses.replace(
        traffic, reads=[r for r in traffic.reads if r["ts_us"] <= end], heartbeats=[]
    )


def _run(tmp_path_factory, registry, name, outage) -> dict:
    work = tmp_path_factory.mktemp(name)
    traffic = _traffic(registry)
    write_traffic(traffic, work / "inputs", "avro")
    port = free_port()
    with embedded_stack(work) as stack:
        client = redis.Redis.from_url(stack.redis_dsn)
        worker = start_worker(stack, PARTITIONS, work / "worker.log", port)
        try:
            assert _wait(lambda: client.exists(K.WORKER_READY_KEY), 180), "worker not ready"
            publisher = _paced_publisher(traffic, stack)
            time.sleep(8)  # under load
            seen = outage(stack, client, port)
            result = _outcome(stack, client, worker, work, publisher)
            result["records"] = _records(stack.pg_dsn, result["streamed"])
        finally:
            stop_worker(worker)
    return {
        **result,
        **seen,
        "inputs": work / "inputs",
        "log": (work / "worker.log").read_text(errors="replace"),
    }


def _redis_outage(stack, client, port) -> dict:
    with contextlib.suppress(redis.ConnectionError):
        client.execute_command("SHUTDOWN", "SAVE")  # keeps its data, like a planned restart
    stack.redis.process.wait(30)
    time.sleep(REDIS_DOWN_S / 2)
    during = _gauge(port, "zhichao_redis_up")
    time.sleep(REDIS_DOWN_S / 2)
    stack.redis.start()
    return {"redis_up_during": during}


def _broker_freeze(stack, client, port) -> dict:
    os.killpg(stack.broker.process.pid, signal.SIGSTOP)
    try:
        time.sleep(BROKER_FROZEN_S)
    finally:
        os.killpg(stack.broker.process.pid, signal.SIGCONT)
    return {}


def _postgres_outage(stack, client, port) -> dict:
    stack.postgres.stop(keep=True)  # its data stays, as in a restart of the server
    before = client.xlen(K.VERDICT_STREAM)
    time.sleep(POSTGRES_DOWN_S)
    decided_meanwhile = client.xlen(K.VERDICT_STREAM) - before
    stack.postgres.start()
    return {"decided_while_postgres_down": decided_meanwhile, "pg_dsn": stack.pg_dsn}


@pytest.fixture(scope="module")
def postgres_outage(tmp_path_factory, registry):
    return _run(tmp_path_factory, registry, "postgres-outage", _postgres_outage)


@pytest.fixture(scope="module")
def redis_outage(tmp_path_factory, registry):
    return _run(tmp_path_factory, registry, "redis-outage", _redis_outage)


@pytest.fixture(scope="module")
def broker_outage(tmp_path_factory, registry):
    return _run(tmp_path_factory, registry, "broker-outage", _broker_freeze)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, registry, redis_outage):
    verdicts, _ = replay(
        load_inputs(sorted(redis_outage["inputs"].glob("*.avro"))), registry, load_policy()
    )
    return verdicts


def test_redis_outage_loses_nothing_and_doubles_nothing(redis_outage, replayed):
    assert redis_outage["alive"], redis_outage["log"][-3000:]
    assert redis_outage["streamed"] == {v["passage_id"]: v for v in replayed}
    assert redis_outage["feed"] == VEHICLES
    assert redis_outage["kpi"] == expected_kpi(replayed)


def test_the_worker_says_redis_is_down_and_back(redis_outage):
    assert redis_outage["redis_up_during"] == 0
    assert "Redis unavailable" in redis_outage["log"]
    assert "Redis is back" in redis_outage["log"]


def test_the_worker_rides_out_a_frozen_broker(broker_outage, replayed):
    assert broker_outage["alive"], broker_outage["log"][-3000:]
    assert broker_outage["streamed"] == {v["passage_id"]: v for v in replayed}
    assert broker_outage["feed"] == VEHICLES


def test_a_postgres_outage_holds_only_the_store_of_record_and_loses_nothing(
    postgres_outage, replayed
):
    assert postgres_outage["alive"], postgres_outage["log"][-3000:]
    assert postgres_outage["streamed"] == {v["passage_id"]: v for v in replayed}
    assert postgres_outage["decided_while_postgres_down"] > 0  # the live path went on
    assert "PostgreSQL unavailable" in postgres_outage["log"]
    assert "PostgreSQL is back" in postgres_outage["log"]
    records = postgres_outage["records"]
    stored = sorted(v["passage_id"] for v in replayed if v["verdict"] in ("warning", "overlimit"))
    assert sorted(records["weighings"]) == stored
    assert sorted(records["cases"]) == sorted(v["passage_id"] for v in replayed if v["enforceable"])
    assert sorted(records["evidence"]) == sorted(records["cases"])  # each case with its record
