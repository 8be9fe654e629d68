"""Shared fixtures: one simulated city run per session (deterministic by seed)."""

from __future__ import annotations

import hypothesis  # noqa: F401 - imported up front: its plugin imports it late otherwise, and
import pytest  # that late import has crashed CPython 3.11's compiler after a Faust test

from schemas.registry import load_registry
from sim.config import SimConfig
from sim.traffic import CitySimulator


@pytest.fixture(scope="session")
def registry():
    return load_registry()


@pytest.fixture(scope="session")
def city_traffic(registry):
    """2,000 passages of the example city at the default configuration."""
    return CitySimulator(SimConfig(vehicles=2000), registry).run()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL server (Debian's) for the session, on a free loopback port."""
    from sinks.records.migrate import wait_until_up
    from streams.embedded import postgres_dsn, postgres_server

    server = postgres_server(tmp_path_factory.mktemp("postgres")).start()
    try:
        wait_until_up(postgres_dsn(server.port))
        yield server
    finally:
        server.stop()


@pytest.fixture()
def pg_dsn(postgres, request):
    """A fresh, empty database on the session's server, for one test."""
    import re

    import psycopg

    from streams.embedded import postgres_dsn

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    with psycopg.connect(postgres_dsn(postgres.port), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_dsn(postgres.port, name)


@pytest.fixture(scope="module")
def redis_dsn(tmp_path_factory):
    """A real Redis server (Debian's) for a test module, on a free loopback port."""
    from streams.embedded import redis_server

    server = redis_server(tmp_path_factory.mktemp("redis")).start()
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def two_day_verdicts(registry):
    """The same city on two days three days apart: the same trucks come back, so a plate (and
    each non-local 车籍地) has cases on both days."""
    import datetime as dt

    from schemas.policy import load_policy
    from sim.config import ARCHIVE_START
    from streams.stages import decide, measure_passages

    out = []
    for i, start in enumerate((ARCHIVE_START, ARCHIVE_START + dt.timedelta(days=3))):
        config = SimConfig(
            vehicles=300, seed=21, start=start, first_passage=i * 100_000, overloaded_share=0.3
        )
        traffic = CitySimulator(config, registry).run()
        measured, _ = measure_passages(traffic.passages, registry)
        out += decide(measured, traffic.reads, registry, load_policy(registry.policy))
    return out
