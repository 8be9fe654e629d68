"""The agents in Faust's ``test_context`` (no broker): records in, verdicts and dead letters out,
state in a real throw-away Redis. The producer is the only stand-in: it records what the agents
send instead of sending it to Kafka."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import redis

import schemas
from schemas import topics as T
from schemas.columns import unpack
from schemas.policy import load_policy
from schemas.settings import Settings
from schemas.units import US
from sim.config import SimConfig, archive_age_s
from sim.gateway import batches as gateway_batches
from sim.gateway import pool_of
from sim.publish import events_of
from sim.traffic import CitySimulator
from sinks import constants as K
from sinks.evidence import EvidenceChain, chain_lines, verify_chain
from sinks.redis_sink import VerdictSink
from streams.app import create_app
from streams.gateway import judge
from streams.matching import MatchBuffers
from streams.stages import decide, measure_passages
from tests.integration.helpers import evidence_in_redis


@dataclass
class RecordingProducer:
    sent: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)

    async def send(self, topic, key, value, partition, timestamp, headers):
        self.sent.append((topic, key, value))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def of(self, topic: str) -> list[bytes]:
        return [value for t, _, value in self.sent if t == topic]


@pytest.fixture()
def client(redis_dsn):
    with redis.Redis.from_url(redis_dsn) as c:
        yield c


@pytest.fixture()
def loop():
    """One event loop for the app and the test (Faust binds to the current loop)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)
    gc.collect()  # Faust's stray loops are reported now (see pyproject's filterwarnings)


@pytest.fixture()
def app_and_outbox(redis_dsn, loop):
    with redis.Redis.from_url(redis_dsn) as client:
        client.flushdb()
    settings = Settings.load(
        {
            "redis_dsn": redis_dsn,
            "metrics_port": 0,
            "max_wait_s": 3600.0,
            "evidence_key": "agent-test-key",
            # the simulated archive's day, however long ago (as the root conftest.py does)
            "max_event_age_s": max(Settings().max_event_age_s, archive_age_s(time.time())),
        },
        environ={},
    )
    app = create_app(settings)
    outbox = RecordingProducer()
    app._producer = outbox  # the stand-in for Kafka
    yield app, outbox
    loop.run_until_complete(app.zhichao.close())


