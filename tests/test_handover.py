"""异地抄告 on a real PostgreSQL server: a batch per 车籍地 of the filed non-local cases, its two
files and their hash, the answer that closes it, and nothing recorded when a file cannot be
written; then the ``zhichao handover`` and ``zhichao cases export`` commands."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from collections import defaultdict

import psycopg
import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from sinks.records import handover as H
from sinks.records.case_store import CaseStore
from sinks.records.handover import (
    AlreadyAnswered,
    UnknownHandover,
    check_region,
    hand_over,
    record_answer,
)
from sinks.records.migrate import upgrade
from zhichao.cli import main

ACTOR = "抄告员丙"


@pytest.fixture(scope="module")
def verdicts(two_day_verdicts):
    return two_day_verdicts


async def filed(store, verdicts):
    """Store the verdicts and file the cases of two non-local regions and two local cases; a
    third region's cases stay in 待审核. Returns {name: [case ids]} and the regions."""
    await store.store_verdicts(verdicts)
    queue = await store.queue(limit=1000)
    by_region = defaultdict(list)
    for case in queue:
        if not case["is_local"]:
            by_region[case["plate"][:2]].append(case["case_id"])
    regions = sorted(r for r, ids in by_region.items() if len(ids) >= 2)
    assert len(regions) >= 3
    local = [c["case_id"] for c in queue if c["is_local"]][:2]
    groups = {
        "target": by_region[regions[0]],
        "other": by_region[regions[1]],
        "pending": by_region[regions[2]],
        "local": local,
    }
    for name in ("target", "other", "local"):
        for case_id in groups[name]:
            await store.apply(case_id, 1, "file", "审核员甲", "reviewer")
    return groups, regions


def with_store(pg_dsn, work):
    upgrade(pg_dsn)

    async def run():
        store = await CaseStore(pg_dsn).open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def test_regions_are_a_province_and_a_letter():
    assert check_region("苏E") == "苏E" and check_region(" 苏ｅ ") == "苏E"
    for bad in ("苏", "苏EE", "XE", "苏1", "苏I", "", "E苏"):
        with pytest.raises(ValueError, match="省份简称加发牌机关字母"):
            check_region(bad)


