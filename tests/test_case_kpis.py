"""The case workflow's KPIs on a real PostgreSQL server, checked against what the test itself
did to the cases; the yearly targets and their file's checks; and the dashboard's case tiles
with a store of record, without one, and with one that does not answer."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import statistics
from dataclasses import dataclass, field
from types import SimpleNamespace

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from schemas.cases import load_case_rules
from schemas.policy import load_policy
from schemas.registry import CHINA
from sim.config import SimConfig
from sim.traffic import CitySimulator
from sinks import constants as K
from sinks.records import kpis
from sinks.records.case_store import SYSTEM, CaseStore
from sinks.records.kpis import TargetsError, case_kpis, load_targets
from sinks.records.migrate import upgrade
from sinks.web import access, dashboard
from sinks.web.server import web_app
from streams.embedded import free_port
from streams.feedback import report_check
from streams.stages import decide, measure_passages

REVIEWER = "审核员甲"
# what the test does to each case of 2026, by its index among the local or non-local ones
LOCAL_PLANS = [
    ["file", "notify", "penalize", "close"],
    ["file", "notify", "statement", "penalize"],
    ["file", "notify"],
    ["file"],
    ["decline"],
    [],
]
NONLOCAL_PLANS = [
    ["file", "hand_over"],
    ["file", "hand_over", "answered"],  # closed on the home region's answer, not penalized here
    ["file", "notify", "penalize"],
    ["decline"],
    ["file"],
    [],
]
EARLIER_PLAN = ["file", "notify", "penalize"]  # every case weighed in 2025


@pytest.fixture(scope="module")
def verdicts(registry):
    """Traffic across the turn of the year in China time: most enforceable cases in 2026, a
    few in 2025 (23:56 on 31 December, Beijing time, is 15:56 UTC)."""
    config = SimConfig(
        vehicles=2400,
        seed=32,
        start=dt.datetime(2025, 12, 31, 23, 56, tzinfo=CHINA),
        overloaded_share=0.5,
    )
    traffic = CitySimulator(config, registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    return decide(measured, traffic.reads, registry, load_policy(registry.policy))


def china_year(ts_us: int) -> int:
    return dt.datetime.fromtimestamp(ts_us / 1e6, CHINA).year


@dataclass
class Worked:
    """The cases as the test left them: the actions it applied to each, their events as
    stored, and each case's weighing."""

    actions: dict[int, list[str]] = field(default_factory=dict)
    local: dict[int, bool] = field(default_factory=dict)
    year: dict[int, int] = field(default_factory=dict)
    weighed_at: dict[int, dt.datetime] = field(default_factory=dict)
    events: dict[int, list[dict]] = field(default_factory=dict)


def notice_for(case_id: int) -> SimpleNamespace:
    html = f"<p>违法行为通知书 {case_id}</p>"
    return SimpleNamespace(
        notice_no=f"TEST-{case_id:06d}",
        sha256=hashlib.sha256(html.encode()).hexdigest(),
        html=html,
        pdf=b"%PDF-1.7 test",
    )


async def work_cases(store: CaseStore, verdicts: list[dict]) -> Worked:
    """Store the verdicts and move the cases through the plans above."""
    await store.store_verdicts(verdicts)
    by_passage = {v["passage_id"]: v for v in verdicts}
    cases = await store.queue(limit=10_000)
    done = Worked()
    counters = {True: 0, False: 0}
    for case in cases:
        case_id = case["case_id"]
        v = by_passage[case["passage_id"]]
        year = china_year(v["ts_us"])
        if year == 2026:
            plans = LOCAL_PLANS if v["local"] else NONLOCAL_PLANS
            plan = plans[counters[v["local"]] % len(plans)]
            counters[v["local"]] += 1
        else:
            plan = EARLIER_PLAN
        for version, action in enumerate(plan, start=1):
            role, actor, fields, notice = "reviewer", REVIEWER, {}, None
            if action == "decline":
                fields = {"reason_code": "insufficient_evidence"}
            elif action in ("statement", "answered"):
                fields = {"note": "当事人已陈述" if action == "statement" else "车籍地已处理"}
            elif action == "penalize":
                fields = {"fine_cny": v["fine_cny"]}  # the schedule's amount: no note needed
            elif action == "notify":
                notice = notice_for(case_id)
            elif action == "hand_over":
                role, actor = "system", SYSTEM
            await store.apply(case_id, version, action, actor, role, fields, notice=notice)
        done.actions[case_id] = plan
        done.local[case_id] = v["local"]
        done.year[case_id] = year
        done.weighed_at[case_id] = dt.datetime.fromtimestamp(v["ts_us"] / 1e6, dt.UTC)
        done.events[case_id] = (await store.case(case_id))["events"]
    assert counters[True] >= len(LOCAL_PLANS) and counters[False] >= len(NONLOCAL_PLANS)
    return done


