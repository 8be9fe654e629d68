"""Crash recovery: the worker is killed with SIGKILL at random moments while it works through
the traffic (published over a minute, so that each kill lands mid-stream however fast the
worker decides), and started again each time. Every passage still ends with exactly one verdict in
Redis, the same as replay; the KPI counters are not doubled; every enforceable verdict has
exactly one record in an intact evidence chain, and exactly one case in the store of record.

``make test`` kills ``ZHICHAO_CRASH_KILLS`` (default 3) times over ``ZHICHAO_CRASH_VEHICLES``
(default 600) passages; ``make crash`` runs 5 kills over 20,000."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
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
    alert_feed_count,
    alerts_in_redis,
    check_one_order_per_vehicle,
    evidence_in_redis,
    expected_alerts,
    expected_kpi,
    kpi_in_redis,
    orders_in_redis,
    store_of_record,
    verdicts_in_redis,
    zhichao_verify,
)
from zhichao.replay import load_inputs, replay
from zhichao.up import start_worker, stop_worker

VEHICLES = int(os.environ.get("ZHICHAO_CRASH_VEHICLES", "600"))
KILLS = int(os.environ.get("ZHICHAO_CRASH_KILLS", "3"))
PARTITIONS = 4
SESSION_TIMEOUT_S = "8"  # a killed worker's partitions go to the next one after this
# the traffic arrives over about this long: published all at once, a backlog is decided faster
# than a restarted worker can be killed again mid-stream
STREAM_S = 60.0


def _decided(client) -> int:
    """Passages with a verdict so far: the KPI counters count each once (the verdict feed is
    trimmed at ~10,000 entries, so its length is no count)."""
    return sum(int(client.hget(k, "vehicles") or 0) for k in client.keys("zc:kpi:city:*"))


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _publishing(traffic, bootstrap: str) -> tuple[threading.Thread, list[BaseException]]:
    """Publish ``traffic`` paced over ``STREAM_S`` in a thread; its error, if any, in the list."""
    times = [p["ts_us"] for p in traffic.passages]
    speedup = max((max(times) - min(times)) / 1e6 / STREAM_S, 1.0)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            asyncio.run(publish(traffic, bootstrap, PARTITIONS, speedup=speedup))
        except BaseException as exc:  # noqa: BLE001 - handed to the test, which raises it
            errors.append(exc)

    thread = threading.Thread(target=send, name="publish", daemon=True)
    thread.start()
    return thread, errors


@pytest.fixture(scope="module")
def run(tmp_path_factory, registry):
    work = tmp_path_factory.mktemp("crash")
    traffic = CitySimulator(SimConfig(vehicles=VEHICLES, seed=31), registry).run()
    write_traffic(traffic, work / "inputs", "avro")
    rng = random.Random(31)
    # kill when this many verdicts are written (spread over the run), plus a random delay
    marks = sorted(rng.uniform(0.05, 0.7) * VEHICLES for _ in range(KILLS))
    os.environ["ZHICHAO_SESSION_TIMEOUT_S"] = SESSION_TIMEOUT_S
    kills = []
    with embedded_stack(work) as stack:
        client = redis.Redis.from_url(stack.redis_dsn)
        worker = start_worker(stack, PARTITIONS, work / "worker-0.log")
        try:
            assert _wait(lambda: client.exists(K.WORKER_READY_KEY), 180), "worker not ready"
            publishing, failed = _publishing(traffic, stack.bootstrap)
            for n, mark in enumerate(marks, 1):
                # each kill while the restarted worker is deciding, not while it starts
                mark = max(mark, (kills[-1] if kills else 0) + 1 + VEHICLES // 50)
                assert _wait(lambda m=mark: _decided(client) >= m, 300), "stalled"
                time.sleep(rng.uniform(0.0, 0.1))
                os.killpg(worker.pid, signal.SIGKILL)  # no chance to clean up
                worker.wait()
                kills.append(_decided(client))
                client.delete(K.WORKER_READY_KEY)
                worker = start_worker(stack, PARTITIONS, work / f"worker-{n}.log")
            publishing.join(STREAM_S * 5)
            assert not publishing.is_alive() and not failed, failed
            _wait(lambda: _decided(client) >= VEHICLES, 600)
            time.sleep(3)  # anything decided twice would show up now
            streamed = verdicts_in_redis(client)
            feed = client.xlen(K.VERDICT_STREAM)
            kpi = kpi_in_redis(client)
            records = store_of_record(stack.pg_dsn, streamed)
        finally:
            stop_worker(worker)
            del os.environ["ZHICHAO_SESSION_TIMEOUT_S"]
        evidence = evidence_in_redis(client)
        alerts = alerts_in_redis(client)
        alert_feed = alert_feed_count(client)
        orders = orders_in_redis(client)
        verified = zhichao_verify(stack)
    print(f"\nkilled {len(kills)} times, at {kills} verdicts of {VEHICLES}")
    yield {
        "alerts": alerts,
        "alert_feed": alert_feed,
        "orders": orders,
        "kills": kills,
        "evidence": evidence,
        "verified": verified,
        "streamed": streamed,
        "feed": feed,
        "kpi": kpi,
        "records": records,
        "inputs": work / "inputs",
        "log": (work / f"worker-{KILLS}.log").read_text(errors="replace"),
    }


def test_every_kill_happened_mid_stream(run):
    assert len(run["kills"]) == KILLS
    assert all(0 < k < VEHICLES for k in run["kills"]), run["kills"]


def test_every_passage_has_exactly_one_verdict(run):
    assert len(run["streamed"]) == VEHICLES, run["log"][-3000:]
    if VEHICLES < K.VERDICT_STREAM_MAXLEN:  # the feed is trimmed beyond that
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


def test_evidence_chains_survive_the_kills_intact_and_without_duplicates(run):
    enforceable = sorted(pid for pid, v in run["streamed"].items() if v["enforceable"])
    assert enforceable
    assert sorted(pid for pids in run["evidence"].values() for pid in pids) == enforceable
    assert run["verified"].returncode == 0, run["verified"].stdout


def test_alerts_survive_the_kills_once_each(run, registry):
    verdicts, _ = replay(load_inputs(sorted(run["inputs"].glob("*.avro"))), registry, load_policy())
    expected = expected_alerts(verdicts, registry)
    assert run["alerts"] == expected
    assert run["alert_feed"] == len(expected)  # none written twice


def test_one_dispatch_order_per_vehicle_that_calls_for_one(run, registry):
    verdicts, _ = replay(load_inputs(sorted(run["inputs"].glob("*.avro"))), registry, load_policy())
    check_one_order_per_vehicle(run["orders"], verdicts, registry)


def test_the_store_of_record_survives_the_kills_with_one_case_each(run, registry):
    verdicts, _ = replay(load_inputs(sorted(run["inputs"].glob("*.avro"))), registry, load_policy())
    stored = sorted(v["passage_id"] for v in verdicts if v["verdict"] in ("warning", "overlimit"))
    assert sorted(run["records"]["weighings"]) == stored
    assert sorted(p for p, _ in run["records"]["cases"]) == sorted(
        v["passage_id"] for v in verdicts if v["enforceable"]
    )
    assert run["records"]["opened"] == len(run["records"]["cases"])  # one open event each
    assert sorted(run["records"]["evidence"]) == sorted(p for p, _ in run["records"]["cases"])
