"""The reviewers' desk (审核台) over HTTP, on a real Redis (tokens) and PostgreSQL (cases):
who may read and act, the conflict of two reviewers, and clear 4xx answers to bad requests."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib

import psycopg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from schemas.policy import load_policy
from sim.config import SimConfig
from sim.traffic import CitySimulator
from sinks import constants as K
from sinks.evidence import EvidenceChain, evidence_body, records_of
from sinks.records.case_store import CaseStore
from sinks.records.migrate import upgrade
from sinks.redis_sink import VerdictSink
from sinks.web import access
from sinks.web.desk import Review
from sinks.web.server import web_app
from streams.feedback import report_check
from streams.review import redecide
from streams.stages import decide_with_support, measure_passages

KEY = b"desk-test-evidence-key"
CHINA = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="module")
def decided(registry):
    traffic = CitySimulator(SimConfig(vehicles=300, seed=8), registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    return decide_with_support(measured, traffic.reads, registry, load_policy(registry.policy))


@pytest.fixture(scope="module")
def verdicts(decided):
    return decided[0]


def review_with(registry, policy_name=None) -> Review:
    policy = load_policy(policy_name or registry.policy)
    return Review(
        KEY,
        policy,
        registry.agency,
        lambda record: redecide(record, registry, policy).as_dict(),
    )


def on_desk(pg_dsn, redis_dsn, registry, decided, scenario, copied=True, review=None):
    """Run ``scenario(http, tokens, store)`` against the pages with the desk; ``copied``: the
    evidence records were copied into the store of record, as the cases agent does."""
    upgrade(pg_dsn)
    verdicts, support = decided

    async def run():
        client = aioredis.Redis.from_url(redis_dsn)
        await client.flushdb()
        store = await CaseStore(pg_dsn).open()
        # the worker seals every enforceable verdict's record into its site's chain
        chain = EvidenceChain(KEY)
        links = chain.extend(
            [
                (v, evidence_body(v, s, registry))
                for v, s in zip(verdicts, support, strict=True)
                if v["enforceable"]
            ]
        )
        appended, lost = await VerdictSink(client, 3600).append_evidence(links)
        assert (appended, lost) == (len(links), [])
        sealed = [(v["passage_id"], v["site_id"]) for v in verdicts if v["enforceable"]]
        records = await records_of(client, sealed) if copied else {}
        assert len(records) == (len(sealed) if copied else 0)
        await store.store_verdicts(verdicts, records)

        async def no_feedback(fb):
            raise AssertionError("the desk sends no feedback")

        app = web_app(
            client,
            registry,
            no_feedback,
            report_check(registry),
            cases=store,
            review=review or review_with(registry),
        )
        tokens = {
            "甲": await access.issue(client, "reviewer", label="审核员甲"),
            "乙": await access.issue(client, "reviewer", label="审核员乙"),
            "command": await access.issue(client, "command"),
            "unit": await access.issue(client, "unit", "U-KQ-01"),
        }
        async with TestClient(TestServer(app)) as http:
            try:
                return await scenario(http, tokens, store)
            finally:
                await store.close()
                await client.aclose()

    return asyncio.run(run())


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_reviewer_files_one_case_and_declines_another(
    pg_dsn, redis_dsn, registry, decided, verdicts
):
    async def scenario(http, tokens, store):
        queue = await (await http.get("/desk/queue", headers=auth(tokens["甲"]))).json()
        assert len(queue) == sum(v["enforceable"] for v in verdicts) >= 2
        assert [c["weighed_at"] for c in queue] == sorted(c["weighed_at"] for c in queue)
        first, second = queue[0]["case_id"], queue[1]["case_id"]
        case = await (await http.get(f"/desk/cases/{first}", headers=auth(tokens["甲"]))).json()
        assert case["verdict"]["enforceable"] and case["events"][0]["to_state"] == "pending_review"
        assert case["evidence"]["ok"] and case["evidence"]["reason"] == "intact"
        assert case["evidence"]["source"] == "记录库" and case["redecision"]["agrees"] is True
        assert case["fileable"] and case["record"]["device"]["cert_no"]
        assert case["record"]["reads"]["front"] and case["groups"]
        filed = await http.post(
            f"/desk/cases/{first}",
            json={"action": "file", "version": 1},
            headers=auth(tokens["甲"]),
        )
        declined = await http.post(
            f"/desk/cases/{second}",
            json={"action": "decline", "version": 1, "reason_code": "plate_mismatch"},
            headers=auth(tokens["甲"]),
        )
        left = await (await http.get("/desk/queue", headers=auth(tokens["甲"]))).json()
        return filed.status, await filed.json(), declined.status, await declined.json(), left, queue

    s1, filed, s2, declined, left, queue = on_desk(pg_dsn, redis_dsn, registry, decided, scenario)
    assert (s1, filed["state"], filed["reviewer"], filed["version"]) == (
        200,
        "filed",
        "审核员甲",
        2,
    )
    assert (s2, declined["state"], declined["reason_code"]) == (200, "not_filed", "plate_mismatch")
    assert len(left) == len(queue) - 2


def test_the_second_reviewer_on_one_case_gets_the_conflict(pg_dsn, redis_dsn, registry, decided):
    async def scenario(http, tokens, store):
        case_id = (await store.queue())[0]["case_id"]
        first = await http.post(
            f"/desk/cases/{case_id}",
            json={"action": "file", "version": 1},
            headers=auth(tokens["甲"]),
        )
        second = await http.post(
            f"/desk/cases/{case_id}",
            json={"action": "decline", "version": 1, "reason_code": "duplicate"},
            headers=auth(tokens["乙"]),
        )
        return first.status, second.status, await second.json(), await store.case(case_id)

    first, second, body, case = on_desk(pg_dsn, redis_dsn, registry, decided, scenario)
    assert (first, second, body["error"]) == (200, 409, "conflict")
    assert "已被他人处理" in body["message"]
    assert (case["state"], case["version"], len(case["events"])) == ("filed", 2, 2)


def test_the_command_centre_reads_but_cannot_act_and_an_officer_cannot_open_it(
    pg_dsn, redis_dsn, registry, decided, verdicts
):
    async def scenario(http, tokens, store):
        case_id = (await store.queue())[0]["case_id"]
        read = await http.get("/desk/queue", headers=auth(tokens["command"]))
        act = await http.post(
            f"/desk/cases/{case_id}",
            json={"action": "file", "version": 1},
            headers=auth(tokens["command"]),
        )
        officer_page = await http.get("/desk", headers=auth(tokens["unit"]))
        officer_api = await http.get("/desk/queue", headers=auth(tokens["unit"]))
        nobody = await http.get("/desk/queue")
        page = await http.get("/desk", headers=auth(tokens["甲"]))
        return (
            read.status,
            act.status,
            (await act.json())["error"],
            officer_page.status,
            officer_api.status,
            nobody.status,
            page.status,
            "审核台" in await page.text(),
            (await store.case(case_id))["state"],
        )

    got = on_desk(pg_dsn, redis_dsn, registry, decided, scenario)
    assert got == (200, 403, "not_reviewer", 403, 403, 401, 200, True, "pending_review")


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"action": "penalize", "version": 1, "fine_cny": 500}, 422, "wrong_state"),
        ({"action": "decline", "version": 1}, 422, "missing_reason_code"),
        ({"action": "decline", "version": 1, "reason_code": "nope"}, 422, "unknown_reason"),
        ({"action": "decline", "version": 1, "reason_code": "other"}, 422, "missing_note"),
        ({"action": "fly", "version": 1}, 422, "unknown_action"),
        ({"action": "file", "version": 9}, 409, "conflict"),
        ({"action": "file"}, 400, "bad_version"),
        ({"version": 1}, 400, "bad_request"),
        ("not an object", 400, "bad_request"),
    ],
)
def test_bad_requests_get_a_clear_error_and_change_nothing(
    pg_dsn, redis_dsn, registry, decided, body, status, error
):
    async def scenario(http, tokens, store):
        case_id = (await store.queue())[0]["case_id"]
        r = await http.post(f"/desk/cases/{case_id}", json=body, headers=auth(tokens["甲"]))
        unknown = await http.post(
            "/desk/cases/999999", json={"action": "file", "version": 1}, headers=auth(tokens["甲"])
        )
        garbage = await http.post(f"/desk/cases/{case_id}", data=b"{", headers=auth(tokens["甲"]))
        return r.status, await r.json(), unknown.status, garbage.status, await store.case(case_id)

    got, answer, unknown, garbage, case = on_desk(pg_dsn, redis_dsn, registry, decided, scenario)
    assert (got, answer["error"]) == (status, error)
    assert answer["message"]
    assert (unknown, garbage) == (404, 400)
    assert (case["state"], case["version"], len(case["events"])) == ("pending_review", 1, 1)


def test_one_byte_changed_in_the_live_chain_shows_and_refuses_filing(
    pg_dsn, redis_dsn, registry, decided
):
    """A record not copied into the store of record yet is checked in its live chain."""

    async def scenario(http, tokens, store):
        case = (await store.queue())[0]
        key = K.EVIDENCE_CHAIN_KEY.format(site_id=case["site_id"])
        client = aioredis.Redis.from_url(redis_dsn)
        try:
            entries = await client.xrange(key)
            target = next(
                (eid, f[b"record"])
                for eid, f in entries
                if case["passage_id"].encode() in f[b"record"]
            )
            eid, record = target
            changed = record.replace(b'"gvw_kg":', b'"gvw_kg":1', 1)  # one more digit
            assert changed != record
            # rewrite the stream with the one record changed, as a tamperer with Redis access would
            await client.delete(key)
            for other, fields in entries:
                await client.xadd(key, {"record": changed if other == eid else fields[b"record"]})
        finally:
            await client.aclose()
        shown = await (
            await http.get(f"/desk/cases/{case['case_id']}", headers=auth(tokens["甲"]))
        ).json()
        filed = await http.post(
            f"/desk/cases/{case['case_id']}",
            json={"action": "file", "version": 1},
            headers=auth(tokens["甲"]),
        )
        return (
            shown["evidence"],
            filed.status,
            await filed.json(),
            await store.case(case["case_id"]),
        )

    evidence, status, answer, case = on_desk(
        pg_dsn, redis_dsn, registry, decided, scenario, copied=False
    )
    assert (evidence["ok"], evidence["reason"], evidence["source"]) == (
        False,
        "altered",
        "实时证据链",
    )
    assert (status, answer["error"]) == (422, "evidence_failed")
    assert "证据链校验未通过" in answer["message"]
    assert (case["state"], case["version"]) == ("pending_review", 1)


def _tamper_stored(pg_dsn, passage_id):
    """Change one byte of a stored evidence record, as someone with the database's owner
    rights could (the append-only trigger stops everyone else)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute(
                "UPDATE evidence_records SET line = line WHERE passage_id = %s", (passage_id,)
            )
        conn.execute("ALTER TABLE evidence_records DISABLE TRIGGER evidence_records_append_only")
        conn.execute(
            "UPDATE evidence_records SET line = replace(line, '\"gvw_kg\":', '\"gvw_kg\":1') "
            "WHERE passage_id = %s",
            (passage_id,),
        )
        conn.execute("ALTER TABLE evidence_records ENABLE TRIGGER evidence_records_append_only")


