"""The live pipeline on real parts: simulated traffic through Tansu and a Faust worker into
Redis gives, for every passage, the verdict ``zhichao replay`` gives on the same inputs."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
import urllib.request

import fastavro
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

import schemas
from schemas import topics as T
from schemas.plate_grammar import normalise
from schemas.policy import load_policy
from sim.config import SimConfig
from sim.output import write_traffic
from sim.publish import events_of
from sim.traffic import CitySimulator
from sinks import constants as K
from sinks.sightings import MIN_CONFIDENCE
from streams.embedded import embedded_stack, free_port
from streams.stages import measure_passages
from tests.integration.helpers import (
    alert_feed_count,
    alerts_in_redis,
    check_one_order_per_vehicle,
    evidence_in_redis,
    expected_alerts,
    expected_kpi,
    kpi_in_redis,
    orders_in_redis,
    publish_events,
    store_of_record,
    verdicts_in_redis,
    zhichao_verify,
)
from zhichao.replay import load_inputs, replay
from zhichao.up import start_worker, stop_worker

VEHICLES = 240
PARTITIONS = 4


def controller_records(passages, registry) -> list[dict]:
    """What a WIM controller that computes axle loads itself would publish for these passages."""
    measured, _ = measure_passages(passages, registry)
    names = schemas.WIM_VEHICLE.field_names
    out = []
    for m in measured:
        record = {k: m.get(k) for k in names}
        record["flags"] = list(m["flags"])
        record["temperature_c"] = None
        out.append(record)
    return out


async def publish_mixed(traffic, vehicles, bootstrap: str) -> None:
    """The simulated traffic, with one site's weighings as controller records on wim.vehicles."""
    events = events_of(traffic)
    events += [
        (
            v["ts_us"],
            T.WIM_VEHICLES,
            v["site_id"].encode(),
            schemas.WIM_VEHICLE.encode_wire(v),
            v["passage_id"],
        )
        for v in vehicles
    ]
    events.sort(key=lambda e: e[0])
    await publish_events(events, bootstrap, PARTITIONS)


def write_controller_file(vehicles, path) -> None:
    with open(path, "wb") as fh:
        fastavro.writer(fh, schemas.WIM_VEHICLE.parsed, vehicles)


@pytest.fixture(scope="module")
def run(tmp_path_factory, registry):
    work = tmp_path_factory.mktemp("pipeline")
    traffic = CitySimulator(SimConfig(vehicles=VEHICLES, seed=77), registry).run()
    site = traffic.passages[0]["site_id"]  # this site's controller computes the axle loads
    raw = [p for p in traffic.passages if p["site_id"] != site]
    controller = controller_records([p for p in traffic.passages if p["site_id"] == site], registry)
    assert 0 < len(controller) < VEHICLES
    traffic = dataclasses.replace(traffic, passages=raw)
    write_traffic(traffic, work / "inputs", "avro")
    write_controller_file(controller, work / "inputs" / "controller-vehicles.avro")
    metrics_port = free_port()
    with embedded_stack(work) as stack:
        worker = start_worker(
            stack,
            PARTITIONS,
            work / "worker.log",
            metrics_port,
            extra_env={"ZHICHAO_EARLY_DECISIONS": "1"},
        )
        try:
            asyncio.run(publish_mixed(traffic, controller, stack.bootstrap))
            client = redis.Redis.from_url(stack.redis_dsn)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and worker.poll() is None:
                if client.xlen(K.VERDICT_STREAM) >= VEHICLES:
                    break
                time.sleep(1)
            time.sleep(2)
            metrics = (
                urllib.request.urlopen(  # noqa: S310 - our own loopback endpoint
                    f"http://127.0.0.1:{metrics_port}/metrics", timeout=10
                )
                .read()
                .decode()
            )
            streamed = verdicts_in_redis(client)
            feed = client.xlen(K.VERDICT_STREAM)
            kpi = kpi_in_redis(client)
            devices = {
                m.decode(): {
                    f.decode(): v.decode()
                    for f, v in client.hgetall(K.DEVICE_KEY.format(device_id=m.decode())).items()
                }
                for m in client.smembers(K.DEVICES_KEY)
            }
            sightings = {
                k.decode().split(":", 2)[2]: client.zcard(k) for k in client.keys("zc:sightings:*")
            }
            records = store_of_record(stack.pg_dsn, streamed)
        finally:
            stop_worker(worker)
        evidence = evidence_in_redis(client)
        alerts = alerts_in_redis(client)
        alert_feed = alert_feed_count(client)
        orders = orders_in_redis(client)
        verified = zhichao_verify(stack, "--export", str(work / "evidence"))
        log = (work / "worker.log").read_text(errors="replace")
    yield {
        "alerts": alerts,
        "alert_feed": alert_feed,
        "orders": orders,
        "evidence": evidence,
        "verified": verified,
        "exported": work / "evidence",
        "evidence_key": stack.evidence_key,
        "traffic": traffic,
        "streamed": streamed,
        "feed": feed,
        "log": log,
        "kpi": kpi,
        "devices": devices,
        "inputs": work / "inputs",
        "metrics": metrics,
        "sightings": sightings,
        "controller": controller,
        "records": records,
    }


