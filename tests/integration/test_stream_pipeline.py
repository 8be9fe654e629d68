"""The live pipeline on real parts: simulated traffic through Tansu and a Faust worker into
Redis gives, for every passage, the verdict ``zhichao replay`` gives on the same inputs."""

from __future__ import annotations

import asyncio
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
from tests.integration.helpers import expected_kpi, kpi_in_redis, verdicts_in_redis
from zhichao.replay import load_inputs, replay
from zhichao.up import start_worker, stop_worker

VEHICLES = 240
PARTITIONS = 4


@pytest.fixture(scope="module")
def run(tmp_path_factory, registry):
    work = tmp_path_factory.mktemp("pipeline")
    traffic = CitySimulator(SimConfig(vehicles=VEHICLES, seed=77), registry).run()
    write_traffic(traffic, work / "inputs", "avro")
    with embedded_stack(work) as stack:
        worker = start_worker(stack, PARTITIONS, work / "worker.log")
        try:
            asyncio.run(publish(traffic, stack.bootstrap, PARTITIONS, speedup=0))
            client = redis.Redis.from_url(stack.redis_dsn)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and worker.poll() is None:
                if client.xlen(K.VERDICT_STREAM) >= VEHICLES:
                    break
                time.sleep(1)
            time.sleep(2)
            streamed = verdicts_in_redis(client)
            feed = client.xlen(K.VERDICT_STREAM)
            kpi = kpi_in_redis(client)
            devices = {m.decode(): {f.decode(): v.decode() for f, v in
                                    client.hgetall(K.DEVICE_KEY.format(device_id=m.decode()))
                                    .items()}
                       for m in client.smembers(K.DEVICES_KEY)}
        finally:
            stop_worker(worker)
        log = (work / "worker.log").read_text(errors="replace")
    yield {"traffic": traffic, "streamed": streamed, "feed": feed, "log": log, "kpi": kpi,
           "devices": devices, "inputs": work / "inputs"}


def test_every_passage_gets_exactly_one_verdict(run):
    assert len(run["streamed"]) == VEHICLES, run["log"][-3000:]
    assert run["feed"] == VEHICLES
    assert set(run["streamed"]) == {p["passage_id"] for p in run["traffic"].passages}


def test_streaming_equals_replay_field_by_field(run, registry):
    verdicts, _ = replay(load_inputs(sorted(run["inputs"].glob("*.avro"))), registry,
                         load_policy())
    replayed = {v["passage_id"]: v for v in verdicts}
    diffs = {
        pid: {k: (run["streamed"].get(pid, {}).get(k), v[k]) for k in v
              if run["streamed"].get(pid, {}).get(k) != v[k]}
        for pid, v in replayed.items()
    }
    diffs = {pid: d for pid, d in diffs.items() if d}
    assert not diffs, f"{len(diffs)} verdicts differ (streamed, replayed): {diffs}"


def test_no_dead_letters_and_no_errors_in_the_worker_log(run):
    assert "dead letter" not in run["log"]
    assert "Traceback" not in run["log"], run["log"][-3000:]


def test_kpi_counters_equal_those_of_replay(run, registry):
    verdicts, _ = replay(load_inputs(sorted(run["inputs"].glob("*.avro"))), registry,
                         load_policy())
    assert run["kpi"] == expected_kpi(verdicts)


def test_device_heartbeats_give_each_device_its_latest_state(run):
    latest: dict[str, dict] = {}
    for hb in run["traffic"].heartbeats:
        if hb["device_id"] not in latest or hb["ts_us"] > latest[hb["device_id"]]["ts_us"]:
            latest[hb["device_id"]] = hb
    assert set(run["devices"]) == set(latest)
    for device_id, hb in latest.items():
        assert int(run["devices"][device_id]["last_seen_us"]) == hb["ts_us"]
        assert run["devices"][device_id]["status"] == hb["status"]
