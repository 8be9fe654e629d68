"""Running a Lua script with many arguments: packed by hiredis (C) instead of redis-py's
Python packer, which costs about a microsecond per argument — the sink scripts take thousands
per batch. Same semantics as ``redis.asyncio`` ``Script.__call__``: EVALSHA, loading the script
when the server does not know it; a connection that failed mid-command is dropped, and
connection errors reach the caller (the agents wait out a Redis outage)."""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.exceptions import NoScriptError


class Script:
    def __init__(self, client: Any, source: str):
        self.client = client
        self.source = source
        self.sha = client.register_script(source).sha

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        packed = hiredis.pack_command(("EVALSHA", self.sha, len(keys), *keys, *args))
        pool = self.client.connection_pool
        conn = await pool.get_connection()
        try:
            try:
                await conn.send_packed_command(packed)
                return await conn.read_response()
            except NoScriptError:
                await conn.send_command("SCRIPT", "LOAD", self.source)
                await conn.read_response()
                await conn.send_packed_command(packed)
                return await conn.read_response()
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)


def lua_key(template: str, **parts: str) -> str:
    """A key of ``sinks.constants`` as a Lua expression, so that scripts build their keys from
    the one definition: ``lua_key("zc:evidence:{site_id}", site_id="site")`` is
    ``'zc:evidence:' .. site``; a key without fields is a quoted literal."""
    pieces = []
    for literal, field, _, _ in string.Formatter().parse(template):
        if "'" in literal or "\\" in literal:
            raise ValueError(f"key template {template!r} needs escaping for Lua")
        if literal:
            pieces.append(f"'{literal}'")
        if field is not None:
            if field not in parts:
                raise ValueError(f"key template {template!r}: no Lua expression for {{{field}}}")
            pieces.append(parts[field])
    return " .. ".join(pieces) or "''"
