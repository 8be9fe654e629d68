"""Weighings and cases in the store of record.

``write_round`` stores a batch of verdicts in one transaction: the over-limit and warning ones
into ``weighings`` (copied into a temporary table, then inserted with ``ON CONFLICT DO NOTHING``,
so a batch delivered again changes nothing), and every enforceable over-limit one that is new
opens a case in 待审核 with its first event. ``apply`` makes one transition of the case state
machine (``schemas.cases``) against the case's row version: the second of two reviewers acting
on one case gets ``CaseConflict`` and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from schemas.cases import CaseRefused, CaseRules, load_case_rules, transition
from schemas.units import US
from sinks.evidence import parse
from sinks.records.migrate import SCHEMA_VERSION, WrongSchema
from sinks.records.traffic import store_traffic
from sinks.seam import NOTHING_WRITTEN, RoundResults, Written

log = logging.getLogger(__name__)
STORED_VERDICTS = ("warning", "overlimit")
SYSTEM = "zhichao"  # the actor of the events the worker itself makes

COLUMNS = (
    "passage_id",
    "weighed_at",
    "site_id",
    "device_id",
    "lane",
    "direction",
    "plate",
    "plate_rear",
    "plate_confidence",
    "is_local",
    "vehicle_class",
    "axle_count",
    "gvw_kg",
    "limit_kg",
    "excess_kg",
    "overload_pct",
    "verdict",
    "enforceable",
    "policy_version",
    "evidence_hash",
    "fine_cny",
    "body",
)
STORE_BATCH = f"""
WITH new AS (
    INSERT INTO weighings ({", ".join(COLUMNS)})
    SELECT {", ".join(COLUMNS)} FROM incoming
    ON CONFLICT (passage_id) DO NOTHING
    RETURNING passage_id, weighed_at, site_id, plate, is_local, verdict, enforceable
), opened AS (
    INSERT INTO cases (passage_id, state, plate, site_id, is_local, weighed_at)
    SELECT passage_id, %(initial)s, plate, site_id, is_local, weighed_at FROM new
    WHERE enforceable AND verdict = 'overlimit'
    ON CONFLICT (passage_id) DO NOTHING
    RETURNING case_id
), events AS (
    INSERT INTO case_events (case_id, actor, role, action, from_state, to_state)
    SELECT case_id, %(actor)s, 'system', 'open', NULL, %(initial)s FROM opened
    RETURNING case_id
)
SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM events)
"""  # noqa: S608 - the column names are this module's own


STORE_EVIDENCE = """
INSERT INTO evidence_records (digest, passage_id, site_id, seq, prev, line)
VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
"""


def evidence_row(passage_id: str, line: bytes | str) -> tuple[Any, ...]:
    """An evidence record as ``evidence_records`` keeps it: the line exactly as sealed, and
    where it sits in its site's chain, read from its body."""
    text = line.decode() if isinstance(line, bytes) else line
    digest, _, _, body = parse(text)
    return (digest, passage_id, body["verdict"]["site_id"], body["seq"], body["prev"], text)


@dataclass(frozen=True)
class StoredEvidence:
    """A case's evidence record as stored, with its neighbours in the chain (None: not stored;
    ``before`` is None too for a chain's first record, ``after`` until a record follows)."""

    line: str | None
    before: str | None
    after: str | None


class CaseConflict(RuntimeError):
    """The case moved on since the version the action was decided on."""

    def __init__(self, case_id: int, version: int, now: int, state: str):
        super().__init__(f"案件 {case_id} 已被他人处理（版本 {version} → {now}，现为 {state}）")
        self.case_id, self.version, self.now, self.state = case_id, version, now, state


class UnknownCase(LookupError):
    pass


@dataclass(frozen=True)
class Stored:
    weighings: int  # stored for the first time
    cases: int  # opened


def weighing_row(v: dict[str, Any]) -> tuple[Any, ...]:
    """A verdict as the row ``weighings`` keeps."""
    return (
        v["passage_id"],
        dt.datetime.fromtimestamp(v["ts_us"] / US, dt.UTC),
        v["site_id"],
        v.get("device_id"),
        v["lane"],
        v["direction"],
        v["plate_front"] or None,
        v["plate_rear"] or None,
        v["plate_confidence"],
        v["local"],
        v["vehicle_class"],
        v["axle_count"],
        v["gvw_kg"],
        v["limit_kg"],
        v["excess_kg"],
        v["overload_pct"],
        v["verdict"],
        v["enforceable"],
        v["policy_version"],
        v.get("evidence_hash") or "",
        v.get("fine_cny"),
        orjson.dumps(v).decode(),
    )


async def _plain_rows(conn: psycopg.AsyncConnection) -> None:
    """A connection goes back to the pool giving tuples again: a reader that asked for dict
    rows must not change what the next user of the connection gets."""
    conn.row_factory = tuple_row