def expected(done: Worked, year: int, as_of: dt.datetime) -> dict:
    """The figures of ``year``, counted here from what the test did."""
    rules = load_case_rules()
    ids = [c for c in done.actions if done.year[c] == year]
    acts = done.actions

    def state(c):
        return rules.actions[acts[c][-1]].target if acts[c] else rules.initial

    filed = [c for c in ids if "file" in acts[c]]
    local_filed = [c for c in filed if done.local[c]]
    nonlocal_filed = [c for c in filed if not done.local[c]]

    def at(c, *actions):
        return next(e["at"] for e in done.events[c] if e["action"] in actions)

    review = [
        (at(c, "file", "decline") - done.weighed_at[c]).total_seconds() / 3600
        for c in ids
        if acts[c]
    ]
    notice = [
        (at(c, "notify") - at(c, "file")).total_seconds() / 3600 for c in ids if "notify" in acts[c]
    ]
    pending = [done.weighed_at[c] for c in ids if state(c) == "pending_review"]
    states = {}
    for c in ids:
        states[state(c)] = states.get(state(c), 0) + 1
    return {
        "cases": len(ids),
        "by_state": dict(sorted(states.items())),
        "penalty_rate": (sum("penalize" in acts[c] for c in filed), len(filed)),
        "local_handling_rate": (
            sum(bool({"penalize", "close"} & set(acts[c])) for c in local_filed),
            len(local_filed),
        ),
        "handover_share": (
            sum("hand_over" in acts[c] for c in nonlocal_filed),
            len(nonlocal_filed),
        ),
        "pending": len(pending),
        "oldest_age_h": (as_of - min(pending)).total_seconds() / 3600 if pending else None,
        "review_h": (statistics.median(review) if review else None, len(review)),
        "notice_h": (statistics.median(notice) if notice else None, len(notice)),
    }


def pct(n: int, d: int) -> float | None:
    return round(100 * n / d, 1) if d else None


def check(got: dict, want: dict, year: int) -> None:
    targets = load_targets()
    assert got["year"] == year
    assert got["cases"] == want["cases"]
    assert got["by_state"] == want["by_state"]
    for name in ("penalty_rate", "local_handling_rate", "handover_share"):
        n, d = want[name]
        target = targets.for_year(name, year) if name != "handover_share" else None
        value = pct(n, d)
        met = None if value is None or target is None else value >= target
        assert got[name] == {
            "value": value,
            "numerator": n,
            "denominator": d,
            "target": target,
            "met": met,
        }, name
    assert got["backlog"]["pending_review"] == want["pending"]
    if want["oldest_age_h"] is None:
        assert got["backlog"]["oldest_age_h"] is None
    else:
        assert got["backlog"]["oldest_age_h"] == pytest.approx(want["oldest_age_h"], abs=0.006)
    for name in ("review_h", "notice_h"):
        median, n = want[name]
        assert got[name]["n"] == n, name
        if median is None:
            assert got[name]["median"] is None
        else:
            assert got[name]["median"] == pytest.approx(median, abs=0.006), name


async def with_store(dsn, work):
    store = await CaseStore(dsn).open()
    try:
        return await work(store)
    finally:
        await store.close()


# -- targets -----------------------------------------------------------------------------------


