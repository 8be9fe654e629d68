"""``zhichao token issue`` and ``zhichao up`` read the registry from the settings
(``ZHICHAO_REGISTRY_PATH``), as the worker does: a unit of another city's registry gets a
token the pages accept, and a unit the registry lacks is refused before anything is written."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis
from click.testing import CliRunner

from schemas.registry import EXAMPLE_CITY, load_registry
from sinks import constants as K
from sinks.web import access
from zhichao.cli import main

OTHER_UNIT = "U-HZ-09"  # the example city's U-KQ-01, renamed


@pytest.fixture
def other_city(tmp_path, monkeypatch, redis_dsn):
    """Settings that name another city's registry and the throw-away Redis, which starts empty."""
    text = EXAMPLE_CITY.read_text(encoding="utf-8")
    assert text.count("U-KQ-01") == 1
    path = tmp_path / "other-city.yaml"
    path.write_text(text.replace("U-KQ-01", OTHER_UNIT), encoding="utf-8")
    assert OTHER_UNIT in load_registry(path).units
    monkeypatch.setenv("ZHICHAO_REGISTRY_PATH", str(path))
    monkeypatch.setenv("ZHICHAO_REDIS_DSN", redis_dsn)
    redis.Redis.from_url(redis_dsn).delete(K.TOKENS_KEY)
    return path


def whose(redis_dsn: str, token: str) -> access.Principal | None:
    async def ask() -> access.Principal | None:
        client = aioredis.Redis.from_url(redis_dsn)
        try:
            return await access.who(client, token)
        finally:
            await client.aclose()

    return asyncio.run(ask())


def test_a_unit_of_the_settings_registry_gets_a_token_the_pages_accept(other_city, redis_dsn):
    result = CliRunner().invoke(main, ["token", "issue", "--unit", OTHER_UNIT])
    assert result.exit_code == 0, result.output
    principal = whose(redis_dsn, result.output.strip())
    assert principal is not None
    assert (principal.role, principal.unit_id) == ("unit", OTHER_UNIT)


@pytest.mark.parametrize("unit", ["U-NOWHERE-1", "U-KQ-01"])  # in neither; only the example's
def test_a_unit_the_registry_lacks_is_refused_and_nothing_is_written(other_city, redis_dsn, unit):
    result = CliRunner().invoke(main, ["token", "issue", "--unit", unit])
    assert result.exit_code == 2
    assert f"unknown unit(s) {unit} in the registry {other_city}" in result.output
    assert OTHER_UNIT in result.output  # what it does have
    assert redis.Redis.from_url(redis_dsn).hlen(K.TOKENS_KEY) == 0


def test_up_checks_its_human_units_against_the_settings_registry(other_city):
    """Refused before any broker or Redis is started."""
    result = CliRunner().invoke(main, ["up", "--for", "1", "--human", "U-KQ-01"])
    assert result.exit_code == 2
    assert f"unknown unit(s) U-KQ-01 in the registry {other_city}" in result.output


def test_a_registry_that_cannot_be_read_is_an_error_message(tmp_path, monkeypatch):
    monkeypatch.setenv("ZHICHAO_REGISTRY_PATH", str(tmp_path / "missing.yaml"))
    result = CliRunner().invoke(main, ["token", "issue", "--unit", OTHER_UNIT])
    assert result.exit_code == 1
    assert "cannot read registry" in result.output and "missing.yaml" in result.output