def test_every_enforceable_verdict_has_one_record_in_an_intact_chain(run):
    enforceable = {pid for pid, v in run["streamed"].items() if v["enforceable"]}
    assert enforceable, "the run has no enforceable verdict to seal"
    assert sorted(pid for pids in run["evidence"].values() for pid in pids) == sorted(enforceable)
    assert run["verified"].returncode == 0, run["verified"].stdout
    assert run["verified"].stdout.count("chain intact") == len(run["evidence"])


def test_zhichao_verify_names_the_record_changed_in_an_export(run, tmp_path):
    site, pids = max(run["evidence"].items(), key=lambda kv: len(kv[1]))
    lines = (run["exported"] / f"{site}.evidence").read_bytes().splitlines()
    i = len(lines) // 2
    lines[i] = lines[i].replace(b'"gvw_kg":', b'"gvw_kg":9', 1)
    tampered = tmp_path / "tampered.evidence"
    tampered.write_bytes(b"\n".join(lines) + b"\n")
    out = subprocess.run(
        [sys.executable, "-m", "zhichao.cli", "verify", "--file", str(tampered)],
        env={**os.environ, "ZHICHAO_EVIDENCE_KEY": run["evidence_key"]},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert f"{i} records verified, then record {i} (seq {i + 1}): altered" in out.stdout


def test_alerts_are_those_of_the_rules_once_each(run, registry):
    verdicts, _ = replay(load_inputs(sorted(run["inputs"].glob("*.avro"))), registry, load_policy())
    expected = expected_alerts(verdicts, registry)
    assert expected, "the run raises no alert"
    assert run["alerts"] == expected
    assert run["alert_feed"] == len(expected)


def test_every_passage_gets_exactly_one_verdict(run):
    assert len(run["streamed"]) == VEHICLES, run["log"][-3000:]
    assert run["feed"] == VEHICLES
    ids = {p["passage_id"] for p in run["traffic"].passages}
    ids |= {v["passage_id"] for v in run["controller"]}
    assert set(run["streamed"]) == ids


def test_streaming_equals_replay_field_by_field(run, registry):
    verdicts, _ = replay(load_inputs(sorted(run["inputs"].glob("*.avro"))), registry, load_policy())
    replayed = {v["passage_id"]: v for v in verdicts}
    diffs = {
        pid: {
            k: (run["streamed"].get(pid, {}).get(k), v[k])
            for k in v
            if run["streamed"].get(pid, {}).get(k) != v[k]
        }
        for pid, v in replayed.items()
    }
    diffs = {pid: d for pid, d in diffs.items() if d}
    assert not diffs, f"{len(diffs)} verdicts differ (streamed, replayed): {diffs}"


def test_no_dead_letters_and_no_errors_in_the_worker_log(run):
    assert "dead letter" not in run["log"]
    assert "Traceback" not in run["log"], run["log"][-3000:]


def test_kpi_counters_equal_those_of_replay(run, registry):
    verdicts, _ = replay(load_inputs(sorted(run["inputs"].glob("*.avro"))), registry, load_policy())
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


def test_controller_weighings_are_decided_like_raw_ones(run):
    for v in run["controller"]:
        verdict = run["streamed"][v["passage_id"]]
        assert verdict["axle_count"] == len(v["axle_loads_kg"])
        assert verdict["gvw_kg"] == pytest.approx(sum(v["axle_loads_kg"]), abs=0.1)


def test_every_confident_read_is_a_sighting_of_its_plate(run):
    expected: dict[str, set[str]] = {}
    for r in run["traffic"].reads:
        plate = normalise(r["plate"])
        if plate and r["confidence"] >= MIN_CONFIDENCE:
            expected.setdefault(plate, set()).add(r["read_id"])
    assert run["sightings"] == {p: len(ids) for p, ids in expected.items()}
    checkpoints = [r for r in run["traffic"].reads if r["view"] not in ("front", "rear")]
    assert checkpoints  # trajectories include checkpoint cameras, not only weigh sites


def test_prometheus_metrics_count_what_happened(run):
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(run["metrics"])
        for sample in family.samples
    }
    assert ("zhichao_pending_vehicles", ()) in samples

    def value(name: str, **labels: str) -> float:
        """A sample's value; a labelled series never incremented is absent, i.e. 0."""
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    t = run["traffic"]
    assert value("zhichao_events_in_total", topic="wim.passages") == len(t.passages)
    assert value("zhichao_events_in_total", topic="wim.vehicles") == len(run["controller"])
    assert value("zhichao_events_in_total", topic="anpr.reads") == len(t.reads)
    assert value("zhichao_events_out_total", topic="vehicles.verdicts") == len(run["streamed"])
    assert value("zhichao_weigh_to_verdict_seconds_count") == len(run["streamed"])
    for verdict in ("ok", "warning", "overlimit"):
        for enforceable in (True, False):
            n = sum(
                v["verdict"] == verdict and v["enforceable"] == enforceable
                for v in run["streamed"].values()
            )
            label = "yes" if enforceable else "no"
            assert value("zhichao_verdicts_total", verdict=verdict, enforceable=label) == n
    assert value("zhichao_pending_vehicles") == 0
    # some vehicles were decided before their site's cut, and their group's join agreed
    assert value("zhichao_early_decisions_total") > 0
    assert value("zhichao_early_disagreements_total") == 0
    # every 预判 order was confirmed or withdrawn by its vehicle's verdict
    issued = value("zhichao_provisional_orders_total", result="issued")
    settled = sum(
        value("zhichao_provisional_orders_total", result=r) for r in ("confirmed", "withdrawn")
    )
    assert issued == settled


def test_one_dispatch_order_per_vehicle_that_calls_for_one(run, registry):
    verdicts, _ = replay(load_inputs(sorted(run["inputs"].glob("*.avro"))), registry, load_policy())
    check_one_order_per_vehicle(run["orders"], verdicts, registry)


def test_the_store_of_record_has_every_weighing_and_one_case_per_enforceable_verdict(run):
    """Over-limit and warning verdicts in PostgreSQL as the worker decided them, and a case in
    待审核 for each enforceable one, exactly once."""
    records, streamed = run["records"], run["streamed"]
    enforceable = {p for p, v in streamed.items() if v["enforceable"]}
    stored = {p for p, v in streamed.items() if v["verdict"] in ("warning", "overlimit")}
    assert enforceable and set(records["weighings"]) == stored
    for passage_id, body in records["weighings"].items():
        assert body == streamed[passage_id]
    assert sorted(p for p, _ in records["cases"]) == sorted(enforceable)
    assert {state for _, state in records["cases"]} == {"pending_review"}
    assert records["opened"] == len(enforceable)
    assert sorted(records["evidence"]) == sorted(enforceable)  # each case with its record