async def _until(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _settled(outbox: RecordingProducer, quiet_s: float = 0.5) -> None:
    """Until the agent has sent nothing for ``quiet_s``: leaving a ``test_context`` while the
    agent is between two ``noack_take`` batches can hang Faust's shutdown of the agent."""
    seen = -1
    while seen != len(outbox.sent):
        seen = len(outbox.sent)
        await asyncio.sleep(quiet_s)


def _match_all(app, loop, inputs, outbox, verdicts: int = 50) -> None:
    """Put ``inputs`` into the match agent; return once ``verdicts`` are out and it is quiet."""

    async def scenario():
        async with app.agents["match"].test_context() as agent:
            for _, _, key, value, _ in inputs:
                await agent.put(value, key=key, wait=False)
            await _until(lambda: len(outbox.of(T.VEHICLES_VERDICTS)) >= verdicts)
            await _settled(outbox)

    loop.run_until_complete(scenario())


def test_match_agent_decides_passages_with_their_reads_like_replay(
    app_and_outbox, registry, client, loop
):
    app, outbox = app_and_outbox
    traffic = CitySimulator(SimConfig(vehicles=60, seed=12), registry).run()
    inputs = [e for e in events_of(traffic) if e[1] in (T.WIM_PASSAGES, T.ANPR_READS)]
    decoded = [schemas.decode_any_wire(value)[1] for _, _, _, value, _ in inputs]  # as on the wire
    measured, _ = measure_passages([r for r in decoded if "samples" in r], registry)
    reads = [r for r in decoded if "read_id" in r]
    replayed = {
        v["passage_id"]: v for v in decide(measured, reads, registry, load_policy(registry.policy))
    }

    # all but the last few weighings are decided by cuts, without the wall clock
    _match_all(app, loop, inputs, outbox)
    sent = [schemas.VERDICT.decode_wire(v) for v in outbox.of(T.VEHICLES_VERDICTS)]
    assert len({v["passage_id"] for v in sent}) == len(sent)
    for v in sent:
        stored = client.get(K.VERDICT_KEY.format(passage_id=v["passage_id"]))
        assert json.loads(stored) == replayed[v["passage_id"]]  # Kafka's copy has Avro floats
        assert v["verdict"] == replayed[v["passage_id"]]["verdict"]
    assert outbox.of(T.DEAD_LETTERS) == []


def test_a_verdict_decided_again_keeps_one_evidence_record_and_the_rest_are_linked(
    app_and_outbox, registry, redis_dsn, client, loop
):
    """As after a restart: one enforceable verdict and its record are in Redis already, and its
    inputs come again with the rest. Its record is not written twice, and the records the
    worker sealed after it (or on a head that was no longer Redis') are sealed again and linked:
    every enforceable verdict ends with exactly one record in an intact chain."""
    app, outbox = app_and_outbox
    for seed in range(5, 30):  # the first small city with two enforceable verdicts at a site
        traffic = CitySimulator(SimConfig(vehicles=120, seed=seed), registry).run()
        inputs = [e for e in events_of(traffic) if e[1] in (T.WIM_PASSAGES, T.ANPR_READS)]
        decoded = [schemas.decode_any_wire(value)[1] for _, _, _, value, _ in inputs]
        measured, _ = measure_passages([r for r in decoded if "samples" in r], registry)
        reads = [r for r in decoded if "read_id" in r]
        replayed = decide(measured, reads, registry, load_policy(registry.policy))
        enforceable = [v for v in replayed if v["enforceable"]]
        by_site = Counter(v["site_id"] for v in enforceable)
        if max(by_site.values(), default=0) >= 2:
            break
    first = next(v for v in enforceable if by_site[v["site_id"]] >= 2)  # others follow it
    chain = EvidenceChain(b"agent-test-key")

    async def written_before():
        sink = VerdictSink(redis_dsn, 3600)
        try:
            body = {"verdict": first, "read_ids": ["from the worker before"]}
            return await sink.write([first], evidence=chain.extend([(first, body)]))
        finally:
            await sink.close()

    assert loop.run_until_complete(written_before()).appended == 1
    _match_all(app, loop, inputs, outbox, verdicts=110)
    sent = [schemas.VERDICT.decode_wire(v) for v in outbox.of(T.VEHICLES_VERDICTS)]
    decided = sorted(v["passage_id"] for v in sent if v["enforceable"])
    assert decided == sorted(v["passage_id"] for v in enforceable)
    in_chains = evidence_in_redis(client)
    assert sorted(p for pids in in_chains.values() for p in pids) == decided
    for site in in_chains:
        records = list(chain_lines(client, site))
        assert verify_chain(records, b"agent-test-key") == (len(records), None)


def test_bad_records_go_to_dead_letters_and_the_agent_carries_on(app_and_outbox, registry, loop):
    app, outbox = app_and_outbox
    traffic = CitySimulator(SimConfig(vehicles=2, seed=3), registry).run()
    good = schemas.WIM_PASSAGE.encode_wire(
        {k: v for k, v in traffic.passages[0].items() if not k.startswith("_")}
    )
    unknown_device = schemas.WIM_PASSAGE.encode_wire(
        {
            **{k: v for k, v in traffic.passages[1].items() if not k.startswith("_")},
            "device_id": "NO-SUCH-WIM",
        }
    )
    heartbeat = schemas.DEVICE_HEARTBEAT.encode_wire(traffic.heartbeats[0])

    async def scenario():
        async with app.agents["match"].test_context() as agent:
            for value in (b"\x00garbage", unknown_device, heartbeat, good):
                await agent.put(value, key=b"k", wait=False)
            await _until(lambda: len(outbox.of(T.DEAD_LETTERS)) >= 3)
            await _settled(outbox)

    loop.run_until_complete(scenario())
    reasons = sorted(
        schemas.DEAD_LETTER.decode_wire(v)["reason"] for v in outbox.of(T.DEAD_LETTERS)
    )
    assert reasons == ["undecodable", "unknown_device", "wrong_schema"]
    letter = schemas.DEAD_LETTER.decode_wire(outbox.of(T.DEAD_LETTERS)[0])
    assert letter["message"] and letter["value"]


def test_heartbeat_agent_records_device_state(app_and_outbox, registry, client, loop):
    app, _ = app_and_outbox
    traffic = CitySimulator(SimConfig(vehicles=20, seed=4), registry).run()
    beats = traffic.heartbeats[:10]

    async def scenario():
        async with app.agents["heartbeats"].test_context() as agent:
            for hb in beats:
                await agent.put(schemas.DEVICE_HEARTBEAT.encode_wire(hb), key=b"k", wait=False)
            await _until(
                lambda: client.scard(K.DEVICES_KEY) == len({b["device_id"] for b in beats})
            )

    loop.run_until_complete(scenario())
    for hb in beats:
        state = client.hgetall(K.DEVICE_KEY.format(device_id=hb["device_id"]))
        assert int(state[b"last_seen_us"]) >= hb["ts_us"]


def _blacklist_update(plate: str, action: str) -> bytes:
    return schemas.BLACKLIST_UPDATE.encode_wire(
        {
            "plate": plate,
            "action": action,
            "reason": "有未处理的超限案件",
            "case_ref": "AJ-2026-001",
            "ts_us": 1,
            "source": "test",
        }
    )


def test_blacklist_agent_keeps_the_list_and_dead_letters_bad_plates(app_and_outbox, client, loop):
    app, outbox = app_and_outbox

    async def scenario():
        async with app.agents["blacklist"].test_context() as agent:
            for plate, action in [("浙D12345", "add"), ("浙A7", "add"), ("浙D7Q71J", "add")]:
                await agent.put(_blacklist_update(plate, action), key=b"k", wait=False)
            await _until(lambda: client.scard(K.BLACKLIST_KEY) == 2)
            await agent.put(_blacklist_update("浙D12345", "remove"), key=b"k", wait=False)
            await _until(lambda: client.scard(K.BLACKLIST_KEY) == 1)

    loop.run_until_complete(scenario())
    assert client.smembers(K.BLACKLIST_KEY) == {"浙D7Q71J".encode()}
    info = json.loads(client.hget(K.BLACKLIST_INFO_KEY, "浙D7Q71J"))
    assert info["case_ref"] == "AJ-2026-001"
    assert client.hget(K.BLACKLIST_INFO_KEY, "浙D12345") is None
    [letter] = [schemas.DEAD_LETTER.decode_wire(v) for v in outbox.of(T.DEAD_LETTERS)]
    assert letter["reason"] == "bad_plate"


def test_a_blacklisted_truck_is_alerted_where_it_is_weighed_and_where_it_is_seen(
    app_and_outbox, registry, client, loop
):
    app, outbox = app_and_outbox
    traffic = CitySimulator(SimConfig(vehicles=60, seed=12), registry).run()
    checkpoint_plates = {
        r["plate"] for r in traffic.reads if r["view"] == "checkpoint" and r["confidence"] >= 0.9
    }
    weighed = [
        t
        for t in traffic.truth
        if t["plate_front"] in checkpoint_plates and t["front_read_correct"] and not t["covered"]
    ]
    plate = weighed[0]["plate_front"]
    client.sadd(K.BLACKLIST_KEY, plate)
    inputs = [e for e in events_of(traffic) if e[1] in (T.WIM_PASSAGES, T.ANPR_READS)]

    _match_all(app, loop, inputs, outbox)
    alerts = [schemas.ALERT.decode_wire(v) for v in outbox.of(T.ALERTS)]
    mine = {a["reason"] for a in alerts if a["plate"] == plate}
    assert {"blacklist", "blacklist_sighting"} <= mine, mine
    orders = [schemas.DISPATCH_ORDER.decode_wire(v) for v in outbox.of(T.DISPATCH_ORDERS)]
    assert [o for o in orders if o["plate"] == plate]  # the weighing calls for an interception


def test_a_gateway_batch_with_a_blacklisted_plate_is_judged_again_with_it(
    app_and_outbox, registry, client, loop
):
    """The helper judges a gateway round without the 黑名单; the worker looks the round's
    plates up and has the batch with a listed plate judged again: that row gets its full
    verdict and a 黑名单 alert, the batch's counters and verdict batch go out once."""
    app, outbox = app_and_outbox
    pool = pool_of(CitySimulator(SimConfig(vehicles=300, seed=3), registry).run().truth)
    batch = next(gateway_batches(pool, registry, 200, 200, int(time.time() * US), 1000.0))
    _, record = schemas.decode_any_wire(batch.value)
    columns, _ = unpack(record, registry)
    plain = judge(columns, registry, load_policy(registry.policy))
    flagged = {v["passage_id"] for v in plain.flagged}
    row = next(
        i
        for i, (p, pid) in enumerate(zip(plain.identities.plate_front, columns.passage_ids))
        if p and pid not in flagged
    )
    plate, passage_id = plain.identities.plate_front[row], columns.passage_ids[row]
    client.sadd(K.BLACKLIST_KEY, plate)

    async def scenario():
        async with app.agents["gateway"].test_context() as agent:
            await agent.put(batch.value, key=batch.key, wait=False)
            await _until(lambda: len(outbox.of(T.VERDICT_BATCHES)) >= 1)
            await _settled(outbox)

    loop.run_until_complete(scenario())
    assert len(outbox.of(T.VERDICT_BATCHES)) == 1
    alerts = [schemas.ALERT.decode_wire(v) for v in outbox.of(T.ALERTS)]
    assert "blacklist" in {a["reason"] for a in alerts if a["plate"] == plate}
    stored = json.loads(client.get(K.VERDICT_KEY.format(passage_id=passage_id)))
    assert stored["plate_front"] == plate
    counted = sum(int(client.hget(k, "vehicles") or 0) for k in client.keys("zc:kpi:city:*"))
    assert counted == len(columns)


def _front_closed_and_rear_read(vehicle, rear, registry):
    """When the vehicle's front capture windows have all closed, and its first rear read."""
    buffers = MatchBuffers(registry)
    _, hi = buffers._windows(vehicle)
    views = [c.view for c in buffers._cameras(vehicle["site_id"])]
    front_closed = max(h for h, v in zip(hi, views, strict=True) if v == "front" and h > 0)
    return front_closed, min(r["ts_us"] for r in rear)


def _slow_enforceable_rigid_truck(registry):
    """The first simulated truck (seed 12 on) crawling through a weigh site over the limit,
    enforceable, one plate front and rear, whose rear reads come more than a second after its
    front capture windows close: the traffic and its passage id."""
    policy = load_policy(registry.policy)
    for seed in range(12, 40):
        traffic = CitySimulator(SimConfig(vehicles=400, seed=seed), registry).run()
        measured, _ = measure_passages(traffic.passages, registry)
        by_id = {m["passage_id"]: m for m in measured}
        for v in decide(measured, traffic.reads, registry, policy):
            if not v["enforceable"] or v["plate_front"] != v["plate_rear"]:
                continue
            mine = [r for r in traffic.reads if r.get("_passage_id") == v["passage_id"]]
            rear = [r for r in mine if r["view"] == "rear"]
            if not rear or not any(r["view"] == "front" for r in mine):
                continue
            closed, rear_read = _front_closed_and_rear_read(by_id[v["passage_id"]], rear, registry)
            if closed < rear_read - US:
                return traffic, v["passage_id"]
    raise AssertionError("no slow enforceable rigid truck in the simulated seeds")


@pytest.mark.parametrize(
    ("rear_plate", "outcome"), [(None, "confirmed"), ("皖K73915", "withdrawn")]
)
def test_a_slow_trucks_order_goes_out_on_its_front_reads_and_its_verdict_settles_it(
    app_and_outbox, registry, client, loop, rear_plate, outcome
):
    """预判: an over-limit truck crawling into a toll entrance gets its 劝返 order once its
    front reads are final, before its rear reads exist; its verdict then confirms the order,
    or withdraws it when a confident rear read names another plate (a front/rear conflict
    forbids enforcement, so the verdict calls for no order)."""
    app, outbox = app_and_outbox
    traffic, pid = _slow_enforceable_rigid_truck(registry)
    passage = next(p for p in traffic.passages if p["passage_id"] == pid)
    mine = [r for r in traffic.reads if r.get("_passage_id") == pid]
    front = [r for r in mine if r["view"] == "front"]
    rear = [r for r in mine if r["view"] == "rear"]
    if rear_plate:
        rear = [{**r, "plate": rear_plate, "confidence": 0.99, "char_conf": None} for r in rear]
    [vehicle], _ = measure_passages([passage], registry)
    front_closed, rear_read = _front_closed_and_rear_read(vehicle, rear, registry)
    assert front_closed < rear_read - US  # the second in which only the front is known
    elsewhere = next(r for r in traffic.reads if r["site_id"] != vehicle["site_id"])

    def wire(r):
        return schemas.CAMERA_READ.encode_wire({k: v for k, v in r.items() if k[0] != "_"})

    def tick(ts_us):  # a read at another site: the partition is known up to ts - slack
        r = {**elsewhere, "ts_us": int(ts_us), "read_id": f"tick-{ts_us}"}
        return wire(r), elsewhere["site_id"].encode()

    key = vehicle["site_id"].encode()
    slack = Settings().publish_slack_s * US

    def orders():
        return [schemas.DISPATCH_ORDER.decode_wire(v) for v in outbox.of(T.DISPATCH_ORDERS)]

    async def scenario():
        async with app.agents["match"].test_context() as agent:
            await agent.put(schemas.WIM_PASSAGE.encode_wire(passage), key=key, wait=False)
            for r in front:
                await agent.put(wire(r), key=key, wait=False)
            await agent.put(*tick((front_closed + rear_read) / 2 + slack), wait=False)
            await _until(lambda: orders())
            [order] = orders()
            assert order["provisional"] and order["plate"] == vehicle_plate()
            assert not outbox.of(T.VEHICLES_VERDICTS)  # the verdict waits for the rear reads
            for r in rear:
                await agent.put(wire(r), key=key, wait=False)
            await agent.put(*tick(rear_read + 60 * US), wait=False)
            await _until(lambda: outbox.of(T.VEHICLES_VERDICTS))
            await _settled(outbox)

    def vehicle_plate():
        return next(t["plate_front"] for t in traffic.truth if t["passage_id"] == pid)

    loop.run_until_complete(scenario())
    [order] = orders()  # no second order for the vehicle
    stored = json.loads(client.get(K.ORDER_KEY.format(order_id=order["order_id"])))
    [verdict] = [schemas.VERDICT.decode_wire(v) for v in outbox.of(T.VEHICLES_VERDICTS)]
    assert verdict["passage_id"] == pid and verdict["verdict"] == "overlimit"
    if outcome == "confirmed":
        assert verdict["enforceable"]
        assert stored["status"] == "open" and stored["provisional"] is False
        assert not stored["instruction"].startswith("【预判】")
    else:
        assert not verdict["enforceable"] and "front_rear_conflict" in verdict["flags"]
        assert stored["status"] == "closed" and stored["outcome"] == "withdrawn"
        assert client.get(K.OPEN_DISPATCH_KEY.format(vehicle=order["plate"])) is None


def test_a_sink_added_beside_redis_gets_every_verdict_of_the_match_round(
    app_and_outbox, registry, loop
):
    """The seam a store of record plugs into: a second sink gets each round's results, the
    same verdicts the worker sends, with their alerts and evidence, without a change to the
    round."""
    from sinks.seam import NOTHING_WRITTEN

    class Recording:
        name, store, unavailable = "recording", "Recording", (ConnectionError,)

        def __init__(self):
            self.rounds = []

        async def write_round(self, results):
            self.rounds.append(results)
            return NOTHING_WRITTEN

    app, outbox = app_and_outbox
    extra = Recording()
    app.zhichao.sinks.others = (extra,)
    traffic = CitySimulator(SimConfig(vehicles=60, seed=12), registry).run()
    inputs = [e for e in events_of(traffic) if e[1] in (T.WIM_PASSAGES, T.ANPR_READS)]
    _match_all(app, loop, inputs, outbox)
    sent = {schemas.VERDICT.decode_wire(v)["passage_id"] for v in outbox.of(T.VEHICLES_VERDICTS)}
    recorded = [v["passage_id"] for r in extra.rounds for v in r.verdicts]
    assert sorted(recorded) == sorted(sent)
    enforceable = {v["passage_id"] for r in extra.rounds for v in r.verdicts if v["enforceable"]}
    assert {link.passage_id for r in extra.rounds for link in r.evidence} == enforceable
    assert sum(len(r.reads) for r in extra.rounds) > 0


def test_the_worker_passes_the_join_settings_to_every_part(redis_dsn, loop):
    """One home for the join's tolerances: the setting reaches the buffers and the decider."""
    settings = Settings.load(
        {"redis_dsn": redis_dsn, "metrics_port": 0, "evidence_key": "k", "join_max_lane_gap": 2},
        environ={},
    )
    app = create_app(settings)
    try:
        worker = app.zhichao
        assert worker.join.max_lane_gap == 2
        assert worker.buffers.join is worker.join and worker.decider.join is worker.join
    finally:
        loop.run_until_complete(app.zhichao.close())
