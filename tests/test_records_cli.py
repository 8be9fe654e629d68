"""``zhichao db`` and ``zhichao cases`` against a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner

from schemas.policy import load_policy
from sim.config import SimConfig
from sim.traffic import CitySimulator
from sinks.records.case_store import CaseStore
from sinks.records.migrate import SCHEMA_VERSION
from streams.stages import decide, measure_passages
from zhichao.cli import main


def zhichao(monkeypatch, dsn, *args):
    monkeypatch.setenv("ZHICHAO_PG_DSN", dsn)
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_db_upgrade_then_cases_list_and_show(monkeypatch, pg_dsn, registry):
    before = zhichao(monkeypatch, pg_dsn, "db", "version")
    assert json.loads(before.output) == {"database": 0, "zhichao": SCHEMA_VERSION}
    up = zhichao(monkeypatch, pg_dsn, "db", "upgrade")
    assert up.exit_code == 0 and "applied 0001" in up.output
    assert "applied" not in zhichao(monkeypatch, pg_dsn, "db", "upgrade").output

    traffic = CitySimulator(SimConfig(vehicles=200, seed=4), registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    verdicts = decide(measured, traffic.reads, registry, load_policy(registry.policy))

    async def store():
        s = await CaseStore(pg_dsn).open()
        try:
            return await s.store_verdicts(verdicts)
        finally:
            await s.close()

    stored = asyncio.run(store())
    listed = zhichao(monkeypatch, pg_dsn, "cases", "list")
    lines = [json.loads(line) for line in listed.output.splitlines()]
    assert len(lines) == stored.cases == sum(v["enforceable"] for v in verdicts) > 0
    shown = json.loads(
        zhichao(monkeypatch, pg_dsn, "cases", "show", str(lines[0]["case_id"])).output
    )
    assert shown["events"][0]["to_state"] == "pending_review"
    assert shown["verdict"]["enforceable"] is True


def test_clear_errors_without_a_database_or_case(monkeypatch, pg_dsn):
    monkeypatch.delenv("ZHICHAO_PG_DSN", raising=False)
    none = CliRunner().invoke(main, ["db", "upgrade"])
    assert none.exit_code == 1 and "ZHICHAO_PG_DSN" in none.output
    zhichao(monkeypatch, pg_dsn, "db", "upgrade")
    missing = CliRunner().invoke(main, ["cases", "show", "12345"])
    assert missing.exit_code == 1 and "没有案件 12345" in missing.output
    bad = CliRunner().invoke(main, ["cases", "list", "--state", "nonsense"])
    assert bad.exit_code == 2 and "unknown state" in bad.output
