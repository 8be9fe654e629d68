"""异地抄告: filed cases of vehicles registered elsewhere, handed over in one batch to the road
transport authority of their 车籍地 (62号令 第四十四条; 第五十条 as amended in 2021 lets the home
region penalize on the monitoring record), and the answer that closes them.

A batch is one transaction: the ``handovers`` row, its ``handover_cases``, every case's
``hand_over`` transition and its event. The batch's two files (CSV for people, JSON for the
receiving system, whose SHA-256 is kept in ``handovers.batch_sha256``) are written, each to a
temporary name then renamed, before the commit: a batch that cannot be written is not recorded,
and files of a batch whose commit failed are removed. What was handed over once is not selected
again (the case is no longer filed, and ``handover_cases.case_id`` is unique).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from schemas.cases import transition
from schemas.plate_grammar import AUTHORITY_LETTERS, PROVINCES
from sinks.records.case_store import CaseConflict, CaseStore
from sinks.records.register import CHINA

FORMAT = "zhichao.handover/v1"
BASIS = "交通运输部令2016年第62号《超限运输车辆行驶公路管理规定》第四十四条、第五十条"
ACTION, ANSWER = "hand_over", "answered"
ROLE = "system"

SELECT = """
SELECT c.case_id, c.version, c.state, c.is_local, c.passage_id, c.plate, w.plate_rear,
       w.vehicle_class, w.axle_count, c.weighed_at, c.site_id, w.device_id, w.lane, w.direction,
       w.gvw_kg, w.limit_kg, w.excess_kg, w.overload_pct, w.fine_cny AS schedule_fine_cny,
       w.evidence_hash, w.policy_version, c.reviewer
  FROM cases c JOIN weighings w USING (passage_id)
 WHERE c.state = ANY(%(states)s) AND NOT c.is_local AND left(c.plate, 2) = %(region)s
   AND NOT EXISTS (SELECT 1 FROM handover_cases h WHERE h.case_id = c.case_id)
 ORDER BY c.weighed_at, c.case_id
   FOR UPDATE OF c
"""
CSV_COLUMNS = (
    ("case_id", "案件编号"),
    ("plate", "车牌"),
    ("plate_rear", "后车牌"),
    ("vehicle_class", "车型"),
    ("axle_count", "轴数"),
    ("weighed_at", "称重时间"),
    ("site_id", "站点"),
    ("device_id", "称重设备"),
    ("gvw_kg", "总重（千克）"),
    ("limit_kg", "限值（千克）"),
    ("excess_kg", "超限（千克）"),
    ("overload_pct", "超限率（%）"),
    ("schedule_fine_cny", "标准罚款（元）"),
    ("evidence_hash", "证据摘要（SHA-256）"),
    ("policy_version", "执法依据版本"),
    ("passage_id", "通行记录编号"),
)


class UnknownHandover(LookupError):
    pass


class AlreadyAnswered(ValueError):
    pass


@dataclass(frozen=True)
class HandoverBatch:
    """What ``hand_over`` did: ``handover_id`` None (and no files) when nothing was due."""

    region: str
    handover_id: int | None = None
    case_ids: tuple[int, ...] = ()
    csv_path: Path | None = None
    json_path: Path | None = None
    batch_sha256: str | None = None
    made_at: dt.datetime | None = None

    @property
    def empty(self) -> bool:
        return self.handover_id is None

    def summary(self) -> str:
        if self.empty:
            return f"{self.region}：没有待抄告的已立案外地车辆案件"
        return (
            f"抄告批次 {self.handover_id}（{self.region}）：{len(self.case_ids)} 件，"
            f"{self.json_path}，SHA-256 {self.batch_sha256}"
        )


@dataclass(frozen=True)
class Answered:
    handover_id: int
    closed: tuple[int, ...]  # cases closed by the answer
    skipped: tuple[int, ...] = field(default=())  # cases of the batch no longer handed over


def check_region(region: str) -> str:
    """A 车籍地 in canonical form (province abbreviation and authority letter, e.g. 苏E)."""
    text = unicodedata.normalize("NFKC", region or "").strip().upper()
    if len(text) != 2 or text[0] not in PROVINCES or text[1] not in AUTHORITY_LETTERS:
        raise ValueError(f"车籍地应为省份简称加发牌机关字母（如 苏E），而不是 {region!r}")
    return text


def _case(row: dict[str, Any]) -> dict[str, Any]:
    """A case's evidence summary as it travels in the batch."""
    return {
        "case_id": row["case_id"],
        "passage_id": row["passage_id"],
        "plate": row["plate"],
        "plate_rear": row["plate_rear"],
        "vehicle_class": row["vehicle_class"],
        "axle_count": row["axle_count"],
        "weighed_at": row["weighed_at"].astimezone(CHINA).isoformat(),
        "site_id": row["site_id"],
        "device_id": row["device_id"],
        "lane": row["lane"],
        "direction": row["direction"],
        "gvw_kg": round(row["gvw_kg"], 1),
        "limit_kg": round(row["limit_kg"], 1),
        "excess_kg": round(row["excess_kg"], 1),
        "overload_pct": round(row["overload_pct"], 2),
        "schedule_fine_cny": row["schedule_fine_cny"],
        "evidence_hash": row["evidence_hash"],
        "policy_version": row["policy_version"],
        "reviewer": row["reviewer"],
    }


