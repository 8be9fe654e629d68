"""Simulated officers for the demo: units that answer their orders through the same HTTP API
the officer page uses, with their own tokens — accept after a few seconds, arrive, and report
an outcome with a static re-weigh (复磅) near the WIM weight; toll lanes turn back the trucks of
劝返 orders (reported with the command centre's token). Units left out (``human``) are for
a person at the officer page; their orders wait, and escalate when nobody accepts them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import orjson
import redis.asyncio as aioredis

from schemas.orders import COMMAND_CENTRE
from sinks import constants as K

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OfficerHabits:
    accept_s: tuple[float, float] = (3.0, 20.0)  # uniform seconds to accept
    on_site_s: tuple[float, float] = (5.0, 25.0)  # from accept to the outcome (demo time)
    found_share: float = 0.85  # the truck is stopped; otherwise 未发现
    reweigh_sd: float = 0.03  # static / WIM spread


async def run_officers(
    redis_dsn: str,
    base_url: str,
    tokens: dict[str, str],
    stop: asyncio.Event,
    human: frozenset[str] = frozenset(),
    habits: OfficerHabits = OfficerHabits(),
    seed: int = 1,
) -> None:
    """Answer every new order to a simulated unit until ``stop`` is set."""
    rng = np.random.default_rng(seed)
    client = aioredis.Redis.from_url(redis_dsn)
    tasks: set[asyncio.Task] = set()
    cursor = "$"
    async with aiohttp.ClientSession() as http:
        try:
            while not stop.is_set():
                got = await client.xread({K.ORDER_STREAM: cursor}, count=100, block=1000)
                for _, entries in got or []:
                    for entry_id, fields in entries:
                        cursor = entry_id.decode()
                        if b"order" not in fields:
                            continue
                        order = orjson.loads(fields[b"order"])
                        unit = order["unit_id"]
                        if order["action"] == "refuse_entry" and "command" in tokens:
                            answer = _refuse_entry(http, base_url, tokens["command"], order, rng)
                        elif unit == COMMAND_CENTRE or unit in human or unit not in tokens:
                            continue
                        else:
                            answer = _answer(http, base_url, tokens[unit], order, habits, rng)
                        task = asyncio.create_task(answer)
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            await client.aclose()


async def _post(http: aiohttp.ClientSession, url: str, token: str, body: dict[str, Any]) -> bool:
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        if r.status != 202:
            log.info("simulated officer: %s refused (%d)", body["action"], r.status)
        return r.status == 202


async def _refuse_entry(
    http: aiohttp.ClientSession,
    base_url: str,
    token: str,
    order: dict[str, Any],
    rng: np.random.Generator,
) -> None:
    """The toll lane turns the truck back (劝返), reported by the command centre."""
    await asyncio.sleep(rng.uniform(5.0, 15.0))
    url = f"{base_url}/dashboard/orders/{order['order_id']}"
    await _post(http, url, token, {"action": "outcome", "outcome": "refused_entry"})


async def _answer(
    http: aiohttp.ClientSession,
    base_url: str,
    token: str,
    order: dict[str, Any],
    habits: OfficerHabits,
    rng: np.random.Generator,
) -> None:
    url = f"{base_url}/officer/orders/{order['order_id']}"

    async def say(body: dict[str, Any]) -> bool:
        return await _post(http, url, token, body)

    await asyncio.sleep(rng.uniform(*habits.accept_s))
    if not await say({"action": "accept"}):
        return
    await asyncio.sleep(rng.uniform(*habits.on_site_s) / 2)
    await say({"action": "arrived"})
    await asyncio.sleep(rng.uniform(*habits.on_site_s) / 2)
    if rng.random() < habits.found_share:
        static = order["vehicle"]["gvw_kg"] / max(rng.normal(1.0, habits.reweigh_sd), 0.5)
        await say({"action": "outcome", "outcome": "intercepted", "static_gvw_kg": round(static)})
    else:
        await say({"action": "outcome", "outcome": "not_found"})