def test_one_byte_changed_in_a_stored_evidence_record_refuses_filing(
    pg_dsn, redis_dsn, registry, decided
):
    async def scenario(http, tokens, store):
        case = (await store.queue())[0]
        await asyncio.to_thread(_tamper_stored, pg_dsn, case["passage_id"])
        shown = await (
            await http.get(f"/desk/cases/{case['case_id']}", headers=auth(tokens["甲"]))
        ).json()
        filed = await http.post(
            f"/desk/cases/{case['case_id']}",
            json={"action": "file", "version": 1},
            headers=auth(tokens["甲"]),
        )
        return shown, filed.status, await filed.json(), await store.case(case["case_id"])

    shown, status, answer, case = on_desk(pg_dsn, redis_dsn, registry, decided, scenario)
    assert (shown["evidence"]["ok"], shown["evidence"]["reason"]) == (False, "altered")
    assert shown["evidence"]["source"] == "记录库" and not shown["fileable"]
    assert (status, answer["error"]) == (422, "evidence_failed")
    assert (case["state"], case["version"]) == ("pending_review", 1)


def test_a_weighing_that_decides_otherwise_now_cannot_be_filed(
    pg_dsn, redis_dsn, registry, decided
):
    """Under another policy (Hunan's 10 % band) the record's weighing decides otherwise: the
    desk shows what differs and refuses to file."""

    async def scenario(http, tokens, store):
        case_id = (await store.queue())[0]["case_id"]
        shown = await (await http.get(f"/desk/cases/{case_id}", headers=auth(tokens["甲"]))).json()
        filed = await http.post(
            f"/desk/cases/{case_id}",
            json={"action": "file", "version": 1},
            headers=auth(tokens["甲"]),
        )
        return shown, filed.status, await filed.json()

    review = review_with(registry, "hn-2023-10pct")
    shown, status, answer = on_desk(pg_dsn, redis_dsn, registry, decided, scenario, review=review)
    assert shown["evidence"]["ok"] and shown["redecision"]["agrees"] is False
    assert "policy_version" in shown["redecision"]["differs"]
    assert (status, answer["error"]) == (422, "evidence_failed")
    assert "重新判定与原判定不一致" in answer["message"]