def batch_json(head: dict[str, Any], cases: list[dict[str, Any]]) -> bytes:
    doc = {**head, "format": FORMAT, "basis": BASIS, "case_count": len(cases), "cases": cases}
    return (json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def batch_csv(cases: list[dict[str, Any]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header for _, header in CSV_COLUMNS])
    for case in cases:
        writer.writerow(["" if case[k] is None else case[k] for k, _ in CSV_COLUMNS])
    return out.getvalue().encode("utf-8-sig")


def _write_new(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (temporary file in the same directory, fsync,
    rename); an existing file is never replaced."""
    if path.exists():
        raise FileExistsError(f"抄告文件已存在，不覆盖：{path}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def hand_over(store: CaseStore, region: str, out_dir: Path, actor: str) -> HandoverBatch:
    """Hand over every filed case of a non-local vehicle registered in ``region``: one batch,
    its CSV and JSON in ``out_dir``. Raises ``ValueError`` for a region that is not one."""
    region = check_region(region)
    out_dir = Path(out_dir)
    sources = list(store.rules.actions[ACTION].sources)
    written: list[Path] = []
    try:
        async with store.pool.connection() as conn, conn.transaction():
            conn.row_factory = dict_row
            cur = await conn.execute(SELECT, {"states": sources, "region": region})
            rows = await cur.fetchall()
            if not rows:
                return HandoverBatch(region)
            moves = [
                (r, transition(store.rules, r["state"], r["is_local"], ACTION, ROLE, {}))
                for r in rows
            ]
            cur = await conn.execute(
                "INSERT INTO handovers (region, made_by, batch_sha256) VALUES (%s, %s, '') "
                "RETURNING handover_id, made_at",
                (region, actor),
            )
            head = await cur.fetchone()
            handover_id = head["handover_id"]
            async with conn.cursor() as c:
                await c.executemany(
                    "INSERT INTO handover_cases (handover_id, case_id) VALUES (%s, %s)",
                    [(handover_id, r["case_id"]) for r in rows],
                )
            for r, t in moves:
                await _move(
                    conn, r["case_id"], r["version"], t, actor, {"handover_id": handover_id}
                )
            cases = [_case(r) for r in rows]
            made_at = head["made_at"].astimezone(CHINA)
            doc = batch_json(
                {
                    "handover_id": handover_id,
                    "region": region,
                    "made_at": made_at.isoformat(),
                    "made_by": actor,
                },
                cases,
            )
            sha = hashlib.sha256(doc).hexdigest()
            out_dir.mkdir(parents=True, exist_ok=True)
            stem = f"handover_{region}_{handover_id}"
            json_path, csv_path = out_dir / f"{stem}.json", out_dir / f"{stem}.csv"
            for path, data in ((csv_path, batch_csv(cases)), (json_path, doc)):
                _write_new(path, data)
                written.append(path)
            await conn.execute(
                "UPDATE handovers SET batch_sha256 = %s WHERE handover_id = %s",
                (sha, handover_id),
            )
    except BaseException:
        for path in written:  # the batch was not recorded: its files must not go out
            path.unlink(missing_ok=True)
        raise
    return HandoverBatch(
        region,
        handover_id,
        tuple(r["case_id"] for r in rows),
        csv_path,
        json_path,
        sha,
        made_at,
    )


async def _move(
    conn: Any, case_id: int, version: int, t: Any, actor: str, data: dict[str, Any]
) -> None:
    cur = await conn.execute(
        "UPDATE cases SET state = %s, version = version + 1, updated_at = now() "
        "WHERE case_id = %s AND version = %s",
        (t.to_state, case_id, version),
    )
    if cur.rowcount != 1:  # the rows are locked: only a bug gets here, and it undoes all
        raise CaseConflict(case_id, version, -1, t.from_state)
    await conn.execute(
        """INSERT INTO case_events (case_id, actor, role, action, from_state, to_state, note, data)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (case_id, actor, ROLE, t.action, t.from_state, t.to_state, t.note, Jsonb(data)),
    )


async def record_answer(store: CaseStore, handover_id: int, answer: str, actor: str) -> Answered:
    """The home region's answer to a batch: kept on the batch, and it closes each of the
    batch's cases still handed over (as the 'answered' transition, the answer as its note)."""
    answer = (answer or "").strip()
    if not answer:
        raise ValueError("抄告回复内容不能为空")
    async with store.pool.connection() as conn, conn.transaction():
        conn.row_factory = dict_row
        cur = await conn.execute(
            "SELECT handover_id, answered_at FROM handovers WHERE handover_id = %s FOR UPDATE",
            (handover_id,),
        )
        batch = await cur.fetchone()
        if batch is None:
            raise UnknownHandover(f"没有抄告批次 {handover_id}")
        if batch["answered_at"] is not None:
            when = batch["answered_at"].astimezone(CHINA).strftime("%Y-%m-%d %H:%M")
            raise AlreadyAnswered(f"抄告批次 {handover_id} 已于 {when} 回复，不再重复登记")
        await conn.execute(
            "UPDATE handovers SET answered_at = now(), answer = %s WHERE handover_id = %s",
            (answer, handover_id),
        )
        cur = await conn.execute(
            "SELECT c.case_id, c.version, c.state, c.is_local FROM handover_cases h "
            "JOIN cases c USING (case_id) WHERE h.handover_id = %s ORDER BY c.case_id "
            "FOR UPDATE OF c",
            (handover_id,),
        )
        closed, skipped = [], []
        for r in await cur.fetchall():
            if r["state"] not in store.rules.actions[ANSWER].sources:
                skipped.append(r["case_id"])
                continue
            t = transition(store.rules, r["state"], r["is_local"], ANSWER, ROLE, {"note": answer})
            await _move(conn, r["case_id"], r["version"], t, actor, {"handover_id": handover_id})
            closed.append(r["case_id"])
    return Answered(handover_id, tuple(closed), tuple(skipped))


async def handovers(store: CaseStore, limit: int = 100) -> list[dict[str, Any]]:
    """The latest batches, newest first, with how many of their cases are in each state."""
    async with store.pool.connection() as conn:
        conn.row_factory = dict_row
        cur = await conn.execute(
            """SELECT h.handover_id, h.region, h.made_at, h.made_by, h.batch_sha256,
                      h.answered_at, h.answer,
                      (SELECT count(*) FROM handover_cases x
                        WHERE x.handover_id = h.handover_id) AS cases,
                      (SELECT coalesce(jsonb_object_agg(s.state, s.n), '{}')
                         FROM (SELECT c.state, count(*) AS n FROM handover_cases x
                                 JOIN cases c USING (case_id)
                                WHERE x.handover_id = h.handover_id GROUP BY c.state) s
                      ) AS states
                 FROM handovers h ORDER BY h.handover_id DESC LIMIT %s""",
            (limit,),
        )
        return await cur.fetchall()


__all__ = [
    "AlreadyAnswered",
    "Answered",
    "HandoverBatch",
    "UnknownHandover",
    "check_region",
    "hand_over",
    "handovers",
    "record_answer",
]
