"""The Redis side of the cloned-plate check (套牌), of escalation, of provisional orders and of
the evidence chain on a real throw-away Redis: a plate's weighings read back from its history,
its impossible journeys counted once each; an overdue order handed to the next unit once; one
evidence record per enforceable verdict whatever is delivered again."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis

import schemas
from schemas.policy import load_policy
from schemas.units import US
from sim.config import SimConfig
from sim.traffic import CitySimulator
from sinks.evidence import EvidenceChain, chain_lines, parse, verify_chain
from sinks.redis_sink import VerdictSink
from streams.stages import decide, measure_passages
from streams.trajectory import clashes, clone_alert, impossible_journeys


def test_two_weighings_of_one_plate_far_apart_are_found_and_counted(redis_dsn, registry):
    traffic = CitySimulator(SimConfig(vehicles=80, seed=5), registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    verdicts = decide(measured, traffic.reads, registry, load_policy(registry.policy))
    sure = [v for v in verdicts if v["plate_front"] and v["plate_confidence"] >= 0.9]
    a = sure[0]
    far_site = max(
        (s for s in registry.weigh_sites if s.id != a["site_id"]),
        key=lambda s: (
            abs(s.lat - registry.sites[a["site_id"]].lat)
            + abs(s.lon - registry.sites[a["site_id"]].lon)
        ),
    )
    twin = next(v for v in sure if v["axle_count"] != a["axle_count"])
    # the same plate on another truck at a distant site two minutes later
    b = {
        **twin,
        "passage_id": "P-TWIN",
        "site_id": far_site.id,
        "plate_front": a["plate_front"],
        "ts_us": a["ts_us"] + 120 * US,
    }

    async def scenario():
        client = aioredis.Redis.from_url(redis_dsn)
        try:
            await client.flushdb()
            sink = VerdictSink(client, 3600)
            await sink.write([a, b])
            window = 3600 * US
            found = await sink.weighings_of(
                [(a["plate_front"], b["ts_us"] - window, b["ts_us"] + window)]
            )
            others = found[a["plate_front"]]
            assert {o["passage_id"] for o in others} == {a["passage_id"], "P-TWIN"}
            # verdicts the caller holds are not read back, and come out the same
            probe = (a["plate_front"], b["ts_us"] - window, b["ts_us"] + window)
            held = await sink.weighings_of([probe], known={"P-TWIN": b})
            assert held == found
            assert any(o is b for o in held[a["plate_front"]])
            journeys = impossible_journeys(b, others, registry)
            assert [o["passage_id"] for o in journeys] == [a["passage_id"]]
            assert clashes(b, journeys[0])
            since = b["ts_us"] - 7 * 86_400 * US
            first = await sink.count_clone_conflict(b["plate_front"], "P-TWIN", b["ts_us"], since)
            again = await sink.count_clone_conflict(b["plate_front"], "P-TWIN", b["ts_us"], since)
            assert first == again == 1  # a redelivered verdict does not count twice
            alert = clone_alert(b, journeys[0], first, registry)
            assert await sink.write_alerts_once([alert]) == [alert["alert_id"]]
            assert await sink.write_alerts_once([alert]) == []  # once per plate and day
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_an_overdue_order_is_escalated_once_in_redis(redis_dsn, registry):
    """``streams.feedback.escalate_overdue`` on a real Redis: the order nobody accepted goes to
    the next unit; a second pass (another worker's timer) changes nothing."""
    import orjson

    from sinks import constants as K
    from sinks.order_sink import OrderSink, order_key
    from streams.dispatch import order_for, plan_interception
    from streams.feedback import escalate_overdue
    from tests.test_order_life import alert

    a = alert()
    plan = plan_interception(registry.sites[a["site_id"]], 60, 0.0, 0.0, registry, {})
    order = order_for(a, plan, registry, 0, 60.0, True)

    async def scenario():
        client = aioredis.Redis.from_url(redis_dsn)
        try:
            await client.flushdb()
            await client.set(order_key(order["order_id"]), orjson.dumps(order))
            await client.zadd(K.ACTIVE_ORDERS_KEY, {order_key(order["order_id"]): 0})
            orders = OrderSink(client, 3600)
            assert await escalate_overdue(orders, registry, 30 * US, 60) == []  # not yet
            [succ] = await escalate_overdue(orders, registry, 61 * US, 60)
            assert succ["unit_id"] == "U-GS-01" and succ["escalation"] == 1
            assert (await orders.order(order["order_id"]))["status"] == "escalated"
            assert [o["order_id"] for o in await orders.active()] == [succ["order_id"]]
            assert await escalate_overdue(orders, registry, 62 * US, 60) == []  # not due again
            unit_feed = await client.xrange(K.UNIT_ORDERS_KEY.format(unit_id="U-GS-01"))
            assert len(unit_feed) == 1
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_provisional_order_is_written_once_found_by_its_weighing_and_settled(redis_dsn, registry):
    """预判 orders: one open order per vehicle (a second provisional order or the verdict's
    own order for the same plate is refused), found again by its weighing, after an
    escalation too (the successor), and confirmed or withdrawn once."""
    import orjson

    from sinks import constants as K
    from sinks.kpi import day_of
    from sinks.order_sink import OrderSink
    from streams.dispatch import order_for, plan_interception
    from streams.feedback import escalate_overdue
    from streams.order_life import confirm, withdraw
    from tests.test_order_life import alert

    a = alert()
    plan = plan_interception(registry.sites[a["site_id"]], 60, 0.0, 0.0, registry, {})
    ahead = order_for(a, plan, registry, 0, 60.0, True, provisional=True)
    assert ahead["provisional"] and ahead["instruction"].startswith("【预判】")
    other = {**a, "alert_id": "浙E99999|severe_overlimit|2026-12-01", "plate": "浙E99999"}
    other_ahead = order_for(
        {**other, "passage_id": "P-2"}, plan, registry, 0, 60.0, True, provisional=True
    )

    async def scenario():
        client = aioredis.Redis.from_url(redis_dsn)
        try:
            await client.flushdb()
            orders = OrderSink(client, 3600)
            assert await orders.write_ahead([ahead]) == [ahead["order_id"]]
            assert await orders.write_ahead([ahead]) == []  # the vehicle has an open order
            assert await orders.write_ahead([other_ahead]) == [other_ahead["order_id"]]
            unit_feed = K.UNIT_ORDERS_KEY.format(unit_id=ahead["unit_id"])
            assert len(await client.xrange(unit_feed)) == 2
            found = await orders.foreseen(["P-1", "P-2", "P-3"])
            assert sorted(found) == ["P-1", "P-2"] and found["P-1"] == ahead
            # nobody accepts: the successor carries the mark, and the weighing finds it
            successors = await escalate_overdue(orders, registry, 61 * US, 60)
            [succ] = [o for o in successors if o["vehicle"]["passage_id"] == "P-1"]
            assert succ["provisional"] and succ["escalation"] == 1
            assert (await orders.foreseen(["P-1"]))["P-1"]["order_id"] == succ["order_id"]
            # the verdict calls for it: it stands, unmarked; then no longer provisional
            kept = confirm(succ, 70 * US)
            assert await orders.apply(kept, 70 * US) == "ok"
            body = orjson.loads(await client.get(K.ORDER_KEY.format(order_id=succ["order_id"])))
            assert not body["provisional"] and not body["instruction"].startswith("【预判】")
            assert await orders.foreseen(["P-1"]) == {}
            # the other's verdict does not: withdrawn, the vehicle free for a new order
            gone = withdraw((await orders.foreseen(["P-2"]))["P-2"], 71 * US, "复核未确认")
            assert await orders.apply(gone, 71 * US) == "ok"
            assert await orders.foreseen(["P-2"]) == {}
            assert await client.get(K.OPEN_DISPATCH_KEY.format(vehicle="浙E99999")) is None
            kpi = await client.hgetall(K.DISPATCH_KPI_KEY.format(day=day_of(0)))
            assert float(kpi[b"provisional"]) == 2 and float(kpi[b"withdrawn"]) == 1
            assert float(kpi[b"intercept"]) == 2 and b"closed" not in kpi
            fresh = {**other_ahead, "plate": "浙F11111", "order_id": "x:0", "alert_id": "x"}
            decided = {**fresh, "vehicle": {**fresh["vehicle"], "passage_id": "P-9"}}
            await client.set(K.VERDICT_KEY.format(passage_id="P-9"), b"{}")
            assert await orders.write_ahead([decided]) == []  # its verdict is out already
            await client.set(K.ALERT_KEY.format(alert_id="x"), b"{}")
            assert await orders.write_ahead([fresh]) == []  # alerted today already
            await client.delete(K.ALERT_KEY.format(alert_id="x"))
            assert await orders.write_ahead([fresh]) == ["x:0"]  # neither: ordered
        finally:
            await client.aclose()

    asyncio.run(scenario())


def _enforceable(passage_id: str, minute: int) -> dict:
    return {
        "passage_id": passage_id,
        "site_id": "S1",
        "ts_us": 1_795_132_800_000_000 + minute * 60 * US,
        "gvw_kg": 52000.0,
        "verdict": "overlimit",
        "enforceable": True,
        "flags": [],
        "plate_front": f"浙D1234{minute}",
        "plate_rear": "",
        "local": True,
        "vehicle_class": "C6",
    }


def test_every_enforceable_verdict_gets_exactly_one_record_across_redeliveries(redis_dsn):
    """A restarted worker decides a passage again whose verdict and record are in Redis, and a
    new one of the same site in the same batch: the first record is not written twice, the
    second (sealed after the duplicate) is reported and, sealed again, linked. A verdict whose
    record never made it (a crash between the two writes) gets it when it is decided again."""
    key = b"test-key"
    p1, p2, p3 = (_enforceable(f"P-{i}", i) for i in (1, 2, 3))

    def sealed(chain, *verdicts):
        return chain.extend(
            [(v, {"verdict": v, "read_ids": [f"R-{v['passage_id']}"]}) for v in verdicts]
        )

    async def scenario():
        client = aioredis.Redis.from_url(redis_dsn)
        try:
            await client.flushdb()
            sink = VerdictSink(client, 3600)
            before = EvidenceChain(key)
            first = await sink.write([p1], evidence=sealed(before, p1))
            after = EvidenceChain(key)  # the restarted worker: heads as Redis has them
            after.restore(await sink.evidence_heads())
            links = sealed(after, p1, p2)
            again = await sink.write([p1, p2], evidence=links)
            after.heads.clear()
            after.restore(await sink.evidence_heads())
            relinked = after.reseal([x for x in links if x.passage_id in again.lost])
            linked = await sink.append_evidence(relinked)
            twice = await sink.append_evidence(relinked)
            unsealed = await sink.write([p3])  # a crash before its record was written
            p3_link = sealed(after, p3)
            redecided = await sink.write([p3], evidence=p3_link)
            return first, again, linked, twice, unsealed, redecided
        finally:
            await client.aclose()

    first, again, linked, twice, unsealed, redecided = asyncio.run(scenario())
    assert (first.new, first.appended, first.lost) == (1, 1, [])
    assert (again.new, again.appended, again.lost) == (1, 0, ["P-2"])
    assert linked == (1, [])
    assert twice == (0, [])
    assert (unsealed.new, unsealed.appended) == (1, 0)
    assert (redecided.new, redecided.appended, redecided.lost) == (0, 1, [])
    with redis.Redis.from_url(redis_dsn) as sync:
        records = list(chain_lines(sync, "S1"))
    assert verify_chain(records, key) == (3, None)
    assert [parse(r)[3]["verdict"]["passage_id"] for r in records] == ["P-1", "P-2", "P-3"]


def test_kept_verdicts_read_back_are_the_verdicts_as_sent(redis_dsn, registry):
    """What a redelivered, already decided vehicle is announced again with: the first write,
    which encodes for ``vehicles.verdicts`` and decodes to the verdict the worker sent."""
    traffic = CitySimulator(SimConfig(vehicles=40, seed=9), registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    verdicts = decide(measured, traffic.reads, registry, load_policy(registry.policy))
    first, again = verdicts[:5], [{**v, "gvw_kg": v["gvw_kg"] + 1} for v in verdicts[:5]]

    async def scenario():
        client = aioredis.Redis.from_url(redis_dsn)
        try:
            await client.flushdb()
            sink = VerdictSink(client, 3600)
            await sink.write(first)
            await sink.write(again)  # a later write of a passage changes nothing kept
            wanted = [verdicts[3]["passage_id"], "P-NEVER", verdicts[1]["passage_id"]]
            return await sink.verdicts_of(wanted)
        finally:
            await client.aclose()

    kept = asyncio.run(scenario())
    assert kept == [verdicts[3], verdicts[1]]
    codec = schemas.VERDICT
    announced = [codec.decode_wire(codec.encode_wire(v)) for v in kept]
    sent = [codec.decode_wire(codec.encode_wire(v)) for v in (verdicts[3], verdicts[1])]
    assert announced == sent
