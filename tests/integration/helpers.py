"""What the pipeline tests share: reading Redis state and the KPI counters replay implies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import psycopg

from sinks import constants as K
from sinks.evidence import HEADS_KEY, chain_lines, parse
from sinks.kpi import aggregate


def verdicts_in_redis(client: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for key in client.keys(K.VERDICT_KEY.format(passage_id="*")):
        verdict = json.loads(client.get(key))
        out[verdict["passage_id"]] = verdict
    return out


def kpi_in_redis(client: Any) -> dict[str, dict[str, int]]:
    return {
        k.decode(): {f.decode(): int(n) for f, n in client.hgetall(k).items()}
        for k in client.keys("zc:kpi:*")
    }


def expected_kpi(verdicts: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """The Redis KPI hashes the sink should hold after writing ``verdicts`` once."""
    expected: dict[str, dict[str, int]] = {}
    for (key, name), n in aggregate(verdicts).items():
        expected.setdefault(key, {})[name] = n
    return expected


def evidence_in_redis(client: Any) -> dict[str, list[str]]:
    """Per site, the passage ids of its evidence records, in chain order."""
    return {
        site.decode(): [
            parse(line)[3]["verdict"]["passage_id"] for line in chain_lines(client, site.decode())
        ]
        for site in client.hkeys(HEADS_KEY)
    }


def zhichao_verify(stack: Any, *args: str) -> subprocess.CompletedProcess:
    """``zhichao verify`` against the stack's Redis, with the stack's evidence key."""
    env = {
        **os.environ,
        "ZHICHAO_REDIS_DSN": stack.redis_dsn,
        "ZHICHAO_EVIDENCE_KEY": stack.evidence_key,
    }
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "zhichao.cli", "verify", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


# alerts from where plates have been (streams.trajectory): they depend on what other sightings
# were in Redis when decided, so replay's verdicts do not predict them; tested on their own
TRAJECTORY_REASONS = ("bypass_suspected", "clone_suspected", "blacklist_sighting")


def alerts_in_redis(client: Any) -> dict[str, str]:
    """alert id -> reason, of every alert written from verdicts."""
    out = {}
    for key in client.keys(K.ALERT_KEY.format(alert_id="*")):
        alert = json.loads(client.get(key))
        if alert["reason"] not in TRAJECTORY_REASONS:
            out[alert["alert_id"]] = alert["reason"]
    return out


def alert_feed_count(client: Any) -> int:
    """Entries of the live alert feed raised from verdicts."""
    return sum(
        json.loads(f[b"alert"])["reason"] not in TRAJECTORY_REASONS
        for _, f in client.xrange(K.ALERT_STREAM, "-", "+")
    )


def expected_alerts(verdicts: list[dict[str, Any]], registry: Any) -> dict[str, str]:
    """The alerts replay's verdicts raise, decided in time order with no blacklist."""
    out: dict[str, str] = {}
    for a in expected_alerts_full(verdicts, registry):
        out.setdefault(a["alert_id"], a["reason"])
    return out


def orders_in_redis(client: Any) -> list[dict[str, Any]]:
    """Every dispatch order in the command centre's feed, in order, as it is now (its
    latest update: a provisional order confirmed or withdrawn by its verdict)."""
    latest: dict[str, dict[str, Any]] = {}
    for _, f in client.xrange(K.ORDER_STREAM, "-", "+"):
        o = json.loads(f.get(b"order") or f[b"update"])
        latest[o["order_id"]] = o
    return list(latest.values())


def expected_order_vehicles(verdicts: list[dict[str, Any]], registry: Any) -> set[str]:
    """The vehicles whose alerts call for an interception or a 劝返 (one order each)."""
    from streams.alerts import load_alert_rules

    rules = load_alert_rules()
    reasons = expected_alerts_full(verdicts, registry)
    return {
        a["plate"] or a["passage_id"]
        for a in reasons
        if rules.reasons[a["reason"]]["action"] in ("intercept", "refuse_entry")
    }


def expected_alerts_full(verdicts: list[dict[str, Any]], registry: Any) -> list[dict[str, Any]]:
    from sinks.redis_sink import is_case
    from streams.alerts import alerts_for, load_alert_rules

    rules = load_alert_rules()
    cases: dict[str, int] = {}
    out = []
    for v in sorted(verdicts, key=lambda v: (v["ts_us"], v["passage_id"])):
        plate = v["plate_front"] or v["plate_rear"]
        out += alerts_for(v, registry, rules, cases.get(plate, 0))
        if plate and is_case(v):
            cases[plate] = cases.get(plate, 0) + 1
    return out


async def publish_events(events: list[Any], bootstrap: str, partitions: int) -> None:
    """Publish wire events (``sim.publish.Event``) as fast as the broker takes them."""
    from schemas.topics import ensure_topics
    from sim.publish import PaceClock, producer_for, send_events

    await ensure_topics(bootstrap, partitions)
    producer = producer_for(bootstrap)
    await producer.start()
    try:
        await send_events(producer, events, PaceClock(events[0][0], 0))
        await producer.flush()
    finally:
        await producer.stop()


def check_one_order_per_vehicle(
    orders: list[dict[str, Any]], verdicts: list, registry: Any
) -> None:
    """Exactly one order for each vehicle whose alerts call for one, to a unit or the
    command centre, with an instruction; provisional orders (预判) each confirmed by their
    verdict or withdrawn, and then only if it calls for no order for that plate."""
    standing = [o for o in orders if o.get("outcome") != "withdrawn"]
    vehicles = [o["plate"] or o["alert_id"] for o in standing]
    expected = expected_order_vehicles(verdicts, registry)
    assert expected, "no vehicle in the run calls for an interception"
    assert sorted(vehicles) == sorted(expected)
    assert not [o for o in orders if o.get("provisional")], "a provisional order left unsettled"
    for o in orders:
        if o.get("outcome") == "withdrawn":
            assert o["closed_by"] == "system" and (o["plate"] or o["alert_id"]) not in expected
        assert o["unit_id"] in registry.units or o["unit_id"] == "command_centre"
        assert o["instruction"]


def store_of_record(dsn: str, streamed: dict, timeout_s: float = 60.0) -> dict:
    """The weighings and cases in PostgreSQL, once the cases agent has stored every one."""
    stored = {p for p, v in streamed.items() if v["verdict"] in ("warning", "overlimit")}
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            weighings = dict(conn.execute("SELECT passage_id, body FROM weighings").fetchall())
            if set(weighings) >= stored or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        cases = conn.execute("SELECT passage_id, state FROM cases").fetchall()
        opened = conn.execute("SELECT count(*) FROM case_events WHERE action = 'open'").fetchone()
        evidence = [p for (p,) in conn.execute("SELECT passage_id FROM evidence_records")]
    return {"weighings": weighings, "cases": cases, "opened": opened[0], "evidence": evidence}


async def dead_letters(bootstrap: str, expected: int, timeout_s: float) -> list[dict[str, Any]]:
    """The decoded ``dead.letters`` from the start, once ``expected`` are in or at the timeout."""
    import schemas
    from bench.broker import dead_letter_consumer

    consumer = dead_letter_consumer(bootstrap)
    await consumer.start()
    letters: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(letters) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                letters += [schemas.DEAD_LETTER.decode_wire(r.value) for r in records]
    finally:
        await consumer.stop()
    return letters