def test_a_filed_case_is_notified_penalized_and_closed(pg_dsn, redis_dsn, registry, decided):
    async def scenario(http, tokens, store):
        me = auth(tokens["甲"])
        case_id = (await store.queue())[0]["case_id"]

        async def act(version, action, **fields):
            r = await http.post(
                f"/desk/cases/{case_id}",
                json={"action": action, "version": version, **fields},
                headers=me,
            )
            return r.status, await r.json()

        before = await http.get(f"/desk/cases/{case_id}/notice.pdf", headers=me)
        steps = [await act(1, "file"), await act(2, "notify")]
        pdf = await http.get(f"/desk/cases/{case_id}/notice.pdf", headers=me)
        html = await http.get(f"/desk/cases/{case_id}/notice.html", headers=me)
        shown = await (await http.get(f"/desk/cases/{case_id}", headers=me)).json()
        schedule = shown["schedule_fine_cny"]
        steps += [
            await act(3, "penalize", fine_cny=schedule + 500),
            await act(3, "penalize", fine_cny=max(schedule - 100, 1)),
            await act(
                3, "penalize", fine_cny=schedule, driver_name="张三", transport_company="某物流公司"
            ),
            await act(4, "close"),
        ]
        return (
            before.status,
            steps,
            pdf,
            await pdf.read(),
            await html.text(),
            shown,
            await store.case(case_id),
            await store.penalty(case_id),
        )

    before, steps, pdf, pdf_bytes, html, shown, case, penalty = on_desk(
        pg_dsn, redis_dsn, registry, decided, scenario
    )
    assert before == 404
    assert [s for s, _ in steps] == [200, 200, 422, 422, 200, 200]
    assert [b.get("error") for _, b in steps[2:4]] == ["above_schedule", "missing_note"]
    assert pdf.status == 200 and pdf.content_type == "application/pdf" and pdf_bytes[:4] == b"%PDF"
    assert shown["notice"]["sha256"] == hashlib.sha256(pdf_bytes).hexdigest()
    assert "违法行为通知书" in html and shown["verdict"]["plate_front"] in html
    assert case["state"] == "closed" and [e["action"] for e in case["events"]] == [
        "open",
        "file",
        "notify",
        "penalize",
        "close",
    ]
    assert case["events"][2]["data"]["notice_no"] == shown["notice"]["notice_no"]
    assert (penalty["fine_cny"], penalty["driver_name"], penalty["transport_company"]) == (
        shown["schedule_fine_cny"],
        "张三",
        "某物流公司",
    )


