"""Writes that wait out an outage of their store.

While a store is down the round that wanted to write holds still: its inputs stay
unacknowledged (a crash now loses nothing) and the agent reads no further, so Kafka keeps what
comes next. A write that is retried is harmless because every sink's write is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sinks.redis_sink import REDIS_DOWN
from streams.metrics import Metrics

log = logging.getLogger(__name__)
FIRST_DELAY_S = 0.2
LONGEST_DELAY_S = 5.0
RETELL_S = 10.0  # how often a long outage is logged again


class Retry:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(
        self,
        sink_name: str,
        write: Callable[[], Awaitable[Any]],
        unavailable: tuple[type[BaseException], ...] = REDIS_DOWN,
        store: str = "Redis",
    ) -> Any:
        """``write()``'s result, once ``store`` has taken it; ``unavailable`` are the errors
        that mean it is down (any other error is the write's own and is raised)."""
        delay, down_since, told = FIRST_DELAY_S, None, 0.0
        while True:
            try:
                result = await write()
            except unavailable as exc:
                self.metrics.sink_errors.labels(sink_name).inc()
                if store == "Redis":
                    self.metrics.redis_up.set(0)
                now = time.monotonic()
                if down_since is None:
                    down_since = told = now
                    log.error("%s unavailable (%s): holding the batch, retrying", store, exc)
                elif now - told > RETELL_S:
                    told = now
                    log.error("%s still unavailable after %.0f s", store, now - down_since)
                await asyncio.sleep(delay)
                delay = min(delay * 2, LONGEST_DELAY_S)
                continue
            if down_since is not None:
                log.warning(
                    "%s is back after %.0f s: held writes done",
                    store,
                    time.monotonic() - down_since,
                )
            if store == "Redis":
                self.metrics.redis_up.set(1)
            return result
