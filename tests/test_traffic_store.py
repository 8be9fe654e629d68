"""Sightings and hourly traffic counts in the store of record, on a real PostgreSQL server: the
hours equal a plain count of the verdicts, a batch stored again (or split differently, or by two
writers at once) changes nothing, and a vehicle the fusion left unidentified is filed under no
plate."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections import Counter

import psycopg
import pytest
from click.testing import CliRunner

from schemas.policy import load_policy
from schemas.registry import CHINA
from sim.config import SimConfig
from sim.output import write_traffic
from sim.traffic import CitySimulator
from sinks.records.case_store import CaseStore
from sinks.records.migrate import upgrade
from sinks.records.traffic import plate_region
from streams.stages import decide, measure_passages
from zhichao.cli import main


@pytest.fixture(scope="module")
def verdicts(registry):
    traffic = CitySimulator(SimConfig(vehicles=600, seed=33), registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    return decide(measured, traffic.reads, registry, load_policy(registry.policy))


def plain_count(verdicts) -> dict[tuple, Counter]:
    """The hours counted directly from the verdicts, without the module under test."""
    hours: dict[tuple, Counter] = {}
    for v in verdicts:
        plate = "" if "unidentified" in v["flags"] else (v["plate_front"] or v["plate_rear"])
        t = dt.datetime.fromtimestamp(v["ts_us"] / 1e6, CHINA).replace(
            minute=0, second=0, microsecond=0
        )
        key = (
            t,
            v["site_id"],
            v["lane"],
            v["direction"],
            v["vehicle_class"],
            plate[:2],
            ("local" if v["local"] else "nonlocal") if plate else "unread",
        )
        c = hours.setdefault(key, Counter())
        c["vehicles"] += 1
        c["heavy"] += v["gvw_kg"] >= 3500
        c["overlimit"] += v["verdict"] == "overlimit"
        c["warnings"] += v["verdict"] == "warning"
        c["enforceable"] += v["enforceable"]
        c["unidentified"] += "unidentified" in v["flags"]
    return hours


def stored_hours(dsn: str) -> dict[tuple, Counter]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT hour, site_id, lane, direction, vehicle_class, plate_region, locality, "
            "vehicles, heavy, overlimit, warnings, enforceable, unidentified FROM traffic_hours"
        ).fetchall()
    names = ("vehicles", "heavy", "overlimit", "warnings", "enforceable", "unidentified")
    return {
        (r[0].astimezone(CHINA), *r[1:7]): Counter(
            {n: x for n, x in zip(names, r[7:], strict=True) if x}
        )
        for r in rows
    }


async def store_in(dsn: str, *batches) -> list[int]:
    store = await CaseStore(dsn).open()
    try:
        return [await store.store_traffic(b) for b in batches]
    finally:
        await store.close()


def test_the_hours_equal_a_plain_count_and_a_batch_stored_again_changes_nothing(pg_dsn, verdicts):
    upgrade(pg_dsn)
    half = len(verdicts) // 2
    new = asyncio.run(store_in(pg_dsn, verdicts[:half], verdicts, verdicts[half - 50 :]))
    assert new == [half, len(verdicts) - half, 0]
    expected = plain_count(verdicts)
    assert stored_hours(pg_dsn) == {k: +c for k, c in expected.items()}
    assert sum(c["overlimit"] for c in expected.values()) > 0  # the city has some to count
    with psycopg.connect(pg_dsn) as conn:
        (n,) = conn.execute("SELECT count(*) FROM sightings").fetchone()
    assert n == len(verdicts)


def test_two_writers_at_once_count_each_sighting_once(pg_dsn, verdicts):
    upgrade(pg_dsn)

    async def both():
        # the same hours from two connections at once, overlapping in half their rows
        return await asyncio.gather(
            store_in(pg_dsn, verdicts[: len(verdicts) * 3 // 4]),
            store_in(pg_dsn, verdicts[len(verdicts) // 4 :]),
        )

    asyncio.run(both())
    assert stored_hours(pg_dsn) == {k: +c for k, c in plain_count(verdicts).items()}


def test_an_unidentified_vehicle_is_filed_under_no_plate(pg_dsn, verdicts):
    upgrade(pg_dsn)
    v = dict(verdicts[0], plate_front="浙D12345", flags=["unidentified"], passage_id="U-1")
    asyncio.run(store_in(pg_dsn, [v]))
    with psycopg.connect(pg_dsn) as conn:
        plate = conn.execute("SELECT plate FROM sightings WHERE sighting_id = 'U-1'").fetchone()
        region, locality = conn.execute(
            "SELECT plate_region, locality FROM traffic_hours"
        ).fetchone()
    assert plate == (None,) and (region, locality) == ("", "unread")


@pytest.mark.parametrize(
    ("plate", "region"),
    [("浙D12345", "浙D"), ("苏E1234挂", "苏E"), ("浙AD12345", "浙A"), ("WJ12345", ""), ("", "")],
)
def test_the_region_of_a_plate_is_its_province_and_authority_letter(plate, region):
    assert plate_region(plate) == region


def zhichao(monkeypatch, dsn, *args):
    monkeypatch.setenv("ZHICHAO_PG_DSN", dsn)
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_replay_to_db_stores_what_the_worker_would_and_db_load_again_changes_nothing(
    monkeypatch, pg_dsn, registry, tmp_path
):
    traffic = CitySimulator(SimConfig(vehicles=300, seed=34), registry).run()
    write_traffic(traffic, tmp_path / "inputs", "avro")
    files = sorted((tmp_path / "inputs").glob("*.avro"))
    upgrade(pg_dsn)
    out = tmp_path / "verdicts.jsonl"
    done = zhichao(
        monkeypatch, pg_dsn, "replay", "--out", str(out), "--to-db", "--json", *map(str, files)
    )
    assert done.exit_code == 0, done.output
    verdicts = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    stored = json.loads(done.output)["stored"]
    assert stored["sightings"] == len(verdicts) == 300
    assert stored["weighings"] == sum(v["verdict"] in ("warning", "overlimit") for v in verdicts)
    assert stored["cases"] == sum(v["enforceable"] for v in verdicts) > 0
    assert stored_hours(pg_dsn) == {k: +c for k, c in plain_count(verdicts).items()}

    again = zhichao(monkeypatch, pg_dsn, "db", "load", str(out))
    assert json.loads(again.output) | {"verdicts": 0} == {
        "verdicts": 0,
        "weighings": 0,
        "cases": 0,
        "sightings": 0,
    }


def test_db_load_refuses_a_line_that_is_not_a_verdict_and_stores_nothing(
    monkeypatch, pg_dsn, verdicts, tmp_path
):
    upgrade(pg_dsn)
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps(v, ensure_ascii=False) for v in verdicts[:3]]
    lines.insert(2, json.dumps({**verdicts[3], "verdict": "maybe"}))
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = zhichao(monkeypatch, pg_dsn, "db", "load", str(bad))
    assert done.exit_code == 1 and f"{bad}:3:" in done.output and "'maybe'" in done.output
    missing = {k: v for k, v in verdicts[0].items() if k != "gvw_kg"}
    bad.write_text(json.dumps(missing) + "\n", encoding="utf-8")
    done = zhichao(monkeypatch, pg_dsn, "db", "load", str(bad))
    assert done.exit_code == 1 and f"{bad}:1: not a verdict" in done.output
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM sightings").fetchone() == (0,)


def test_a_passage_twice_in_one_batch_is_one_sighting(pg_dsn, verdicts):
    upgrade(pg_dsn)
    v = verdicts[0]
    assert asyncio.run(store_in(pg_dsn, [v, v, verdicts[1], v])) == [2]
    assert stored_hours(pg_dsn) == {k: +c for k, c in plain_count(verdicts[:2]).items()}


def test_db_load_refuses_a_file_that_is_not_text(monkeypatch, pg_dsn, tmp_path):
    upgrade(pg_dsn)
    avro = tmp_path / "wim_passages.avro"
    avro.write_bytes(b"Obj\x01\x04\x14avro.codec\x08null\xff\xfe\x00")
    done = zhichao(monkeypatch, pg_dsn, "db", "load", str(avro))
    assert done.exit_code == 1 and "not UTF-8 JSON lines" in done.output