def test_the_queue_filters_by_day_and_local_and_refuses_bad_filters(
    pg_dsn, redis_dsn, registry, decided
):
    async def scenario(http, tokens, store):
        me = auth(tokens["甲"])
        every = await (await http.get("/desk/queue", headers=me)).json()
        local = await (await http.get("/desk/queue?local=1", headers=me)).json()
        other = await (await http.get("/desk/queue?local=0", headers=me)).json()
        first = dt.datetime.fromisoformat(every[0]["weighed_at"]).astimezone(CHINA).date()
        on_day = await (await http.get(f"/desk/queue?day={first}", headers=me)).json()
        day = (first, on_day)
        answers = [
            await http.get("/desk/queue?day=2026-13-01", headers=me),
            await http.get("/desk/queue?local=maybe", headers=me),
            await http.get("/desk/queue?state=lost", headers=me),
        ]
        return every, local, other, day, [(r.status, (await r.json())["error"]) for r in answers]

    every, local, other, day, bad = on_desk(pg_dsn, redis_dsn, registry, decided, scenario)
    assert len(local) + len(other) == len(every)
    assert all(c["is_local"] for c in local) and not any(c["is_local"] for c in other)
    assert bad == [(400, "bad_day"), (400, "bad_local"), (400, "unknown_state")]
    first, on_day = day
    china_day = lambda c: dt.datetime.fromisoformat(c["weighed_at"]).astimezone(CHINA).date()  # noqa: E731
    assert on_day == [c for c in every if china_day(c) == first]
