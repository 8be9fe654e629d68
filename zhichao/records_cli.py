"""``zhichao db``, ``zhichao cases`` and ``zhichao handover`` (异地抄告): the store of record from
the command line (the database in ``ZHICHAO_PG_DSN``)."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from pathlib import Path

import click
import psycopg

from schemas.settings import Settings


def store_dsn() -> str:
    try:
        dsn = Settings.load().pg_dsn
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if not dsn:
        raise click.ClickException("no store of record: set ZHICHAO_PG_DSN=postgresql://…")
    return dsn


def checked_store() -> str:
    """The store's DSN once it answers at this zhichao's schema version (a clear error if not):
    for a command that would otherwise do its work first and fail at the end."""
    from sinks.records.migrate import WrongSchema, check

    dsn = store_dsn()
    try:
        check(dsn)
    except (WrongSchema, psycopg.Error) as exc:
        raise click.ClickException(str(exc)) from exc
    return dsn


@click.group()
def db() -> None:
    """The store of record's schema (PostgreSQL)."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations the database lacks (safe to run again, and by two at once)."""
    from sinks.records.migrate import SCHEMA_VERSION, WrongSchema, upgrade

    try:
        applied = upgrade(store_dsn())
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
        with psycopg.connect(store_dsn()) as conn:
            version = current_version(conn)
    except psycopg.Error as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({"database": version, "zhichao": SCHEMA_VERSION}))


@db.command("load")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def db_load(files: tuple[Path, ...]) -> None:
    """Store verdict lines (JSON, as `zhichao replay --out` writes them) as the live worker does:
    weighings, cases in 待审核, sightings and hourly counts. Loading again changes nothing."""
    click.echo(json.dumps(load_files(store_dsn(), list(files)), ensure_ascii=False))


def load_files(dsn: str, files: list[Path]) -> dict[str, int]:
    """``zhichao db load``'s work, a clear error for a bad line or a database not upgraded."""
    from dataclasses import asdict

    from sinks.records.load import LoadError, load_verdicts, read_verdicts
    from sinks.records.migrate import WrongSchema

    try:
        loaded = asyncio.run(load_verdicts(dsn, read_verdicts(files)))
    except (LoadError, WrongSchema, psycopg.Error) as exc:
        raise click.ClickException(str(exc)) from exc
    return asdict(loaded)


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
        store = await CaseStore(store_dsn(), max_connections=1).open()
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
        store = await CaseStore(store_dsn(), max_connections=1).open()
        try:
            return await store.case(case_id)
        finally:
            await store.close()

    try:
        case = asyncio.run(shown())
    except UnknownCase as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(case, default=str, ensure_ascii=False, indent=2))


@cases.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xlsx"]),
    default=None,
    help="csv or xlsx (default: from the name of --out)",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--plate", default=None, help="a plate, or a part of one (e.g. 苏E)")
@click.option("--since", default=None, help="first day, YYYY-MM-DD (China time)")
@click.option("--until", default=None, help="last day, YYYY-MM-DD (China time), included")
@click.option("--state", default=None, help="e.g. filed")
@click.option("--site", default=None, help="one site's cases only")
@click.option("--local/--non-local", default=None, help="local or non-local vehicles only")
def cases_export(
    fmt: str | None,
    out: Path,
    plate: str | None,
    since: str | None,
    until: str | None,
    state: str | None,
    site: str | None,
    local: bool | None,
) -> None:
    """The case register (案件登记) as a CSV or Excel file, newest weighing first."""
    from sinks.records.case_store import CaseStore
    from sinks.records.register import (
        EXPORT_LIMIT,
        BadFilter,
        parse_filters,
        search,
        to_csv,
        to_xlsx,
    )

    fmt = fmt or out.suffix.lower().lstrip(".")
    if fmt not in ("csv", "xlsx"):
        raise click.BadParameter("give --format csv|xlsx, or an --out ending in .csv or .xlsx")
    query = {"plate": plate, "since": since, "until": until, "state": state, "site": site}
    query["local"] = None if local is None else ("1" if local else "0")
    try:
        filters = parse_filters(query)
    except BadFilter as exc:
        raise click.UsageError(str(exc)) from exc

    async def found():
        store = await CaseStore(store_dsn(), max_connections=1).open()
        try:
            return await search(store.pool, **filters.as_kwargs(), limit=EXPORT_LIMIT + 1)
        finally:
            await store.close()

    rows = asyncio.run(found())
    if len(rows) > EXPORT_LIMIT:
        raise click.ClickException(f"more than {EXPORT_LIMIT} cases: narrow the filters")
    _write_whole(out, (to_csv if fmt == "csv" else to_xlsx)(rows))
    click.echo(f"exported {len(rows)} cases to {out}")


