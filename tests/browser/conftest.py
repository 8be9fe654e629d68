"""A live stack for the browser tests: broker, Redis, one worker serving the pages, tokens for
the command centre and every unit, simulated traffic starting now, and Debian's Chromium driven
by Playwright (no browser is downloaded)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from schemas.registry import CHINA
from schemas.topics import ensure_topics
from sim.config import SimConfig
from sim.publish import events_of
from sim.traffic import CitySimulator
from sinks import constants as K
from streams.embedded import embedded_stack, free_port
from tests.integration.helpers import publish_events
from zhichao.screenshots import CHROMIUM as CHROMIUM_PATH
from zhichao.screenshots import CHROMIUM_ARGS
from zhichao.up import issue_demo_tokens, login_url, start_worker, stop_worker, wait_ready

CHROMIUM = Path(CHROMIUM_PATH)
PARTITIONS = 2


class Live:
    def __init__(self, stack, web_port: int, tokens: dict[str, str], client, log_path: Path):
        self.stack, self.web_port, self.tokens, self.redis = stack, web_port, tokens, client
        self.log_path = log_path

    def url(self, who: str) -> str:
        return login_url(self.web_port, self.tokens[who])

    def orders(self) -> list[dict]:
        import orjson

        return [
            orjson.loads(f[b"order"]) for _, f in self.redis.xrange(K.ORDER_STREAM) if b"order" in f
        ]

    def order(self, order_id: str) -> dict:
        import orjson

        return orjson.loads(self.redis.get(K.ORDER_KEY.format(order_id=order_id)))

    def wait(self, what, timeout_s: float = 60.0, every_s: float = 0.2):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            got = what()
            if got:
                return got
            time.sleep(every_s)
        raise AssertionError(f"not within {timeout_s:.0f} s: {what.__doc__ or what}")


@pytest.fixture(scope="module")
def live(tmp_path_factory, registry):
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make setup` installs it")
    work = tmp_path_factory.mktemp("browser")
    with embedded_stack(work) as stack:
        asyncio.run(ensure_topics(stack.bootstrap, PARTITIONS))
        web_port = free_port()
        worker = start_worker(
            stack,
            PARTITIONS,
            work / "worker.log",
            # bypass roads are read up to 15 min after the traffic published now
            extra_env={"ZHICHAO_ACCEPT_TIMEOUT_S": "900", "ZHICHAO_MAX_EVENT_AHEAD_S": "3600"},
            web_port=web_port,
        )
        try:
            asyncio.run(wait_ready(stack, lambda _: None, worker))
            tokens = asyncio.run(issue_demo_tokens(stack, registry))
            client = redis.Redis.from_url(stack.redis_dsn)
            yield Live(stack, web_port, tokens, client, work / "worker.log")
        finally:
            stop_worker(worker)


def publish_traffic(live: Live, registry, vehicles: int = 160, seed: int = 7):
    """Simulated traffic whose event times start now (interception plans are timed from now),
    rich in over-limit trucks, covered plates and bypassers; returns it (with its truth)."""
    config = SimConfig(
        seed=seed,
        vehicles=vehicles,
        start=dt.datetime.now(CHINA),
        overloaded_share=0.4,
        coverer_share=0.15,
        bypasser_share=0.15,
    )
    traffic = CitySimulator(config, registry).run()
    events = events_of(traffic)
    # Playwright's sync API keeps an event loop on this thread: publish from another one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, publish_events(events, live.stack.bootstrap, PARTITIONS)).result()
    return traffic


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