def test_the_plan_targets_by_year_and_the_last_one_holds_after():
    targets = load_targets()
    assert targets.version == "targets/v1"
    by_year = {
        y: (targets.for_year("penalty_rate", y), targets.for_year("local_handling_rate", y))
        for y in (2018, 2019, 2020, 2021, 2026)
    }
    assert by_year == {
        2018: (None, None),  # before the plan: no target
        2019: (30, 50),
        2020: (50, 70),
        2021: (70, 90),
        2026: (70, 90),
    }
    assert targets.kpis["penalty_rate"].label == "有效案件处罚率"
    assert targets.kpis["local_handling_rate"].label == "本地车辆处置率"
    assert targets.for_year("handover_share", 2026) is None  # no target is set for it


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("version: t\nkpis:\n  penalty_rate: {label: x, by_year: {2020: 120}}", "120 is not a "),
        ("version: t\nkpis:\n  penalty_rate: {label: x, by_year: {2020: -1}}", "from 0 to 100"),
        ("version: t\nkpis:\n  penalty_rate: {label: x, by_year: {2020: yes}}", "percentage"),
        ("version: t\nkpis:\n  penalty_rate: {label: x, by_year: {'2020': 50}}", "not a year"),
        ("version: t\nkpis:\n  penalty_rate: {label: x, by_year: {20.5: 50}}", "not a year"),
        ("version: t\nkpis:\n  penalty_rate: {label: x, by_year: {}}", "map years"),
        ("version: t\nkpis:\n  penalty_rate: {by_year: {2020: 50}}", "label"),
        ("version: t\nkpis:\n  penalty: {label: x, by_year: {2020: 50}}", "unknown KPI"),
        ("version: t\nkpis: {}", "'kpis'"),
        ("kpis:\n  penalty_rate: {label: x, by_year: {2020: 50}}", "'version'"),
        ("- 1\n- 2", "mapping"),
        ("version: [", "cannot read"),
    ],
)
def test_a_targets_file_that_is_wrong_says_what_is_wrong(tmp_path, text, says):
    path = tmp_path / "targets.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TargetsError, match=says) as err:
        load_targets(path)
    assert str(path) in str(err.value)


def test_the_kpis_name_actions_and_states_the_case_rules_have():
    rules = load_case_rules()
    assert {"file", "decline", "notify", "penalize", "hand_over"} <= set(rules.actions)
    assert {"pending_review", "penalized", "closed"} <= set(rules.states)
    assert rules.actions["penalize"].target == "penalized"
    assert rules.actions["close"].sources == ("penalized",)  # a local case closes penalized
    for action in ("file", "decline", "notify", "penalize", "hand_over"):
        assert f"'{action}'" in kpis.CASE_KPIS


# -- figures from the store of record ------------------------------------------------------------


def test_every_figure_matches_what_was_done_to_the_cases(pg_dsn, verdicts):
    upgrade(pg_dsn)
    day = dt.date(2026, 1, 1)

    async def work(store):
        done = await work_cases(store, verdicts)
        before = dt.datetime.now(CHINA)
        figures = {
            "2026": await case_kpis(store.pool, 2026, day),
            "2026 now": await case_kpis(store.pool, 2026),
            "2025": await case_kpis(store.pool, 2025, dt.date(2025, 12, 31)),
        }
        return done, before, dt.datetime.now(CHINA), figures

    done, before, after, figures = asyncio.run(with_store(pg_dsn, work))
    assert {2025, 2026} <= set(done.year.values())
    end_of_day = dt.datetime(2026, 1, 2, tzinfo=CHINA)
    want = expected(done, 2026, end_of_day)
    check(figures["2026"], want, 2026)
    # the figures themselves are not trivial: every rate has parts, some cases wait
    for name in ("penalty_rate", "local_handling_rate", "handover_share"):
        n, d = want[name]
        assert 0 < n < d, name
    assert want["pending"] > 0 and want["review_h"][1] > want["notice_h"][1] > 0
    assert figures["2026"]["penalty_rate"]["target"] == 70
    assert figures["2026"]["local_handling_rate"]["target"] == 90
    # a handed-over case closed on its answer was filed, not penalized here
    answered = [c for c, a in done.actions.items() if "answered" in a and done.year[c] == 2026]
    assert answered and figures["2026"]["by_state"]["closed"] >= len(answered)
    # measured now: the backlog's age runs to now
    now_age = figures["2026 now"]["backlog"]["oldest_age_h"]
    oldest = min(
        done.weighed_at[c] for c in done.actions if done.year[c] == 2026 and not done.actions[c]
    )
    assert (before - oldest).total_seconds() / 3600 - 0.01 <= now_age
    assert now_age <= (after - oldest).total_seconds() / 3600 + 0.01
    # 2025's few cases are their own year's
    want_2025 = expected(done, 2025, dt.datetime(2026, 1, 1, tzinfo=CHINA))
    check(figures["2025"], want_2025, 2025)
    assert figures["2025"]["penalty_rate"]["value"] == 100.0


