"""A worker killed with SIGKILL mid-stream and started again: every passage still ends with
exactly one verdict in Redis, the same as replay, and the KPI counters are not doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import redis

from schemas.policy import load_policy
from sim.config import SimConfig
from sim.output import write_traffic
from sim.publish import publish
from sim.traffic import CitySimulator
from sinks import constants as K
from streams.embedded import embedded_stack
from tests.integration.helpers import (
    evidence_in_redis,
    expected_kpi,
    kpi_in_redis,
    verdicts_in_redis,
    zhichao_verify,
)
from zhichao.replay import load_inputs, replay
from zhichao.up import start_worker, stop_worker

VEHICLES = 400
PARTITIONS = 4


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def run(tmp_path_factory, registry):
    work = tmp_path_factory.mktemp("restart")
    traffic = CitySimulator(SimConfig(vehicles=VEHICLES, seed=31), registry).run()
    write_traffic(traffic, work / "inputs", "avro")
    with embedded_stack(work) as stack:
        client = redis.Redis.from_url(stack.redis_dsn)
        first = start_worker(stack, PARTITIONS, work / "worker-1.log")
        assert _wait(lambda: client.exists(K.WORKER_READY_KEY), 180), "first worker not ready"
        asyncio.run(publish(traffic, stack.bootstrap, PARTITIONS, speedup=0))
        # kill it in the middle of deciding, with no chance to clean up
        assert _wait(lambda: client.xlen(K.VERDICT_STREAM) >= VEHICLES // 4, 120)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        decided_before = client.xlen(K.VERDICT_STREAM)
        client.delete(K.WORKER_READY_KEY)
        second = start_worker(stack, PARTITIONS, work / "worker-2.log")
        try:
            _wait(
                lambda: (
                    client.xlen(K.VERDICT_STREAM) >= VEHICLES
                    and len(client.keys(K.VERDICT_KEY.format(passage_id="*"))) >= VEHICLES
                ),
                300,
            )
            time.sleep(3)  # anything decided twice would show up now
            streamed = verdicts_in_redis(client)
            feed = client.xlen(K.VERDICT_STREAM)
            kpi = kpi_in_redis(client)
        finally:
            stop_worker(second)
        evidence = evidence_in_redis(client)
        verified = zhichao_verify(stack)
    yield {
        "evidence": evidence,
        "verified": verified,
        "streamed": streamed,
        "feed": feed,
        "kpi": kpi,
        "before": decided_before,
        "inputs": work / "inputs",
        "log": (work / "worker-2.log").read_text(errors="replace"),
    }


def test_the_kill_happened_mid_stream(run):
    assert 0 < run["before"] < VEHICLES


def test_every_passage_has_exactly_one_verdict(run):
    assert len(run["streamed"]) == VEHICLES, run["log"][-3000:]
    assert run["feed"] == VEHICLES  # the first-write marker kept redecided passages out


def test_verdicts_and_kpis_equal_replay(run, registry):
    verdicts, _ = replay(load_inputs(sorted(run["inputs"].glob("*.avro"))), registry, load_policy())
    differ = {
        v["passage_id"]: {
            k: (x, run["streamed"].get(v["passage_id"], {}).get(k))
            for k, x in v.items()
            if run["streamed"].get(v["passage_id"], {}).get(k) != x and k != "evidence_hash"
        }
        for v in verdicts
        if run["streamed"].get(v["passage_id"]) != v
    }
    assert not differ, (differ, run["log"][-3000:])
    assert run["kpi"] == expected_kpi(verdicts)


def test_evidence_chains_survive_the_kill_intact_and_without_duplicates(run):
    enforceable = sorted(pid for pid, v in run["streamed"].items() if v["enforceable"])
    assert enforceable
    assert sorted(pid for pids in run["evidence"].values() for pid in pids) == enforceable
    assert run["verified"].returncode == 0, run["verified"].stdout
