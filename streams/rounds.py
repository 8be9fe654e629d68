"""Rounds of decisions that keep up with the agent without holding it up.

The match agent buffers a batch, then wants a round (``decide_ready``): cut the sites that can
be cut, decide, write, acknowledge. With the deciding done in a helper process
(``streams.decider``) the main thread is free while a round waits for it, so the agent takes and
buffers the next batches meanwhile; when a round ends and batches came in during it, the next
round starts at once and takes all of them. At most ``ahead`` batches are buffered beyond the
round in progress, then the agent waits for it (Kafka keeps the rest)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Rounds:
    def __init__(self, decide: Callable[[], Awaitable[None]], ahead: int = 4) -> None:
        self.decide = decide
        self.ahead = ahead
        self.waiting = 0  # batches buffered since the current round began
        self.task: asyncio.Future | None = None

    async def admitted(self) -> None:
        """A batch is buffered: start a round, or leave it to the next one. A round that
        failed fails the agent here, as it would have done without the overlap."""
        self.waiting += 1
        if self.task is not None and self.task.done():
            task, self.task = self.task, None
            task.result()
        if self.task is None:
            self.task = asyncio.ensure_future(self._run())
            self.task.add_done_callback(self._report)
        elif self.waiting > self.ahead:
            await asyncio.shield(self.task)

    async def _run(self) -> None:
        while self.waiting:
            self.waiting = 0
            await self.decide()

    @staticmethod
    def _report(task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("a round of decisions failed: %r", task.exception())