def _event_data(t: Any, schedule: int | None, notice: Any) -> dict[str, Any]:
    """What an event records beyond its states and reason: the penalty and its parties, or
    the notice served."""
    data: dict[str, Any] = {}
    if t.fine_cny is not None:
        data = {"fine_cny": t.fine_cny, "schedule_fine_cny": schedule, **t.parties}
    if t.action == "notify" and notice is not None:
        data = {"notice_no": notice.notice_no, "document_sha256": notice.sha256}
    return data


class CaseStore:
    """The worker's side of the store of record (a ``sinks.seam.RoundSink``)."""

    name = "cases"
    store = "PostgreSQL"
    unavailable = (psycopg.OperationalError, psycopg_pool.PoolTimeout)

    def __init__(self, dsn: str, rules: CaseRules | None = None, max_connections: int = 4):
        self.rules = rules or load_case_rules()
        self.pool = psycopg_pool.AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            open=False,
            timeout=5.0,
            reset=_plain_rows,
        )

    async def open(self) -> CaseStore:
        """Start connecting (in the background: a server that is down is waited for); safe to
        call again on a store that is open."""
        await self.pool.open(wait=False)
        return self

    async def close(self) -> None:
        await self.pool.close()

    async def check_schema(self) -> int:
        """The database's schema version, if this code writes it (``migrate.WrongSchema``)."""
        async with self.pool.connection() as conn:
            try:
                cur = await conn.execute("SELECT coalesce(max(version), 0) FROM zhichao_schema")
                found = (await cur.fetchone())[0]
            except psycopg.errors.UndefinedTable:
                found = 0  # never upgraded
        if found != SCHEMA_VERSION:
            raise WrongSchema(
                f"the store of record is at schema version {found}, this zhichao writes "
                f"{SCHEMA_VERSION}: run `zhichao db upgrade`"
            )
        return found

    async def write_round(self, results: RoundResults) -> Written:
        await self.store_verdicts(results.verdicts)
        return NOTHING_WRITTEN

    async def store_verdicts(
        self, verdicts: list[dict[str, Any]], records: dict[str, bytes | str] | None = None
    ) -> Stored:
        """Store a batch in one transaction; a batch stored before changes nothing.
        ``records``: the evidence records of the batch's enforceable verdicts, by passage id,
        as sealed in their chains (``sinks.evidence.records_of``)."""
        rows = [weighing_row(v) for v in verdicts if v["verdict"] in STORED_VERDICTS]
        if not rows:
            return Stored(0, 0)
        evidence = [evidence_row(p, line) for p, line in (records or {}).items()]
        async with self.pool.connection() as conn, conn.transaction():
            if evidence:
                async with conn.cursor() as cur:
                    await cur.executemany(STORE_EVIDENCE, evidence)
            await conn.execute(
                "CREATE TEMP TABLE incoming (LIKE weighings INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            async with conn.cursor().copy(
                f"COPY incoming ({', '.join(COLUMNS)}) FROM STDIN"
            ) as copy:
                for row in rows:
                    await copy.write_row(row)
            cur = await conn.execute(STORE_BATCH, {"initial": self.rules.initial, "actor": SYSTEM})
            new, opened = await cur.fetchone()
        return Stored(int(new), int(opened))

    async def store_traffic(self, verdicts: list[dict[str, Any]]) -> int:
        """Every verdict's sighting, and the hourly counts of those new (``sinks.records.
        traffic``), in a transaction of its own: a batch stored before changes nothing."""
        async with self.pool.connection() as conn, conn.transaction():
            return await store_traffic(conn, verdicts)

    async def apply(
        self,
        case_id: int,
        version: int,
        action: str,
        actor: str,
        role: str,
        fields: dict[str, Any] | None = None,
        notice: Any = None,
    ) -> dict[str, Any]:
        """Make ``action`` of the case at ``version``; returns the case afterwards. Raises
        ``UnknownCase``, ``CaseRefused`` (not allowed) or ``CaseConflict`` (moved on).
        ``notice``: for ``notify``, the document served (``sinks.records.notices.Notice``),
        kept with the transition or not at all."""
        fields = fields or {}
        async with self.pool.connection() as conn, conn.transaction():
            conn.row_factory = dict_row
            cur = await conn.execute(
                "SELECT c.state, c.version, c.is_local, w.fine_cny FROM cases c "
                "JOIN weighings w USING (passage_id) WHERE case_id = %s FOR UPDATE OF c",
                (case_id,),
            )
            case = await cur.fetchone()
            if case is None:
                raise UnknownCase(f"没有案件 {case_id}")
            if case["version"] != version:
                raise CaseConflict(case_id, version, case["version"], case["state"])
            t = transition(
                self.rules, case["state"], case["is_local"], action, role, fields, case["fine_cny"]
            )
            if action == "notify" and notice is None:
                raise CaseRefused("missing_notice", "告知须附违法行为通知书")
            cur = await conn.execute(
                """UPDATE cases SET state = %s, version = version + 1, updated_at = now(),
                       reviewer = CASE WHEN %s IN ('file', 'decline') THEN %s ELSE reviewer END,
                       reason_code = coalesce(%s, reason_code),
                       fine_cny = coalesce(%s, fine_cny)
                   WHERE case_id = %s AND version = %s
                   RETURNING *""",
                (t.to_state, action, actor, t.reason_code, t.fine_cny, case_id, version),
            )
            after = await cur.fetchone()
            await conn.execute(
                """INSERT INTO case_events
                       (case_id, actor, role, action, from_state, to_state, reason_code, note, data)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    case_id,
                    actor,
                    role,
                    action,
                    t.from_state,
                    t.to_state,
                    t.reason_code,
                    t.note,
                    Jsonb(data) if (data := _event_data(t, case["fine_cny"], notice)) else None,
                ),
            )
            if action == "notify":
                await conn.execute(
                    "INSERT INTO notices (case_id, issued_by, document_sha256, notice_no, "
                    "html, pdf) VALUES (%s, %s, %s, %s, %s, %s)",
                    (case_id, actor, notice.sha256, notice.notice_no, notice.html, notice.pdf),
                )
            if t.fine_cny is not None:
                names = ["case_id", "decided_by", "fine_cny", "schedule_fine_cny", *t.parties]
                await conn.execute(
                    sql.SQL("INSERT INTO penalties ({}) VALUES ({})").format(
                        sql.SQL(", ").join(map(sql.Identifier, names)),
                        sql.SQL(", ").join(sql.Placeholder() * len(names)),
                    ),
                    (case_id, actor, t.fine_cny, case["fine_cny"], *t.parties.values()),
                )
        return after

    async def evidence(self, passage_id: str) -> StoredEvidence:
        """A weighing's evidence record and its neighbours in its chain, as stored."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT e.line,
                       (SELECT b.line FROM evidence_records b
                         WHERE b.site_id = e.site_id AND b.digest = e.prev),
                       (SELECT a.line FROM evidence_records a
                         WHERE a.site_id = e.site_id AND a.prev = e.digest LIMIT 1)
                   FROM evidence_records e WHERE e.passage_id = %s""",
                (passage_id,),
            )
            row = await cur.fetchone()
        return StoredEvidence(*row) if row else StoredEvidence(None, None, None)

    async def notice(self, case_id: int) -> dict[str, Any] | None:
        """The notice served on a case (the latest, should there be several)."""
        async with self.pool.connection() as conn:
            conn.row_factory = dict_row
            cur = await conn.execute(
                "SELECT * FROM notices WHERE case_id = %s ORDER BY notice_id DESC LIMIT 1",
                (case_id,),
            )
            return await cur.fetchone()

    async def case(self, case_id: int) -> dict[str, Any]:
        """A case with its weighing and its events, oldest first."""
        async with self.pool.connection() as conn:
            conn.row_factory = dict_row
            cur = await conn.execute(
                "SELECT c.*, w.body AS verdict FROM cases c JOIN weighings w USING (passage_id) "
                "WHERE case_id = %s",
                (case_id,),
            )
            case = await cur.fetchone()
            if case is None:
                raise UnknownCase(f"没有案件 {case_id}")
            cur = await conn.execute(
                "SELECT * FROM case_events WHERE case_id = %s ORDER BY event_id", (case_id,)
            )
            case["events"] = await cur.fetchall()
        return case

    async def queue(
        self,
        state: str = "pending_review",
        site_id: str | None = None,
        limit: int = 100,
        day: dt.date | None = None,
        local: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Cases in ``state``, oldest weighing first (the review queue); ``day`` is a day in
        China time, ``local`` keeps the local (True) or non-local (False) vehicles' cases."""
        async with self.pool.connection() as conn:
            conn.row_factory = dict_row
            cur = await conn.execute(
                """SELECT * FROM cases WHERE state = %(state)s
                     AND (%(site)s::text IS NULL OR site_id = %(site)s)
                     AND (%(day)s::date IS NULL
                          OR (weighed_at AT TIME ZONE 'Asia/Shanghai')::date = %(day)s)
                     AND (%(local)s::boolean IS NULL OR is_local = %(local)s)
                   ORDER BY weighed_at, case_id LIMIT %(limit)s""",
                {"state": state, "site": site_id, "day": day, "local": local, "limit": limit},
            )
            return await cur.fetchall()

    async def penalty(self, case_id: int) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            conn.row_factory = dict_row
            cur = await conn.execute("SELECT * FROM penalties WHERE case_id = %s", (case_id,))
            return await cur.fetchone()


__all__ = [
    "CaseConflict",
    "CaseRefused",
    "CaseStore",
    "Stored",
    "StoredEvidence",
    "UnknownCase",
    "evidence_row",
    "weighing_row",
]