def test_a_year_without_cases_has_no_rates_rather_than_zero(pg_dsn, verdicts):
    upgrade(pg_dsn)

    async def work(store):
        await store.store_verdicts(verdicts)  # cases of 2025 and 2026, all waiting for review
        return await case_kpis(store.pool, 2024), await case_kpis(store.pool, 2026)

    empty, waiting = asyncio.run(with_store(pg_dsn, work))
    assert empty["cases"] == 0 and empty["by_state"] == {}
    for name in ("penalty_rate", "local_handling_rate", "handover_share"):
        assert empty[name]["value"] is None and empty[name]["met"] is None
        assert (empty[name]["numerator"], empty[name]["denominator"]) == (0, 0)
        # nothing filed yet in 2026 either: the cases wait, no rate is made up
        assert waiting[name]["value"] is None and waiting[name]["denominator"] == 0
    assert empty["penalty_rate"]["target"] == 70  # 2021 is the last year set: its target holds
    assert load_targets().for_year("penalty_rate", 2024) == 70
    assert empty["backlog"] == {
        "pending_review": 0,
        "oldest_weighed_at": None,
        "oldest_age_h": None,
    }
    assert empty["review_h"] == {"median": None, "n": 0}
    assert empty["notice_h"] == {"median": None, "n": 0}
    assert waiting["backlog"]["pending_review"] == waiting["cases"] > 0
    assert waiting["by_state"] == {"pending_review": waiting["cases"]}


# -- the dashboard ---------------------------------------------------------------------------------


def on_dashboard(redis_dsn, registry, verdicts, store_of, scenario):
    """GET /dashboard/state as the command centre, with the store ``store_of(client)`` makes
    (None: none configured); the newest verdict in Redis is one of 2026's."""

    async def run():
        client = aioredis.Redis.from_url(redis_dsn)
        await client.flushdb()
        newest = max(
            (v for v in verdicts if china_year(v["ts_us"]) == 2026), key=lambda v: v["ts_us"]
        )
        await client.xadd(K.VERDICT_STREAM, {"verdict": orjson.dumps(newest)})
        store = await store_of()

        async def no_feedback(fb):
            raise AssertionError("the dashboard's state sends no feedback")

        app = web_app(client, registry, no_feedback, report_check(registry), cases=store)
        token = await access.issue(client, "command")
        try:
            async with TestClient(TestServer(app)) as http:
                r = await http.get("/dashboard/state", headers={"Authorization": f"Bearer {token}"})
                assert r.status == 200
                return await scenario(await r.json(), store)
        finally:
            if store is not None:
                await store.close()
            await client.aclose()

    return asyncio.run(run())


def tiles_of(state: dict) -> dict[str, dict]:
    return {t["id"]: t for t in state["tiles"]}


