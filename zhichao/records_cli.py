"""``zhichao db`` and ``zhichao cases``: the store of record from the command line (the database
in ``ZHICHAO_PG_DSN``)."""

from __future__ import annotations

import asyncio
import json

import click
import psycopg

from schemas.settings import Settings


def _dsn() -> str:
    try:
        dsn = Settings.load().pg_dsn
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if not dsn:
        raise click.ClickException("no store of record: set ZHICHAO_PG_DSN=postgresql://…")
    return dsn


@click.group()
def db() -> None:
    """The store of record's schema (PostgreSQL)."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations the database lacks (safe to run again, and by two at once)."""
    from sinks.records.migrate import SCHEMA_VERSION, WrongSchema, upgrade

    try:
        applied = upgrade(_dsn())
    except (WrongSchema, psycopg.Error) as exc:
        raise click.ClickException(str(exc)) from exc
    for m in applied:
        click.echo(f"applied {m.version:04d} {m.name}")
    click.echo(f"schema version {SCHEMA_VERSION}: current")


@db.command("version")
def db_version() -> None:
    """The database's schema version and the one this zhichao writes."""
    from sinks.records.migrate import SCHEMA_VERSION, current_version

    try:
        with psycopg.connect(_dsn()) as conn:
            version = current_version(conn)
    except psycopg.Error as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({"database": version, "zhichao": SCHEMA_VERSION}))


@click.group()
def cases() -> None:
    """Cases (案件) in the store of record."""


@cases.command("list")
@click.option("--state", default="pending_review", show_default=True, help="e.g. filed")
@click.option("--site", default=None, help="one site's cases only")
@click.option("--limit", default=100, show_default=True)
def cases_list(state: str, site: str | None, limit: int) -> None:
    """Cases in a state, oldest weighing first, one JSON line each."""
    from schemas.cases import load_case_rules
    from sinks.records.case_store import CaseStore

    if state not in load_case_rules().states:
        raise click.BadParameter(f"unknown state {state!r}", param_hint="--state")

    async def listed():
        store = await CaseStore(_dsn(), max_connections=1).open()
        try:
            return await store.queue(state, site, limit)
        finally:
            await store.close()

    for case in asyncio.run(listed()):
        click.echo(json.dumps(case, default=str, ensure_ascii=False))


@cases.command("show")
@click.argument("case_id", type=int)
def cases_show(case_id: int) -> None:
    """One case with its weighing and every event of its history."""
    from sinks.records.case_store import CaseStore, UnknownCase

    async def shown():
        store = await CaseStore(_dsn(), max_connections=1).open()
        try:
            return await store.case(case_id)
        finally:
            await store.close()

    try:
        case = asyncio.run(shown())
    except UnknownCase as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(case, default=str, ensure_ascii=False, indent=2))
