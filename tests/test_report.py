"""``zhichao report`` against an independent count: traffic over three quarters (2025Q2, 2026Q1,
2026Q2) goes through ``zhichao replay --to-db``, some of its cases are reviewed, and every cell of
the 2026Q2 report's XLSX is compared with a count made here from the verdict lines with plain
Python (环比 against 2026Q1, 同比 against 2025Q2)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections import Counter, defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from schemas.registry import CHINA
from sim.config import SimConfig
from sim.output import write_traffic
from sim.traffic import CitySimulator
from sinks.records.analysis import Period, PeriodError
from sinks.records.case_store import SYSTEM, CaseStore
from sinks.records.migrate import upgrade
from tests.hand_counts import source_truck_days
from zhichao.cli import main

# the plan's targets for 2021 onwards, which hold in 2026 (schemas/policy/targets.yaml)
TARGET = {False: 0.5, True: 0.2}
Q2 = (dt.datetime(2026, 4, 1, tzinfo=CHINA), dt.datetime(2026, 7, 1, tzinfo=CHINA))
Q1 = (dt.datetime(2026, 1, 1, tzinfo=CHINA), Q2[0])
Q2_2025 = (dt.datetime(2025, 4, 1, tzinfo=CHINA), dt.datetime(2025, 7, 1, tzinfo=CHINA))
LOCAL_PLANS = [["file", "notify", "penalize"], ["file"], ["decline"], []]
NONLOCAL_PLANS = [["file", "hand_over"], ["file"], []]


def zhichao(monkeypatch, dsn, *args):
    monkeypatch.setenv("ZHICHAO_PG_DSN", dsn)
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def spread(registry, vehicles, start, days, seed, first):
    config = SimConfig(
        vehicles=vehicles,
        seed=seed,
        start=start,
        first_passage=first,
        city_rate_per_s=vehicles / (days * 86400),
        heartbeat_interval_s=6 * 3600,
        overloaded_share=0.3,
        fleet_size=60,  # regulars: repeat offenders among them
        fleet_share=0.4,
    )
    return CitySimulator(config, registry).run()


async def review_some(dsn, verdicts):
    """File, notify, penalize, decline and hand over cases as the plans say; returns the
    actions done per passage id."""
    store = await CaseStore(dsn).open()
    by_passage = {v["passage_id"]: v for v in verdicts}
    done: dict[str, list[str]] = {}
    turn = {True: 0, False: 0}
    try:
        for case in await store.queue(limit=100_000):
            v = by_passage[case["passage_id"]]
            plans = LOCAL_PLANS if v["local"] else NONLOCAL_PLANS
            plan = plans[turn[v["local"]] % len(plans)]
            turn[v["local"]] += 1
            for version, action in enumerate(plan, start=1):
                role, actor, fields, notice = "reviewer", "审核员甲", {}, None
                if action == "decline":
                    fields = {"reason_code": "insufficient_evidence"}
                elif action == "penalize":
                    fields = {"fine_cny": v["fine_cny"]}
                elif action == "notify":
                    html = f"<p>{case['case_id']}</p>"
                    notice = SimpleNamespace(
                        notice_no=f"T-{case['case_id']}",
                        sha256=hashlib.sha256(html.encode()).hexdigest(),
                        html=html,
                        pdf=b"%PDF-1.7",
                    )
                elif action == "hand_over":
                    role, actor = "system", SYSTEM
                await store.apply(case["case_id"], version, action, actor, role, fields, notice)
            done[case["passage_id"]] = plan
    finally:
        await store.close()
    return done


@pytest.fixture(scope="module")
def stored(tmp_path_factory, registry, postgres):
    import psycopg

    from streams.embedded import postgres_dsn

    work = tmp_path_factory.mktemp("report")
    with psycopg.connect(postgres_dsn(postgres.port), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "t_report"')
        conn.execute('CREATE DATABASE "t_report"')
    dsn = postgres_dsn(postgres.port, "t_report")
    upgrade(dsn)
    mp = pytest.MonkeyPatch()
    verdicts = []
    try:
        for name, traffic in (
            ("this", spread(registry, 2500, Q1[0], 181, 51, 0)),
            ("last", spread(registry, 500, Q2_2025[0], 91, 52, 50_000_000)),
        ):
            write_traffic(traffic, work / name, "avro")
            out = work / f"{name}.jsonl"
            files = map(str, sorted((work / name).glob("*.avro")))
            done = zhichao(mp, dsn, "replay", "--out", str(out), "--to-db", *files)
            assert done.exit_code == 0, done.output
            verdicts += [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        actions = asyncio.run(review_some(dsn, verdicts))
        made = zhichao(mp, dsn, "report", "--quarter", "2026Q2", "--out", str(work / "out"))
        assert made.exit_code == 0, made.output
    finally:
        mp.undo()
    sheets = {
        ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)]
        for ws in load_workbook(work / "out" / "report.xlsx").worksheets
    }
    return SimpleNamespace(
        verdicts=verdicts, actions=actions, sheets=sheets, out=work / "out", dsn=dsn
    )


def china(v) -> dt.datetime:
    return dt.datetime.fromtimestamp(v["ts_us"] / 1e6, CHINA)


def within(v, bounds) -> bool:
    return bounds[0] <= china(v) < bounds[1]


def plate_of(v) -> str:
    return "" if "unidentified" in v["flags"] else (v["plate_front"] or v["plate_rear"])


def keyed(verdicts, bounds, key) -> dict:
    out: dict = defaultdict(Counter)
    for v in verdicts:
        if within(v, bounds):
            c = out[key(v)]
            c["vehicles"] += 1
            c["heavy"] += v["gvw_kg"] >= 3500
            c["overlimit"] += v["verdict"] == "overlimit"
            c["enforceable"] += v["enforceable"]
    return out


def compared(verdicts, key, label, order):
    now = keyed(verdicts, Q2, key)
    before = keyed(verdicts, Q1, key)
    year_ago = keyed(verdicts, Q2_2025, key)

    def change(a, b):
        return round(100 * (a - b) / b, 1) if b else None

    rows = []
    for k in sorted(now, key=lambda k: order(k, now)):
        c, b, y = now[k], before[k]["overlimit"], year_ago[k]["overlimit"]
        rate = round(100 * c["overlimit"] / c["vehicles"], 2)
        rows.append(
            (
                *label(k),
                c["vehicles"],
                c["heavy"],
                c["overlimit"],
                rate,
                c["enforceable"],
                b,
                change(c["overlimit"], b),
                y,
                change(c["overlimit"], y),
            )
        )
    return rows


def test_every_quarter_of_the_simulation_has_traffic(stored):
    for bounds in (Q2, Q1, Q2_2025):
        assert sum(within(v, bounds) for v in stored.verdicts) > 300


def test_the_tables_by_class_road_hour_and_region_equal_a_plain_count(stored, registry):
    v = stored.verdicts
    by_class = compared(v, lambda x: x["vehicle_class"], lambda k: (k,), lambda k, _: k)
    assert stored.sheets["按车型"][1:] == by_class

    def road(x):
        r = registry.sites[x["site_id"]].road
        return (r, registry.roads[r].name)

    assert stored.sheets["按路线"][1:] == compared(v, road, lambda k: k, lambda k, _: k[0])
    by_hour = compared(
        v, lambda x: china(x).hour, lambda h: (f"{h:02d}:00–{h:02d}:59",), lambda k, _: k
    )
    assert stored.sheets["按时段"][1:] == by_hour

    def region(x):
        plate = plate_of(x)
        return (plate[:2], ("local" if x["local"] else "nonlocal") if plate else "unread")

    names = {"local": "本地", "nonlocal": "外地", "unread": "未识别"}
    by_region = compared(
        v,
        region,
        lambda k: (k[0] or "未识别", names[k[1]]),
        lambda k, now: (-now[k]["overlimit"], k[1], k[0]),
    )
    assert stored.sheets["按车籍地"][1:] == by_region
    assert stored.sheets["按车型"][0][0] == "车型"


def test_each_sites_rate_is_held_to_its_years_target(stored, registry):
    counts = keyed(stored.verdicts, Q2, lambda x: x["site_id"])
    want = []
    for site_id in sorted(counts):
        s, c = registry.sites[site_id], counts[site_id]
        rate = round(100 * c["overlimit"] / c["vehicles"], 2)
        target = TARGET[s.expressway]
        want.append(
            (
                site_id,
                s.name,
                s.road,
                "是" if s.expressway else "否",
                c["vehicles"],
                c["overlimit"],
                rate,
                target,
                "达标" if rate <= target else "未达标",
            )
        )
    assert stored.sheets["各站点超限率与年度目标"][1:] == want
    assert any(s.expressway for s in map(registry.sites.get, counts))


def test_repeat_offenders_equal_a_plain_count(stored):
    seen = defaultdict(list)
    for v in stored.verdicts:
        if within(v, Q2) and v["verdict"] == "overlimit" and plate_of(v):
            seen[plate_of(v)].append(v)
    want = sorted(
        (
            (
                plate,
                len(vs),
                len({v["site_id"] for v in vs}),
                min(map(china, vs)).strftime("%Y-%m-%d %H:%M"),
                max(map(china, vs)).strftime("%Y-%m-%d %H:%M"),
                # as the store keeps it: a 32-bit float (Avro float, PostgreSQL real)
                round(max(float(str(np.float32(v["overload_pct"]))) for v in vs), 2),
            )
            for plate, vs in seen.items()
            if len(vs) >= 2
        ),
        key=lambda r: (-r[1], r[0]),
    )
    assert stored.sheets["多次超限车辆（2 次及以上）"][1:] == want
    assert len(want) >= 5 and want[0][1] >= 3  # the regulars' habitual overloaders


def test_the_case_kpis_equal_a_count_of_what_review_did(stored):
    q2 = {
        v["passage_id"]: v
        for v in stored.verdicts
        if within(v, Q2) and v["enforceable"] and v["verdict"] == "overlimit"
    }
    acts = {p: stored.actions[p] for p in q2}
    filed = [p for p, a in acts.items() if "file" in a]
    local = [p for p in filed if q2[p]["local"]]
    nonlocal_ = [p for p in filed if not q2[p]["local"]]
    penalized = [p for p in filed if "penalize" in acts[p]]
    handed = [p for p in nonlocal_ if "hand_over" in acts[p]]
    settled = [p for p in local if "penalize" in acts[p]]

    def row(label, part, whole, target):
        value = round(100 * len(part) / len(whole), 1) if whole else None
        met = "—" if value is None or target is None else ("达标" if value >= target else "未达标")
        return (label, len(part), len(whole), value, target, met)

    assert stored.sheets["案件指标"][1:] == [
        ("案件", len(q2), None, None, None, "—"),
        row("有效案件处罚率", penalized, filed, 70.0),
        row("本地车辆处置率", settled, local, 90.0),
        row("异地抄告率", handed, nonlocal_, None),
    ]
    assert penalized and handed  # the count has something to compare


def test_the_html_and_pdf_carry_the_tables_and_their_charts(stored):
    html = (stored.out / "report.html").read_text(encoding="utf-8")
    assert "超限治理分析通报（2026Q2）" in html and "按车籍地" in html
    for key in ("by_class", "by_road", "by_hour", "by_region", "site_rates"):
        png = stored.out / f"{key}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{png.name}"' in html
    assert (stored.out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert "设备在线率" in html  # what the store does not hold yet is said, not left out silently


@pytest.mark.parametrize(
    ("make", "label", "before", "year_ago"),
    [
        (lambda: Period.quarter("2026Q1"), "2026Q1", "2025Q4", "2025Q1"),
        (lambda: Period.month("2026-03"), "2026-03", "2026-02", "2025-03"),
        (lambda: Period.month("2024-02"), "2024-02", "2024-01", "2023-02"),
        (lambda: Period.days("2026-03-01", "2026-03-10"), "2026-03-01–2026-03-10", None, None),
    ],
)
def test_periods_and_the_periods_they_are_compared_with(make, label, before, year_ago):
    p = make()
    assert p.label == label
    if before:
        assert p.previous().label == before and p.year_before().label == year_ago
    else:
        assert p.previous().start == dt.date(2026, 2, 19)
        assert p.previous().end == p.start
    assert p.previous().end == p.start


@pytest.mark.parametrize("text", ["2026Q5", "2026-1", "Q1 2026"])
def test_a_period_that_cannot_be_read_says_how_to_write_it(text):
    with pytest.raises(PeriodError, match="应写作"):
        Period.quarter(text) if "Q" in text else Period.month(text)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Period.quarter("0000Q1"),
        lambda: Period.quarter("9999Q4"),
        lambda: Period.month("0001-01"),
        lambda: Period.days("9999-12-31", "9999-12-31"),
        lambda: Period.days("0001-01-01", "2026-01-01"),
    ],
)
def test_a_year_far_out_is_a_clear_error(make):
    with pytest.raises(PeriodError, match="年份应在 2000 至 2100 之间"):
        make()


def test_a_range_ending_on_29_february_keeps_its_days_a_year_before():
    one = Period.days("2024-02-29", "2024-02-29").year_before()
    assert (one.start, one.end, one.label) == (
        dt.date(2023, 2, 28),
        dt.date(2023, 3, 1),
        "2023-02-28",
    )
    feb = Period.days("2024-02-01", "2024-02-28").year_before()
    assert (feb.start, feb.end) == (dt.date(2023, 2, 1), dt.date(2023, 3, 1))


def test_report_refuses_two_periods_and_an_unknown_site(monkeypatch, stored, tmp_path):
    both = zhichao(
        monkeypatch,
        stored.dsn,
        "report",
        "--quarter",
        "2026Q2",
        "--month",
        "2026-04",
        "--out",
        str(tmp_path),
    )
    assert both.exit_code == 2 and "one of --quarter" in both.output
    site = zhichao(
        monkeypatch,
        stored.dsn,
        "report",
        "--quarter",
        "2026Q2",
        "--site",
        "NOWHERE",
        "--out",
        str(tmp_path),
    )
    assert site.exit_code == 1 and "不在登记册中" in site.output


def test_track_gives_every_sighting_of_a_plate_in_time_order_with_its_case(
    monkeypatch, stored, registry
):
    plates = Counter(plate_of(v) for v in stored.verdicts if plate_of(v))
    plate, n = plates.most_common(1)[0]
    assert n >= 3
    done = zhichao(monkeypatch, stored.dsn, "track", plate, "--json")
    assert done.exit_code == 0, done.output
    got = [json.loads(line) for line in done.output.splitlines()]
    mine = sorted(
        (v for v in stored.verdicts if plate_of(v) == plate),
        key=lambda v: (v["ts_us"], v["passage_id"]),
    )
    assert [g["sighting_id"] for g in got] == [v["passage_id"] for v in mine]
    assert [g["site_name"] for g in got] == [registry.sites[v["site_id"]].name for v in mine]
    assert [g["case_id"] is not None for g in got] == [
        v["enforceable"] and v["verdict"] == "overlimit" for v in mine
    ]
    first = china(mine[0]).date().isoformat()
    one_day = zhichao(
        monkeypatch, stored.dsn, "track", plate, "--from", first, "--to", first, "--json"
    )
    assert len(one_day.output.splitlines()) == sum(
        china(v).date().isoformat() == first for v in mine
    )
    text = zhichao(monkeypatch, stored.dsn, "track", plate)
    assert text.exit_code == 0 and registry.sites[mine[0]["site_id"]].name in text.output


def test_track_refuses_what_is_not_a_plate(monkeypatch, stored):
    done = zhichao(monkeypatch, stored.dsn, "track", "???")
    assert done.exit_code == 1 and "不是车牌号码" in done.output


def test_sources_are_ranked_by_the_over_limit_truck_days_that_start_near_them(stored, registry):
    """The rule of schemas/policy/sources.yaml counted by hand: a truck's (3.5 t and more)
    first weighing of a China-time day at a site within 6 km of a source on its road makes that
    truck-day the source's; over-limit if any weighing of that day was; 5 in a week calls for
    supervision."""
    counts, weekly = source_truck_days(stored.verdicts, registry, *Q2)
    want = []
    for sid in sorted(counts, key=lambda s: (-counts[s]["over"], s)):
        s, c, w = registry.sources[sid], counts[sid], weekly[sid]
        top = max(w, key=lambda k: (w[k], k)) if w and max(w.values()) else None
        want.append(
            (
                s.name,
                s.kind,
                s.road,
                c["trucks"],
                c["over"],
                round(100 * c["over"] / c["trucks"], 2) if c["trucks"] else None,
                top,
                w[top] if top else 0,
                "、".join(k for k in sorted(w) if w[k] >= 5) or "—",
            )
        )
    assert stored.sheets["源头企业"][1:] == want
    assert all(row[4] > 0 for row in want)  # every source loads some over-limit trucks
    assert any(row[8] != "—" for row in want)  # and one of them calls for supervision


RULE = "version: s\nattribution: {{max_km: {km}}}\nsupervision: {{weekly_overlimit_trucks: {n}}}\n"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (RULE.format(km=0, n=5), "max_km"),
        (RULE.format(km=5, n=2.5), "weekly_overlimit_trucks"),
        ("version: s\nattribution: {max_km: 5}\n", "cannot read"),
    ],
)
def test_a_source_rule_that_is_wrong_says_what_is_wrong(tmp_path, text, says):
    from sinks.records.sources import SourceRulesError, load_source_rules

    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourceRulesError, match=says):
        load_source_rules(path)