def test_a_batch_hands_over_one_region_and_its_answer_closes_it(pg_dsn, verdicts, tmp_path):
    out = tmp_path / "抄告"

    async def work(store):
        groups, regions = await filed(store, verdicts)
        with pytest.raises(ValueError, match="车籍地"):
            await hand_over(store, "苏", out, ACTOR)
        batch = await hand_over(store, regions[0], out, ACTOR)
        again = await hand_over(store, regions[0], out, ACTOR)
        local = await hand_over(store, "浙D", out, ACTOR)
        cases = {i: await store.case(i) for ids in groups.values() for i in ids}
        files_before_answer = sorted(p.name for p in out.iterdir())
        answered = await record_answer(
            store, batch.handover_id, "  已收到，转车籍地处理  ", "复核员丁"
        )
        with pytest.raises(AlreadyAnswered, match="已于"):
            await record_answer(store, batch.handover_id, "again", ACTOR)
        with pytest.raises(UnknownHandover, match="没有抄告批次 999"):
            await record_answer(store, 999, "x", ACTOR)
        with pytest.raises(ValueError, match="不能为空"):
            await record_answer(store, batch.handover_id, "  ", ACTOR)
        closed = {i: await store.case(i) for i in groups["target"]}
        listed = await H.handovers(store)
        return (
            groups,
            regions,
            batch,
            again,
            local,
            cases,
            files_before_answer,
            answered,
            closed,
            listed,
        )

    groups, regions, batch, again, local, cases, names, answered, closed, listed = with_store(
        pg_dsn, work
    )
    # one batch of the region's filed non-local cases, and its two files
    assert not batch.empty and batch.region == regions[0]
    assert sorted(batch.case_ids) == sorted(groups["target"])
    stem = f"handover_{regions[0]}_{batch.handover_id}"
    assert names == [f"{stem}.csv", f"{stem}.json"]
    assert (batch.csv_path.name, batch.json_path.name) == (f"{stem}.csv", f"{stem}.json")
    raw = batch.json_path.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == batch.batch_sha256
    doc = json.loads(raw)
    assert (doc["handover_id"], doc["region"], doc["made_by"], doc["case_count"]) == (
        batch.handover_id,
        regions[0],
        ACTOR,
        len(groups["target"]),
    )
    assert "第四十四条" in doc["basis"] and doc["made_at"].endswith("+08:00")
    by_hash = {v["evidence_hash"]: v for v in verdicts if v["enforceable"]}
    for item in doc["cases"]:
        v = by_hash[item["evidence_hash"]]
        assert item["plate"] == v["plate_front"] and item["plate"].startswith(regions[0])
        assert (item["device_id"], item["policy_version"], item["vehicle_class"]) == (
            v["device_id"],
            v["policy_version"],
            v["vehicle_class"],
        )
        assert (item["gvw_kg"], item["limit_kg"]) == (round(v["gvw_kg"], 1), v["limit_kg"])
        assert item["site_id"] == v["site_id"] and item["weighed_at"].endswith("+08:00")
    table = list(csv.reader(io.StringIO(batch.csv_path.read_bytes().decode("utf-8-sig"))))
    assert table[0][:2] == ["案件编号", "车牌"] and "证据摘要（SHA-256）" in table[0]
    assert sorted(int(r[0]) for r in table[1:]) == sorted(groups["target"])
    # each case handed over once, with its event; the others untouched
    for case_id in groups["target"]:
        case = cases[case_id]
        assert (case["state"], case["version"]) == ("handed_over", 3)
        [event] = [e for e in case["events"] if e["action"] == "hand_over"]
        assert (event["actor"], event["role"], event["from_state"], event["to_state"]) == (
            ACTOR,
            "system",
            "filed",
            "handed_over",
        )
        assert event["data"] == {"handover_id": batch.handover_id}
    for name, state in (("other", "filed"), ("local", "filed"), ("pending", "pending_review")):
        assert {cases[i]["state"] for i in groups[name]} == {state}
        assert all(e["action"] != "hand_over" for i in groups[name] for e in cases[i]["events"])
    # again: nothing more to hand over, and no batch for local vehicles
    assert again.empty and again.handover_id is None and again.json_path is None
    assert "没有待抄告" in again.summary() and local.empty
    # the answer closes the batch's cases
    assert sorted(answered.closed) == sorted(groups["target"]) and answered.skipped == ()
    for case in closed.values():
        assert (case["state"], case["version"]) == ("closed", 4)
        last = case["events"][-1]
        assert (last["action"], last["actor"], last["note"], last["to_state"]) == (
            "answered",
            "复核员丁",
            "已收到，转车籍地处理",
            "closed",
        )
    [row] = listed
    assert (row["handover_id"], row["region"], row["cases"], row["answer"]) == (
        batch.handover_id,
        regions[0],
        len(groups["target"]),
        "已收到，转车籍地处理",
    )
    assert row["states"] == {"closed": len(groups["target"])}
    assert row["batch_sha256"] == batch.batch_sha256 and row["answered_at"] is not None


def test_a_batch_whose_file_cannot_be_written_is_not_recorded(
    pg_dsn, verdicts, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    write = H._write_new

    def full_disk(path, data):
        if path.suffix == ".json":
            raise OSError(28, "No space left on device")
        write(path, data)

    async def work(store):
        groups, regions = await filed(store, verdicts)
        monkeypatch.setattr(H, "_write_new", full_disk)
        with pytest.raises(OSError, match="No space left"):
            await hand_over(store, regions[0], out, ACTOR)
        blocked = tmp_path / "a-file"
        blocked.write_text("not a directory")
        monkeypatch.setattr(H, "_write_new", write)
        with pytest.raises(OSError):
            await hand_over(store, regions[0], blocked, ACTOR)
        return groups, [await store.case(i) for i in groups["target"]]

    groups, cases = with_store(pg_dsn, work)
    assert list(out.iterdir()) == []  # the CSV written first was taken back
    assert {c["state"] for c in cases} == {"filed"} and {c["version"] for c in cases} == {2}
    with psycopg.connect(pg_dsn) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM handovers), (SELECT count(*) FROM handover_cases), "
            "(SELECT count(*) FROM case_events WHERE action = 'hand_over')"
        ).fetchone()
    assert counts == (0, 0, 0)


