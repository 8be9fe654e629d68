"""When each new order reaches the page that shows it, for ``zhichao up``'s latency figure: a
unit's order on that unit's officer page (执法终端), a command-centre order (劝返 at a toll lane
included) on the dashboard (指挥中心), read from the same server-sent events the pages read, with
the pages' own tokens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp
import orjson

from schemas.orders import COMMAND_CENTRE

log = logging.getLogger(__name__)
RECONNECT_S = 0.5


async def watch_pages(
    base_url: str,
    tokens: dict[str, str],
    units: list[str],
    arrived: dict[str, float],
    stop: asyncio.Event,
) -> None:
    """Until ``stop``: ``arrived[order_id]`` = wall clock its first plan (escalation 0) reached
    its page. ``tokens`` has the command centre's (``"command"``) and each unit's."""
    feeds = [(f"{base_url}/dashboard/events", tokens["command"], COMMAND_CENTRE)]
    feeds += [(f"{base_url}/officer/events", tokens[u], u) for u in units]
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        tasks = [asyncio.create_task(_follow(http, *feed, arrived)) for feed in feeds]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def _follow(
    http: aiohttp.ClientSession, url: str, token: str, page: str, arrived: dict[str, float]
) -> None:
    """Read one page's events, again after a dropped connection (from the last event seen)."""
    headers = {"Authorization": f"Bearer {token}"}
    last_id: str | None = None
    while True:
        try:
            async with http.get(
                url, headers={**headers, **({"Last-Event-ID": last_id} if last_id else {})}
            ) as response:
                response.raise_for_status()
                kind = b""
                async for raw in response.content:
                    line = raw.rstrip(b"\r\n")
                    if line.startswith(b"id: "):
                        last_id = line[4:].decode()
                    elif line.startswith(b"event: "):
                        kind = line[7:]
                    elif line.startswith(b"data: ") and kind == b"order":
                        order = orjson.loads(line[6:])
                        if order["unit_id"] == page and order["escalation"] == 0:
                            arrived.setdefault(order["order_id"], time.time())
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("page feed %s dropped (%s): reconnecting", url, exc)
        await asyncio.sleep(RECONNECT_S)