def _write_whole(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (a temporary name, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {path}: {exc}") from exc


def _me() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "zhichao"


@click.group(invoke_without_command=True)
@click.option("--region", default=None, help="the plates' 车籍地: province and letter, e.g. 苏E")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="the directory the batch's CSV and JSON go to",
)
@click.option("--by", "actor", default=None, help="who hands over (default: this login)")
@click.pass_context
def handover(ctx: click.Context, region: str | None, out: Path | None, actor: str | None) -> None:
    """异地抄告 (62号令 第四十四条、第五十条): hand the filed cases of non-local vehicles over to
    their home region, one batch per run (`--region 苏E --out DIR`), record its answer
    (`answer`), list the batches (`list`)."""
    if ctx.invoked_subcommand is not None:
        if region or out:
            raise click.UsageError("--region and --out make a batch: not with a subcommand")
        return
    if not region or not out:
        raise click.UsageError("a batch needs --region (e.g. 苏E) and --out DIR")
    from sinks.records.case_store import CaseStore
    from sinks.records.handover import check_region, hand_over

    try:
        region = check_region(region)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--region") from exc

    async def made():
        store = await CaseStore(store_dsn(), max_connections=1).open()
        try:
            return await hand_over(store, region, out, actor or _me())
        finally:
            await store.close()

    try:
        batch = asyncio.run(made())
    except OSError as exc:
        raise click.ClickException(f"抄告文件未能写入，批次未登记：{exc}") from exc
    click.echo(
        json.dumps(
            {
                "handover_id": batch.handover_id,
                "region": batch.region,
                "cases": len(batch.case_ids),
                "case_ids": list(batch.case_ids),
                "csv": str(batch.csv_path) if batch.csv_path else None,
                "json": str(batch.json_path) if batch.json_path else None,
                "batch_sha256": batch.batch_sha256,
                "message": batch.summary(),
            },
            ensure_ascii=False,
        )
    )


@handover.command("answer")
@click.argument("handover_id", type=int)
@click.option("--answer", "text", required=True, help="the home region's answer (回复)")
@click.option("--by", "actor", default=None, help="who records it (default: this login)")
def handover_answer(handover_id: int, text: str, actor: str | None) -> None:
    """Record the home region's answer to a batch; it closes the batch's cases."""
    from sinks.records.case_store import CaseStore
    from sinks.records.handover import record_answer

    async def answered():
        store = await CaseStore(store_dsn(), max_connections=1).open()
        try:
            return await record_answer(store, handover_id, text, actor or _me())
        finally:
            await store.close()

    try:
        result = asyncio.run(answered())
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        json.dumps(
            {
                "handover_id": result.handover_id,
                "closed": list(result.closed),
                "skipped": list(result.skipped),
            }
        )
    )


@handover.command("list")
@click.option("--limit", default=100, show_default=True)
def handover_list(limit: int) -> None:
    """The batches, newest first, one JSON line each (with their cases' states)."""
    from sinks.records.case_store import CaseStore
    from sinks.records.handover import handovers

    async def listed():
        store = await CaseStore(store_dsn(), max_connections=1).open()
        try:
            return await handovers(store, limit)
        finally:
            await store.close()

    for batch in asyncio.run(listed()):
        click.echo(json.dumps(batch, default=str, ensure_ascii=False))
