"""源头监管 as the worker checks it: nine simulated days of regular trucks loading at the example
city's sources, stored; the week's counts on the async pool equal a count by hand of that week
only, and a source at the threshold gets one alert for the week, written to Redis once however
often it is checked."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import redis.asyncio as aioredis

import schemas
from schemas.policy import load_policy
from schemas.registry import CHINA
from sim.config import SimConfig, days_of_traffic
from sim.traffic import CitySimulator
from sinks import constants as K
from sinks.records.case_store import CaseStore
from sinks.records.load import load_verdicts
from sinks.records.migrate import upgrade
from sinks.records.sources import load_source_rules, week_counts, week_of, week_start
from sinks.redis_sink import VerdictSink
from streams.alerts import load_alert_rules, source_alerts
from streams.stages import decide, measure_passages
from tests.hand_counts import china, source_truck_days

MONDAY = dt.datetime(2026, 7, 6, tzinfo=CHINA)
WEEK = (MONDAY, MONDAY + dt.timedelta(days=7))


@pytest.fixture(scope="module")
def verdicts(registry):
    """Nine days from the Saturday before: traffic on both sides of the week's bounds."""
    settings = days_of_traffic(9, 400) | {"overloaded_share": 0.3, "fleet_size": 40}
    config = SimConfig(seed=71, start=MONDAY - dt.timedelta(days=2), **settings)
    traffic = CitySimulator(config, registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    return decide(measured, traffic.reads, registry, load_policy(registry.policy))


def test_week_start_is_monday_midnight_china_time():
    late_sunday_utc = dt.datetime(2026, 7, 12, 17, 0, tzinfo=dt.UTC)  # Monday 01:00 in China
    assert week_start(late_sunday_utc) == dt.datetime(2026, 7, 13, tzinfo=CHINA)
    assert week_start(MONDAY + dt.timedelta(days=6, hours=23)) == MONDAY


def test_a_source_at_the_threshold_is_alerted_once_a_week(pg_dsn, redis_dsn, registry, verdicts):
    upgrade(pg_dsn)
    asyncio.run(load_verdicts(pg_dsn, verdicts))
    rules = load_source_rules()
    wednesday = MONDAY + dt.timedelta(days=2, hours=10)

    async def live_counts():
        store = await CaseStore(pg_dsn).open()
        try:
            return await week_counts(store.pool, registry, rules, wednesday)
        finally:
            await store.close()

    counts = asyncio.run(live_counts())
    hand, weekly = source_truck_days(verdicts, registry, *WEEK)
    week = week_of(wednesday.date())
    assert week == "2026-W28"
    assert {
        sid: (c.trucks, c.over, {w: n for w, n in c.weekly_over.items() if n})
        for sid, c in counts.items()
    } == {sid: (hand[sid]["trucks"], hand[sid]["over"], dict(+weekly[sid])) for sid in hand}
    assert any(china(v) < WEEK[0] for v in verdicts) and any(china(v) >= WEEK[1] for v in verdicts)
    flagged = {sid for sid in hand if weekly[sid][week] >= 5}
    assert flagged, dict(weekly)

    alerts = source_alerts(registry, counts, week, 5, load_alert_rules(), 0)
    assert {a["site_id"] for a in alerts} == flagged
    for a in alerts:
        assert schemas.ALERT.decode_wire(schemas.ALERT.encode_wire(a)) == a  # the alerts topic's
        source = registry.sources[a["site_id"]]
        assert a["reason"] == "source_supervision" and a["window"] == week
        assert (
            source.name in a["message"]
            and f"{counts[source.id].weekly_over[week]} 车次" in a["message"]
        )

    async def written_twice():
        client = aioredis.Redis.from_url(redis_dsn)
        await client.flushdb()
        sink = VerdictSink(client, 3600, 3600)
        try:
            first = await sink.write_alerts_once(alerts)
            again = await sink.write_alerts_once(
                source_alerts(registry, counts, week, 5, load_alert_rules(), 99)
            )
            return first, again, await client.xlen(K.ALERT_STREAM)
        finally:
            await client.aclose()

    first, again, streamed = asyncio.run(written_twice())
    assert len(first) == len(alerts) and again == [] and streamed == len(alerts)