def test_the_dashboard_shows_the_case_kpis_from_the_store_of_record(
    pg_dsn, redis_dsn, registry, verdicts
):
    upgrade(pg_dsn)

    async def store_of():
        store = await CaseStore(pg_dsn).open()
        store.worked = await work_cases(store, verdicts)
        return store

    async def scenario(state, store):
        return state, store.worked, await case_kpis(store.pool, 2026, dt.date(2026, 1, 1))

    state, done, direct = on_dashboard(redis_dsn, registry, verdicts, store_of, scenario)
    assert state["day"] == "2026-01-01"
    cases = state["cases"]
    assert cases["connected"] and cases["available"] and cases["year"] == 2026
    assert {k: v for k, v in cases.items() if k not in ("connected", "available", "as_of")} == {
        k: v for k, v in direct.items() if k != "as_of"
    }
    check(cases, expected(done, 2026, dt.datetime(2026, 1, 2, tzinfo=CHINA)), 2026)
    tiles = tiles_of(state)
    penalty, local = tiles["case_penalty_rate"], tiles["local_handled"]
    assert penalty["label"] == "有效案件处罚率" and local["label"] == "本地车辆处置率"
    assert penalty["value"] == cases["penalty_rate"]["value"]
    assert (penalty["unit"], penalty["target"]) == ("%", "≥ 70 %")
    assert penalty["ok"] == cases["penalty_rate"]["met"]
    n, d = cases["penalty_rate"]["numerator"], cases["penalty_rate"]["denominator"]
    assert penalty["detail"] == f"已处罚 {n} / 立案 {d}"
    assert local["value"] == cases["local_handling_rate"]["value"] and local["target"] == "≥ 90 %"
    assert local["ok"] is (local["value"] >= 90)
    assert tiles["case_handover"]["value"] == cases["handover_share"]["value"]
    assert tiles["case_handover"]["target"] == ""
    assert tiles["review_backlog"]["value"] == cases["backlog"]["pending_review"]
    assert tiles["review_h"]["value"] == cases["review_h"]["median"]
    assert tiles["notice_h"]["value"] == cases["notice_h"]["median"]
    assert not any(t["unavailable"] for t in state["tiles"])
    # the interception figure is its own tile, named for what it counts, with no KPI target
    assert tiles["local_intercepted"]["label"] == "本地车辆拦截处置率"
    assert tiles["local_intercepted"]["target"] == ""


def test_without_a_store_of_record_the_case_tiles_say_so(redis_dsn, registry, verdicts):
    async def none():
        return None

    async def scenario(state, store):
        return state

    state = on_dashboard(redis_dsn, registry, verdicts, none, scenario)
    assert state["cases"] == {
        "connected": False,
        "available": False,
        "year": 2026,
        "targets": {"penalty_rate": 70, "local_handling_rate": 90},
    }
    tiles = tiles_of(state)
    for key, label, target in (
        ("case_penalty_rate", "有效案件处罚率", "≥ 70 %"),
        ("local_handled", "本地车辆处置率", "≥ 90 %"),
    ):
        assert tiles[key]["label"] == label and tiles[key]["target"] == target
        assert tiles[key]["value"] is None and tiles[key]["ok"] is None
        assert tiles[key]["detail"] == "未连接记录库" and tiles[key]["unavailable"]
    # no stand-in figure under the KPI's name; the interception counter keeps its own tile
    assert [t["id"] for t in state["tiles"] if t["label"] == "本地车辆处置率"] == ["local_handled"]
    assert "local_intercepted" in tiles and "review_backlog" not in tiles


def test_a_store_of_record_that_is_down_does_not_break_the_dashboard(
    redis_dsn, registry, verdicts, monkeypatch, caplog
):
    from streams.embedded import postgres_dsn

    monkeypatch.setattr(dashboard, "CASES_TIMEOUT_S", 0.5)
    down = postgres_dsn(free_port())  # nothing listens there

    async def store_of():
        return await CaseStore(down).open()

    async def scenario(state, store):
        return state

    with caplog.at_level(logging.WARNING, logger="sinks.web.dashboard"):
        state = on_dashboard(redis_dsn, registry, verdicts, store_of, scenario)
    assert state["cases"]["connected"] and not state["cases"]["available"]
    assert state["cases"]["targets"] == {"penalty_rate": 70, "local_handling_rate": 90}
    tiles = tiles_of(state)
    for key in ("case_penalty_rate", "local_handled", "case_handover", "review_backlog"):
        assert tiles[key]["value"] is None and tiles[key]["unavailable"]
        assert tiles[key]["detail"] == "记录库暂不可用"
    assert tiles["vehicles"]["value"] == 0  # the rest of the page as usual
    assert any("store of record did not answer" in r.getMessage() for r in caplog.records)
