"""The reviewers' desk (审核台) over HTTP, on a real Redis (tokens) and PostgreSQL (cases):
who may read and act, the conflict of two reviewers, and clear 4xx answers to bad requests."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from schemas.policy import load_policy
from sim.config import SimConfig
from sim.traffic import CitySimulator
from sinks import constants as K
from sinks.evidence import EvidenceChain, evidence_body
from sinks.records.case_store import CaseStore
from sinks.records.migrate import upgrade
from sinks.redis_sink import VerdictSink
from sinks.web import access
from sinks.web.server import web_app
from streams.feedback import report_check
from streams.stages import decide, measure_passages

KEY = b"desk-test-evidence-key"


@pytest.fixture(scope="module")
def verdicts(registry):
    traffic = CitySimulator(SimConfig(vehicles=300, seed=8), registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    return decide(measured, traffic.reads, registry, load_policy(registry.policy))


def on_desk(pg_dsn, redis_dsn, registry, verdicts, scenario):
    """Run ``scenario(http, tokens, store)`` against the pages with the desk."""
    upgrade(pg_dsn)

    async def run():
        client = aioredis.Redis.from_url(redis_dsn)
        await client.flushdb()
        store = await CaseStore(pg_dsn).open()
        await store.store_verdicts(verdicts)
        # the worker seals every enforceable verdict's record into its site's chain
        chain = EvidenceChain(KEY)
        support = {"samples_sha256": None, "read_ids": []}
        links = chain.extend(
            [(v, evidence_body(v, support, registry)) for v in verdicts if v["enforceable"]]
        )
        appended, lost = await VerdictSink(client, 3600).append_evidence(links)
        assert (appended, lost) == (len(links), [])

        async def no_feedback(fb):
            raise AssertionError("the desk sends no feedback")

        app = web_app(
            client, registry, no_feedback, report_check(registry), cases=store, evidence_key=KEY
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


def test_a_reviewer_files_one_case_and_declines_another(pg_dsn, redis_dsn, registry, verdicts):
    async def scenario(http, tokens, store):
        queue = await (await http.get("/desk/queue", headers=auth(tokens["甲"]))).json()
        assert len(queue) == sum(v["enforceable"] for v in verdicts) >= 2
        assert [c["weighed_at"] for c in queue] == sorted(c["weighed_at"] for c in queue)
        first, second = queue[0]["case_id"], queue[1]["case_id"]
        case = await (await http.get(f"/desk/cases/{first}", headers=auth(tokens["甲"]))).json()
        assert case["verdict"]["enforceable"] and case["events"][0]["to_state"] == "pending_review"
        assert case["evidence"]["ok"] and case["evidence"]["reason"] == "intact"
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

    s1, filed, s2, declined, left, queue = on_desk(pg_dsn, redis_dsn, registry, verdicts, scenario)
    assert (s1, filed["state"], filed["reviewer"], filed["version"]) == (
        200,
        "filed",
        "审核员甲",
        2,
    )
    assert (s2, declined["state"], declined["reason_code"]) == (200, "not_filed", "plate_mismatch")
    assert len(left) == len(queue) - 2


def test_the_second_reviewer_on_one_case_gets_the_conflict(pg_dsn, redis_dsn, registry, verdicts):
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

    first, second, body, case = on_desk(pg_dsn, redis_dsn, registry, verdicts, scenario)
    assert (first, second, body["error"]) == (200, 409, "conflict")
    assert "已被他人处理" in body["message"]
    assert (case["state"], case["version"], len(case["events"])) == ("filed", 2, 2)


def test_the_command_centre_reads_but_cannot_act_and_an_officer_cannot_open_it(
    pg_dsn, redis_dsn, registry, verdicts
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

    got = on_desk(pg_dsn, redis_dsn, registry, verdicts, scenario)
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
    pg_dsn, redis_dsn, registry, verdicts, body, status, error
):
    async def scenario(http, tokens, store):
        case_id = (await store.queue())[0]["case_id"]
        r = await http.post(f"/desk/cases/{case_id}", json=body, headers=auth(tokens["甲"]))
        unknown = await http.post(
            "/desk/cases/999999", json={"action": "file", "version": 1}, headers=auth(tokens["甲"])
        )
        garbage = await http.post(f"/desk/cases/{case_id}", data=b"{", headers=auth(tokens["甲"]))
        return r.status, await r.json(), unknown.status, garbage.status, await store.case(case_id)

    got, answer, unknown, garbage, case = on_desk(pg_dsn, redis_dsn, registry, verdicts, scenario)
    assert (got, answer["error"]) == (status, error)
    assert answer["message"]
    assert (unknown, garbage) == (404, 400)
    assert (case["state"], case["version"], len(case["events"])) == ("pending_review", 1, 1)


def test_one_byte_changed_in_an_evidence_record_shows_and_refuses_filing(
    pg_dsn, redis_dsn, registry, verdicts
):
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

    evidence, status, answer, case = on_desk(pg_dsn, redis_dsn, registry, verdicts, scenario)
    assert (evidence["ok"], evidence["reason"]) == (False, "altered")
    assert (status, answer["error"]) == (422, "evidence_failed")
    assert "证据链校验未通过" in answer["message"]
    assert (case["state"], case["version"]) == ("pending_review", 1)
