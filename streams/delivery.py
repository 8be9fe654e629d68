"""Acknowledgements that wait for a round's messages to reach the broker, without holding up the
next round.

A round of decisions writes Redis, then hands its verdicts, alerts and orders to the producer.
Its inputs may be acknowledged only once the broker has those messages (a crash before that
must read them again), but nothing in the next round depends on them: waiting for the broker's
answer inside the round would hold the match agent still for up to three produce round trips,
and on a broker busy sending large fetch answers those are long (docs/performance.md, "Levers
tried").

Each round's acknowledgements wait here in a task that is held until it is done (tasks that
nobody awaits, without a bound, have been seen to stall a run), at most ``most`` rounds deep
(``acks_rounds_in_flight``); past that a round waits for the oldest, which keeps the
unacknowledged inputs bounded. A delivery
that fails fails the next round that comes here, as it would have failed its own round.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

from schemas.settings import Settings

log = logging.getLogger(__name__)


class AcksAfterDelivery:
    def __init__(self, most: int = Settings.acks_rounds_in_flight) -> None:
        self.most = most
        self._rounds: deque[asyncio.Future] = deque()

    async def after(self, deliveries: Iterable[Any], events: Iterable[Any]) -> None:
        """Acknowledge ``events`` (None is skipped) once every one of ``deliveries`` is done."""
        while self._rounds and self._rounds[0].done():
            self._rounds.popleft().result()  # a failed delivery raises here
        task = asyncio.ensure_future(_ack_when_done(list(deliveries), list(events)))
        task.add_done_callback(_report)
        self._rounds.append(task)
        while len(self._rounds) > self.most:
            await self._rounds.popleft()


async def _ack_when_done(deliveries: list[Any], events: list[Any]) -> None:
    if deliveries:
        await asyncio.gather(*deliveries)
    for event in events:
        if event is not None:
            event.ack()


def _report(task: asyncio.Future) -> None:
    """The operator hears of a failed delivery at once, even if no round comes after it."""
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "a round's messages were not delivered (%r): its inputs stay unacknowledged and are "
            "read again after a restart",
            task.exception(),
        )
