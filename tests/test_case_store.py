"""The store of record on a real PostgreSQL server: migrations, weighings and cases written
idempotently, and case transitions that two reviewers cannot both make."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from schemas.cases import CaseRefused
from schemas.policy import load_policy
from sim.config import SimConfig
from sim.traffic import CitySimulator
from sinks.records.case_store import CaseConflict, CaseStore, UnknownCase
from sinks.records.migrate import SCHEMA_VERSION, WrongSchema, check, upgrade
from streams.stages import decide, measure_passages


@pytest.fixture(scope="module")
def verdicts(registry):
    traffic = CitySimulator(SimConfig(vehicles=400, seed=21), registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    return decide(measured, traffic.reads, registry, load_policy(registry.policy))


def run(coro):
    return asyncio.run(coro)


async def with_store(dsn, work):
    store = await CaseStore(dsn).open()
    try:
        return await work(store)
    finally:
        await store.close()


def test_upgrade_brings_a_database_to_the_version_and_a_worker_refuses_others(pg_dsn):
    with pytest.raises(WrongSchema, match="zhichao db upgrade"):
        check(pg_dsn)
    assert [m.version for m in upgrade(pg_dsn)] == list(range(1, SCHEMA_VERSION + 1))
    assert upgrade(pg_dsn) == []  # current: nothing to do
    assert check(pg_dsn) == SCHEMA_VERSION
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO zhichao_schema (version, name) VALUES (%s, 'future')",
            (SCHEMA_VERSION + 1,),
        )
    with pytest.raises(WrongSchema, match="newer than this zhichao"):
        check(pg_dsn)


def test_verdicts_open_one_case_per_enforceable_overlimit_and_again_changes_nothing(
    pg_dsn, verdicts
):
    upgrade(pg_dsn)
    enforceable = {v["passage_id"] for v in verdicts if v["enforceable"]}
    stored = {v["passage_id"] for v in verdicts if v["verdict"] in ("warning", "overlimit")}
    assert enforceable and stored > enforceable

    async def work(store):
        first = await store.store_verdicts(verdicts[:200])
        second = await store.store_verdicts(verdicts)  # the first 200 again, with the rest
        again = await store.store_verdicts(verdicts)
        return first, second, again

    first, second, again = run(with_store(pg_dsn, work))
    assert first.weighings + second.weighings == len(stored)
    assert first.cases + second.cases == len(enforceable)
    assert (again.weighings, again.cases) == (0, 0)
    with psycopg.connect(pg_dsn) as conn:
        cases = conn.execute("SELECT passage_id, state FROM cases").fetchall()
        events = conn.execute("SELECT count(*) FROM case_events WHERE action = 'open'").fetchone()
        bodies = dict(conn.execute("SELECT passage_id, body FROM weighings").fetchall())
    assert {p for p, _ in cases} == enforceable
    assert {s for _, s in cases} == {"pending_review"}
    assert events[0] == len(enforceable)
    by_id = {v["passage_id"]: v for v in verdicts}
    for passage_id, body in bodies.items():
        assert body == by_id[passage_id]


def test_two_reviewers_on_one_case_the_second_gets_a_conflict(pg_dsn, verdicts):
    upgrade(pg_dsn)

    async def work(store):
        await store.store_verdicts(verdicts)
        case = (await store.queue())[0]
        results = await asyncio.gather(
            store.apply(case["case_id"], 1, "file", "审核员甲", "reviewer"),
            store.apply(
                case["case_id"], 1, "decline", "审核员乙", "reviewer", {"reason_code": "duplicate"}
            ),
            return_exceptions=True,
        )
        return case["case_id"], results, await store.case(case["case_id"])

    case_id, results, after = run(with_store(pg_dsn, work))
    done = [r for r in results if isinstance(r, dict)]
    conflicts = [r for r in results if isinstance(r, CaseConflict)]
    assert len(done) == 1 and len(conflicts) == 1
    assert after["version"] == 2 and after["state"] == done[0]["state"]
    winner = "file" if done[0]["state"] == "filed" else "decline"
    assert [e["action"] for e in after["events"]] == ["open", winner]


def test_a_refused_or_unknown_action_changes_nothing(pg_dsn, verdicts):
    upgrade(pg_dsn)

    async def work(store):
        await store.store_verdicts(verdicts)
        case_id = (await store.queue())[0]["case_id"]
        with pytest.raises(CaseRefused, match="不能执行"):
            await store.apply(case_id, 1, "penalize", "审核员甲", "reviewer", {"fine_cny": 500})
        with pytest.raises(CaseRefused):
            await store.apply(case_id, 1, "file", "指挥中心", "command_centre")
        with pytest.raises(CaseRefused):
            await store.apply(case_id, 1, "decline", "审核员甲", "reviewer", {"reason_code": "x"})
        with pytest.raises(UnknownCase):
            await store.apply(10**9, 1, "file", "审核员甲", "reviewer")
        with pytest.raises(CaseConflict):
            await store.apply(case_id, 7, "file", "审核员甲", "reviewer")
        return await store.case(case_id)

    after = run(with_store(pg_dsn, work))
    assert (after["state"], after["version"], len(after["events"])) == ("pending_review", 1, 1)


def test_the_event_log_is_append_only(pg_dsn, verdicts):
    upgrade(pg_dsn)
    run(with_store(pg_dsn, lambda store: store.store_verdicts(verdicts)))
    with psycopg.connect(pg_dsn) as conn:
        for sql in (
            "UPDATE case_events SET note = 'x'",
            "DELETE FROM case_events",
            "TRUNCATE case_events CASCADE",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(sql)
            conn.rollback()


def test_a_case_goes_through_its_life_in_the_store(pg_dsn, verdicts):
    upgrade(pg_dsn)

    async def work(store):
        await store.store_verdicts(verdicts)
        case_id = (await store.queue())[0]["case_id"]
        steps = [("file", {}), ("notify", {}), ("penalize", {"fine_cny": 2000}), ("close", {})]
        for version, (action, fields) in enumerate(steps, start=1):
            await store.apply(case_id, version, action, "审核员甲", "reviewer", fields)
        return await store.case(case_id)

    after = run(with_store(pg_dsn, work))
    assert (after["state"], after["fine_cny"], after["reviewer"]) == ("closed", 2000, "审核员甲")
    assert [(e["from_state"], e["to_state"]) for e in after["events"]] == [
        (None, "pending_review"),
        ("pending_review", "filed"),
        ("filed", "notified"),
        ("notified", "penalized"),
        ("penalized", "closed"),
    ]


def test_the_store_checks_its_schema_once_it_can_reach_the_server(pg_dsn):
    async def check(store):
        return await store.check_schema()

    with pytest.raises(WrongSchema, match="zhichao db upgrade"):
        run(with_store(pg_dsn, check))
    upgrade(pg_dsn)
    assert run(with_store(pg_dsn, check)) == SCHEMA_VERSION
