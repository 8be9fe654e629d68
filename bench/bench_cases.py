"""The store of record's write rate (``cases_rows_per_s``): ``CaseStore.store_verdicts`` on
batches of 1,024 verdict rows, against a bare ``COPY`` of the same rows into the same schema on
the same server in the same run (``cases_vs_copy``). Smoke size in ``make test``."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from schemas.policy import load_policy
from sinks.records.case_store import COLUMNS, STORED_VERDICTS, CaseStore, weighing_row
from sinks.records.migrate import upgrade, wait_until_up
from streams.embedded import postgres_dsn, postgres_server
from streams.stages import decide, measure_passages

BATCH = 1024  # verdict rows per store_verdicts call: the cases agent's batch
BARE_COPY = f"COPY weighings ({', '.join(COLUMNS)}) FROM STDIN"

Batches = list[list[dict[str, Any]]]


@dataclass(frozen=True)
class Round:
    sink_rows_per_s: float
    copy_rows_per_s: float
    cases_opened: int

    @property
    def ratio(self) -> float:
        return self.sink_rows_per_s / self.copy_rows_per_s


def replicated(verdicts: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` verdicts to store: only over-limit and warning verdicts are stored, about one in
    25 of the city's, so those are repeated, each copy under a fresh ``passage_id``
    (``<passage_id>:r<k>``) that makes it a new row and, if enforceable, a new case."""
    stored = [v for v in verdicts if v["verdict"] in STORED_VERDICTS]
    assert stored, "the simulated city had no over-limit or warning verdict"
    return [
        (v := stored[i % len(stored)]) | {"passage_id": f"{v['passage_id']}:r{i // len(stored)}"}
        for i in range(n)
    ]


def fresh_database(port: int, name: str) -> str:
    """An empty database at the current schema: neither side finds rows already there."""
    with psycopg.connect(postgres_dsn(port), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = postgres_dsn(port, name)
    upgrade(dsn)
    return dsn


def rows_in(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM weighings").fetchone()[0]


async def sink_rate(dsn: str, batches: Batches) -> tuple[float, int]:
    """Rows per second through ``CaseStore.store_verdicts``, and the cases it opened."""
    store = await CaseStore(dsn).open()
    try:
        await store.check_schema()  # connected before the clock starts
        start = time.perf_counter()
        opened = 0
        for batch in batches:
            opened += (await store.store_verdicts(batch)).cases
        elapsed = time.perf_counter() - start
    finally:
        await store.close()
    return sum(map(len, batches)) / elapsed, opened


async def copy_rate(dsn: str, batches: Batches) -> float:
    """Rows per second of a bare ``COPY`` into ``weighings``, one transaction per batch; the
    rows are made outside the clock, so it times the database and the driver only."""
    rows = [[weighing_row(v) for v in batch] for batch in batches]
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        for batch in rows:
            async with conn.transaction(), conn.cursor().copy(BARE_COPY) as copy:
                for row in batch:
                    await copy.write_row(row)
        elapsed = time.perf_counter() - start
    return sum(map(len, rows)) / elapsed


async def measure(port: int, batches: Batches, rounds: int) -> list[Round]:
    """Each round: the sink and the bare copy, each into a database of its own, in turn first."""
    out = []
    for i in range(rounds):
        sink_dsn, copy_dsn = fresh_database(port, f"sink_{i}"), fresh_database(port, f"copy_{i}")
        if i % 2 == 0:
            sink, opened = await sink_rate(sink_dsn, batches)
            copy = await copy_rate(copy_dsn, batches)
        else:
            copy = await copy_rate(copy_dsn, batches)
            sink, opened = await sink_rate(sink_dsn, batches)
        rows = sum(map(len, batches))
        assert rows_in(sink_dsn) == rows_in(copy_dsn) == rows
        with psycopg.connect(postgres_dsn(port), autocommit=True) as conn:
            for name in (f"sink_{i}", f"copy_{i}"):
                conn.execute(f'DROP DATABASE "{name}"')
        out.append(Round(sink, copy, opened))
    return out


@pytest.mark.benchmark(group="cases")
def test_case_store_vs_bare_copy(benchmark, registry, traffic, smoke, tmp_path):
    measured, _ = measure_passages(traffic.passages, registry)
    verdicts = decide(measured, traffic.reads, registry, load_policy(registry.policy))
    rows = replicated(verdicts, (4 if smoke else 100) * BATCH)
    batches = [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]
    rounds = 1 if smoke else 3
    server = postgres_server(tmp_path).start()
    try:
        wait_until_up(postgres_dsn(server.port))
        runs = benchmark.pedantic(
            lambda: asyncio.run(measure(server.port, batches, rounds)), rounds=1, iterations=1
        )
    finally:
        server.stop()
    info = benchmark.extra_info
    info["rows"], info["batch"], info["rounds"] = len(rows), BATCH, rounds
    info["cases_opened"] = runs[0].cases_opened
    info["cases_rows_per_s"] = statistics.median(r.sink_rows_per_s for r in runs)
    info["cases_bare_copy_rows_per_s"] = statistics.median(r.copy_rows_per_s for r in runs)
    info["cases_vs_copy"] = statistics.median(r.ratio for r in runs)
    info["cases_vs_copy_rounds"] = [r.ratio for r in runs]
    print(
        f"\n{len(rows):,} rows in batches of {BATCH:,}: the case sink "
        f"{info['cases_rows_per_s']:,.0f} rows/s, a bare COPY "
        f"{info['cases_bare_copy_rows_per_s']:,.0f} rows/s; ratios "
        + ", ".join(f"{r.ratio:.2f}" for r in runs)
    )
    assert all(r.cases_opened == runs[0].cases_opened > 0 for r in runs)
