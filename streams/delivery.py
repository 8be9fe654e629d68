"""Acknowledgements that wait for a round's messages to reach the broker, without holding up the
next round.

A round of decisions writes Redis, then hands its verdicts, alerts and orders to the producer.
Its inputs may be acknowledged only once the broker has those messages (a crash before that
must read them again), but nothing else in the next round depends on them: waiting for the
broker's answer inside the round held the match agent still for a produce round trip per round,
and on a busy embedded broker those are long (stop 27, a 12,000-vehicle backlog: 5.6–5.7k
against 6.2–6.3k messages/s with the wait moved here, alternating runs).

So each round's acknowledgements wait here, in order of rounds, at most ``most`` rounds deep;
past that the round waits for the oldest, which keeps the unacknowledged inputs bounded. A
delivery that fails fails the next round that comes here, as it failed its own round before.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

ROUNDS_IN_FLIGHT = 4


class AcksAfterDelivery:
    def __init__(self, most: int = ROUNDS_IN_FLIGHT) -> None:
        self.most = most
        self._rounds: deque[asyncio.Future] = deque()

    def __len__(self) -> int:
        return len(self._rounds)

    async def after(self, deliveries: Iterable[Any], events: Iterable[Any]) -> None:
        """Acknowledge ``events`` (None is skipped) once every one of ``deliveries`` is done."""
        while self._rounds and self._rounds[0].done():
            self._rounds.popleft().result()  # a failed delivery raises here
        self._rounds.append(asyncio.ensure_future(_ack_when_done(list(deliveries), list(events))))
        while len(self._rounds) > self.most:
            await self._rounds.popleft()

    async def drain(self) -> None:
        """Wait for every round's deliveries and acknowledgements."""
        while self._rounds:
            await self._rounds.popleft()


async def _ack_when_done(deliveries: list[Any], events: list[Any]) -> None:
    if deliveries:
        await asyncio.gather(*deliveries)
    for event in events:
        if event is not None:
            event.ack()
