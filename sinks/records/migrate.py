"""Versioned SQL migrations of the store of record.

``migrations/NNNN_name.sql`` are applied in order, each in its own transaction, and recorded in
``zhichao_schema``; ``zhichao db upgrade`` applies those a database lacks. A worker checks the
version at start and refuses a database that is behind (it would write into tables that are not
there yet) or ahead (written by a newer zhichao, whose meaning this one does not know).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from importlib import resources

import psycopg

VERSION_TABLE = "zhichao_schema"
UPGRADE_LOCK = 0x7A686963  # advisory lock: two upgrades at once run one after the other
NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class WrongSchema(RuntimeError):
    """The database is not at the version this zhichao writes."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    folder = resources.files("sinks.records").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        m = NAME.match(entry.name)
        if m:
            found.append(Migration(int(m[1]), m[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n: {[m.version for m in found]}")
    return found


SCHEMA_VERSION = len(migrations())  # the version this code writes


def current_version(conn: psycopg.Connection) -> int:
    """The database's version: 0 when no migration was ever applied."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()[0]
    if not exists:
        return 0
    return conn.execute(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}").fetchone()[0]  # noqa: S608


def upgrade(dsn: str) -> list[Migration]:
    """Apply the migrations the database lacks; returns those applied (none when current)."""
    applied = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (UPGRADE_LOCK,))
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        version = current_version(conn)
        if version > SCHEMA_VERSION:
            raise WrongSchema(_ahead(version))
        for m in migrations()[version:]:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (UPGRADE_LOCK,))
                if current_version(conn) >= m.version:  # another upgrade applied it meanwhile
                    continue
                conn.execute(m.sql.encode())
                conn.execute(
                    f"INSERT INTO {VERSION_TABLE} (version, name) VALUES (%s, %s)",  # noqa: S608
                    (m.version, m.name),
                )
            applied.append(m)
    return applied


def check(dsn: str) -> int:
    """The database's version, if it is the one this code writes; ``WrongSchema`` otherwise."""
    with psycopg.connect(dsn) as conn:
        version = current_version(conn)
    if version < SCHEMA_VERSION:
        raise WrongSchema(
            f"the database at {_where(dsn)} is at schema version {version}, this zhichao "
            f"writes version {SCHEMA_VERSION}: run `zhichao db upgrade` first"
        )
    if version > SCHEMA_VERSION:
        raise WrongSchema(_ahead(version))
    return version


def wait_until_up(dsn: str, timeout_s: float = 30.0) -> None:
    """Until the server takes connections (a server just started is still recovering)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _ahead(version: int) -> str:
    return (
        f"the database is at schema version {version}, newer than this zhichao's "
        f"{SCHEMA_VERSION}: upgrade zhichao, not the database"
    )


def _where(dsn: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
