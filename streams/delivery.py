"""Acknowledgements that wait for a round's messages to reach the broker, without holding up the
next round.

A round of decisions writes Redis, then hands its verdicts, alerts and orders to the producer.
Its inputs may be acknowledged only once the broker has those messages (a crash before that
must read them again), but nothing in the next round depends on them: waiting for the broker's
answer inside the round held the match agent still for up to three produce round trips a round,
and on the embedded broker, busy sending 5 MB fetch answers, those are long. Stop 27, a
12,000-vehicle backlog on a fresh stack, four alternating pairs: 5.45–6.86k messages/s (mean
5.93k) with the wait in the round, 5.78–7.04k (mean 6.37k) with it here.

Each round's acknowledgements wait here in a task that is held until it is done (stop 23 tried
acknowledging from unbounded tasks and saw one run stall), at most ``most`` rounds deep; past
that a round waits for the oldest, which keeps the unacknowledged inputs bounded. A delivery
that fails fails the next round that comes here, as it failed its own round before.
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
