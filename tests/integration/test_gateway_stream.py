"""Batched gateway mode through the real worker on the real broker and Redis: gateway batches,
one of them sent twice, mixed with a batch from an unknown site, one with bad rows and bytes
that are no batch at all. The KPI counters are exactly those of the valid rows counted once;
every over-limit vehicle has its full verdict and its alerts; the bad input is dead-lettered
with its reason, and one ``VerdictBatch`` comes out per batch received."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections import Counter

import numpy as np
import pytest
import redis

import schemas
from bench.broker import batch_clock
from schemas import topics as T
from schemas.columns import join_text, split_text, unpack
from schemas.policy import load_policy
from sim.config import SimConfig
from sim.gateway import batches, pool_of, publish
from sim.traffic import CitySimulator
from sinks import constants as K
from streams.embedded import embedded_stack
from streams.gateway import judge
from tests.integration.helpers import kpi_in_redis, verdicts_in_redis
from zhichao.up import start_worker, stop_worker

PARTITIONS = 4
START_US = int(dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC).timestamp() * 1_000_000)


async def _consume(bootstrap: str, topic: str, expected: int, timeout_s: float) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=500)
            values += [r.value for records in got.values() for r in records]
    finally:
        await consumer.stop()
    return values


def _with_bad_rows(value: bytes) -> bytes:
    _, record = schemas.decode_any_wire(value)
    speed = np.frombuffer(record["speed_kmh"], "<f4").copy()
    speed[[1, 4]] = np.nan
    return schemas.VEHICLE_BATCH.encode_wire(
        {
            **record,
            "batch_id": record["batch_id"] + "-bad",
            "passage_ids": join_text([p + "-bad" for p in split_text(record["passage_ids"])]),
            "speed_kmh": speed.tobytes(),
        }
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory, registry):
    policy = load_policy(registry.policy)
    pool = pool_of(CitySimulator(SimConfig(vehicles=800, seed=12), registry).run().truth)
    good = list(batches(pool, registry, 3000, 150, START_US, 500.0, seed=13))
    stranger = schemas.decode_any_wire(good[0].value)[1] | {"site_id": "NOWHERE", "batch_id": "X"}
    bad_rows = _with_bad_rows(good[1].value)
    messages = [(b.key, b.value) for b in good]
    messages += [(good[2].key, good[2].value)]  # sent twice: counted once
    messages += [(b"NOWHERE", schemas.VEHICLE_BATCH.encode_wire(stranger))]
    messages += [(good[1].key, bad_rows), (b"junk", b"\x00\x00\x00\x00\x0dnot a batch")]

    # what the worker must have counted: every valid row, each batch once
    expected_counts: Counter = Counter()
    flagged = []
    for value in [b.value for b in good] + [bad_rows]:
        columns, _ = unpack(schemas.decode_any_wire(value)[1], registry)
        judged = judge(columns, registry, policy)
        expected_counts += judged.counters
        flagged += judged.flagged

    root = tmp_path_factory.mktemp("gateway")
    (root / "stack").mkdir()
    with embedded_stack(root / "stack") as stack:
        asyncio.run(T.ensure_topics(stack.bootstrap, PARTITIONS))
        client = redis.Redis.from_url(stack.redis_dsn)
        worker = start_worker(stack, PARTITIONS, root / "worker.log")
        try:
            asyncio.run(publish(stack.bootstrap, T.WIM_BATCHES, messages))
            ids = [b.batch_id for b in good] + [good[1].batch_id + "-bad"]
            batch_clock(client).wait_for(ids, [worker], root / "worker.log", 180)
            letters = [
                schemas.DEAD_LETTER.decode_wire(v)
                for v in asyncio.run(_consume(stack.bootstrap, T.DEAD_LETTERS, 3, 60))
            ]
            out = asyncio.run(_consume(stack.bootstrap, T.VERDICT_BATCHES, len(ids) + 1, 60))
            assert worker.poll() is None, "the worker stopped"
            yield {
                "kpi": kpi_in_redis(client),
                "verdicts": verdicts_in_redis(client),
                "alerted": {
                    json.loads(client.get(k))["plate"]
                    for k in client.keys(K.ALERT_KEY.format(alert_id="*"))
                },
                "letters": letters,
                "out": [schemas.VERDICT_BATCH.decode_wire(v) for v in out],
                "expected_counts": expected_counts,
                "flagged": flagged,
                "ids": ids,
            }
        finally:
            stop_worker(worker)
            client.close()


def test_counters_are_the_valid_rows_counted_once(run):
    expected: dict[str, dict[str, int]] = {}
    for (key, name), n in run["expected_counts"].items():
        expected.setdefault(key, {})[name] = n
    assert run["kpi"] == expected
    city = next(v for k, v in expected.items() if k.startswith("zc:kpi:city:"))
    assert city["vehicles"] == 3000 + 150 - 2  # two rows of the bad batch left out
    assert city["overlimit"] > 0


def test_over_limit_vehicles_have_full_verdicts_and_alerts(run):
    assert run["flagged"], "the traffic had over-limit trucks"
    for v in run["flagged"]:
        assert run["verdicts"][v["passage_id"]] == v
    # one alert per vehicle, reason and day: the pool's trucks pass many times
    enforced = {v["plate_front"] for v in run["flagged"] if v["enforceable"]}
    assert enforced and enforced <= run["alerted"]


def test_bad_input_is_dead_lettered_with_its_reason(run):
    reasons = Counter(letter["reason"] for letter in run["letters"])
    assert reasons == {"unknown_site": 1, "bad_rows": 1, "undecodable": 1}
    rows = next(letter for letter in run["letters"] if letter["reason"] == "bad_rows")
    assert rows["message"].startswith("2 of 150 rows left out: row 1 (")


def test_one_verdict_batch_per_batch_received(run):
    got = Counter(b["batch_id"] for b in run["out"])
    assert set(got) == set(run["ids"])
    assert sum(got.values()) == len(run["ids"]) + 1  # the resent batch is answered again
    rows = {b["batch_id"]: len(split_text(b["passage_ids"])) for b in run["out"]}
    assert sum(rows.values()) == 3000 + 150 - 2