def zhichao(monkeypatch, dsn, *args):
    monkeypatch.setenv("ZHICHAO_PG_DSN", dsn)
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_handover_and_export_commands(pg_dsn, verdicts, tmp_path, monkeypatch):
    groups, regions = with_store(pg_dsn, lambda store: filed(store, verdicts))
    out = tmp_path / "batches"
    made = zhichao(
        monkeypatch, pg_dsn, "handover", "--region", regions[0], "--out", str(out), "--by", ACTOR
    )
    assert made.exit_code == 0, made.output
    batch = json.loads(made.output)
    assert (batch["region"], batch["cases"]) == (regions[0], len(groups["target"]))
    assert (
        hashlib.sha256(
            (out / f"handover_{regions[0]}_{batch['handover_id']}.json").read_bytes()
        ).hexdigest()
        == batch["batch_sha256"]
    )
    none = json.loads(
        zhichao(monkeypatch, pg_dsn, "handover", "--region", regions[0], "--out", str(out)).output
    )
    assert none["handover_id"] is None and none["cases"] == 0 and "没有待抄告" in none["message"]
    bad = CliRunner().invoke(main, ["handover", "--region", "苏", "--out", str(out)])
    assert bad.exit_code == 2 and "省份简称" in bad.output
    lacking = CliRunner().invoke(main, ["handover", "--region", regions[0]])
    assert lacking.exit_code == 2 and "--out" in lacking.output
    [listed] = [
        json.loads(line)
        for line in zhichao(monkeypatch, pg_dsn, "handover", "list").output.splitlines()
    ]
    assert listed["handover_id"] == batch["handover_id"] and listed["answer"] is None
    answer = zhichao(
        monkeypatch,
        pg_dsn,
        "handover",
        "answer",
        str(batch["handover_id"]),
        "--answer",
        "已处理",
        "--by",
        "复核员丁",
    )
    assert sorted(json.loads(answer.output)["closed"]) == sorted(groups["target"])
    twice = CliRunner().invoke(
        main, ["handover", "answer", str(batch["handover_id"]), "--answer", "x"]
    )
    assert twice.exit_code == 1 and "已于" in twice.output
    unknown = CliRunner().invoke(main, ["handover", "answer", "4242", "--answer", "x"])
    assert unknown.exit_code == 1 and "没有抄告批次 4242" in unknown.output

    xlsx = tmp_path / "register.xlsx"
    done = zhichao(monkeypatch, pg_dsn, "cases", "export", "--out", str(xlsx), "--state", "closed")
    assert done.exit_code == 0 and f"exported {len(groups['target'])} cases" in done.output
    sheet = load_workbook(xlsx)["案件登记"]
    assert [r[1] for r in sheet.iter_rows(min_row=2, values_only=True)] == ["已结案"] * len(
        groups["target"]
    )
    csv_out = tmp_path / "外地.csv"
    done = zhichao(
        monkeypatch,
        pg_dsn,
        "cases",
        "export",
        "--format",
        "csv",
        "--out",
        str(csv_out),
        "--non-local",
        "--plate",
        regions[1],
        "--since",
        "2026-11-20",
        "--until",
        "2026-11-23",
    )
    assert done.exit_code == 0, done.output
    rows = list(csv.reader(io.StringIO(csv_out.read_bytes().decode("utf-8-sig"))))
    assert len(rows) == 1 + len(groups["other"]) and all(
        r[2].startswith(regions[1]) for r in rows[1:]
    )
    wrong = CliRunner().invoke(
        main,
        [
            "cases",
            "export",
            "--out",
            str(csv_out),
            "--since",
            "2026-11-23",
            "--until",
            "2026-11-20",
        ],
    )
    assert wrong.exit_code == 2 and "晚于截止日期" in wrong.output
    no_format = CliRunner().invoke(main, ["cases", "export", "--out", str(tmp_path / "x.txt")])
    assert no_format.exit_code == 2 and "--format" in no_format.output
