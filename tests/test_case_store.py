"""The store of record on a real PostgreSQL server: migrations, weighings and cases written
idempotently, and case transitions that two reviewers cannot both make."""

from __future__ import annotations

import asyncio
import datetime as dt

import psycopg
import pytest

from schemas.cases import CaseRefused
from schemas.policy import load_policy
from sim.config import SimConfig
from sim.traffic import CitySimulator
from sinks.evidence import EvidenceChain, check_stored, evidence_body
from sinks.records.case_store import CaseConflict, CaseStore, UnknownCase
from sinks.records.migrate import SCHEMA_VERSION, WrongSchema, check, upgrade
from sinks.records.notices import make_notice
from streams.stages import decide, decide_with_support, measure_passages


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
    now = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)

    async def work(store):
        await store.store_verdicts(verdicts)
        case_id = (await store.queue())[0]["case_id"]
        await store.apply(case_id, 1, "file", "审核员甲", "reviewer")
        with pytest.raises(CaseRefused, match="通知书"):
            await store.apply(case_id, 2, "notify", "审核员甲", "reviewer")
        notice = make_notice(await store.case(case_id), None, now, "审核员甲", "示例执法支队")
        await store.apply(case_id, 2, "notify", "审核员甲", "reviewer", notice=notice)
        schedule = (await store.case(case_id))["verdict"]["fine_cny"]
        fields = {"fine_cny": schedule, "source_unit": "某砂石场"}
        await store.apply(case_id, 3, "penalize", "审核员甲", "reviewer", fields)
        await store.apply(case_id, 4, "close", "审核员甲", "reviewer")
        return (
            await store.case(case_id),
            notice,
            await store.notice(case_id),
            await store.penalty(case_id),
            schedule,
        )

    after, notice, stored, penalty, schedule = run(with_store(pg_dsn, work))
    assert (after["state"], after["fine_cny"], after["reviewer"]) == (
        "closed",
        schedule,
        "审核员甲",
    )
    assert [(e["from_state"], e["to_state"]) for e in after["events"]] == [
        (None, "pending_review"),
        ("pending_review", "filed"),
        ("filed", "notified"),
        ("notified", "penalized"),
        ("penalized", "closed"),
    ]
    assert (bytes(stored["pdf"]), stored["html"], stored["document_sha256"]) == (
        notice.pdf,
        notice.html,
        notice.sha256,
    )
    assert (penalty["fine_cny"], penalty["schedule_fine_cny"], penalty["source_unit"]) == (
        schedule,
        schedule,
        "某砂石场",
    )
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for table in ("notices", "penalties"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(f"DELETE FROM {table}")


def test_evidence_records_are_kept_with_their_links_and_checked_from_the_store(pg_dsn, registry):
    upgrade(pg_dsn)
    traffic = CitySimulator(SimConfig(vehicles=400, seed=21), registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    decided, support = decide_with_support(
        measured, traffic.reads, registry, load_policy(registry.policy)
    )
    chain = EvidenceChain(b"store-key")
    links = chain.extend(
        [(v, evidence_body(v, s, registry)) for v, s in zip(decided, support) if v["enforceable"]]
    )
    records = {link.passage_id: link.line for link in links}
    by_site = {}
    for link in links:
        by_site.setdefault(link.site_id, []).append(link)
    site, site_links = max(by_site.items(), key=lambda kv: len(kv[1]))
    assert len(site_links) >= 2

    async def work(store):
        await store.store_verdicts(decided, records)
        await store.store_verdicts(decided, records)  # again: nothing twice
        return [await store.evidence(link.passage_id) for link in site_links]

    stored = run(with_store(pg_dsn, work))
    first, second = stored[0], stored[1]
    assert (first.line, first.before, first.after) == (
        site_links[0].line,
        None,
        site_links[1].line,
    )
    assert second.before == site_links[0].line
    for link, ev in zip(site_links, stored):
        v = next(v for v in decided if v["passage_id"] == link.passage_id)
        check = check_stored(b"store-key", ev.line, ev.before, ev.after, v["evidence_hash"])
        assert check.ok, check.message
    v = next(v for v in decided if v["passage_id"] == site_links[1].passage_id)
    altered = second.line.replace('"gvw_kg":', '"gvw_kg":1', 1)
    assert (
        check_stored(b"store-key", altered, second.before, second.after, v["evidence_hash"]).reason
        == "altered"
    )
    assert (
        check_stored(
            b"other-key", second.line, second.before, second.after, v["evidence_hash"]
        ).reason
        == "forged"
    )
    assert not check_stored(b"store-key", second.line, None, None, v["evidence_hash"]).ok
    with psycopg.connect(pg_dsn) as conn:
        n = conn.execute("SELECT count(*) FROM evidence_records").fetchone()[0]
        assert n == len(links)


def test_the_store_checks_its_schema_once_it_can_reach_the_server(pg_dsn):
    async def check(store):
        return await store.check_schema()

    with pytest.raises(WrongSchema, match="zhichao db upgrade"):
        run(with_store(pg_dsn, check))
    upgrade(pg_dsn)
    assert run(with_store(pg_dsn, check)) == SCHEMA_VERSION
