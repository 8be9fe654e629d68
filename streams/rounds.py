"""Rounds of decisions that keep up with the agent without holding it up.

The match agent buffers a batch, then wants a round (``decide_ready``): cut the sites that can
be cut, decide, write, acknowledge. With the deciding done in a helper process
(``streams.decider``) the main thread is free while a round waits for it, so the agent takes and
buffers the next batches meanwhile; when a round ends and batches came in during it, the next
round starts at once and takes all of them. At most ``ahead`` batches are buffered beyond the
round in progress, then the agent waits for it (Kafka keeps the rest).

A round's writes (Redis, alerts, orders, verdicts to Kafka, acknowledgements) wait for Redis and
the broker more than they compute, so the next round is cut and decided meanwhile
(``WrittenInOrder``): rounds are still written one after the other, in the order decided."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
Record = dict[str, Any]


@dataclass
class DecidedRound:
    """What a round decided, for its writes: verdicts with the evidence records of the
    enforceable ones; ``ahead``: provisional verdicts (预判, orders only); ``poison``: (input
    token, reason) of vehicles that could not be decided; ``reads``: sightings to write;
    ``progress``: per site, what is decided after it; ``tokens`` and ``released``: the inputs to
    acknowledge once all of it is written."""

    verdicts: list[Record] = field(default_factory=list)
    sealed: list[Any] = field(default_factory=list)
    ahead: list[Record] = field(default_factory=list)
    poison: list[tuple[Any, str]] = field(default_factory=list)
    reads: list[Record] = field(default_factory=list)
    progress: dict[str, Any] = field(default_factory=dict)
    tokens: list[Any] = field(default_factory=list)
    released: list[Any] = field(default_factory=list)

    def add(self, verdicts: list[Record], sealed: list[Any]) -> None:
        self.verdicts += verdicts
        self.sealed += sealed


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


class WrittenInOrder:
    """Rounds decided one at a time and written in the order decided, each round's writes
    overlapping the next round's deciding, never more than one round behind: ``run`` holds
    its turn until the previous round is written.

    A round whose writes failed fails the next ``run``, and no later round is written: what a
    round writes (a site's progress) passes what the failed one left unwritten, and a worker
    restarted after that would take those vehicles for decided."""

    def __init__(self) -> None:
        self.turn = asyncio.Lock()  # the agent and the timer take turns
        self.last: asyncio.Future | None = None  # the last round's writes

    async def run(self, decide: Callable[[], Awaitable[Any]], write: Callable[[Any], Awaitable]):
        async with self.turn:
            previous = self.last
            decided = await decide()
            self.last = asyncio.ensure_future(self._write_after(previous, write, decided))
            self.last.add_done_callback(self._report)
            if previous is not None:
                await previous

    async def drain(self) -> None:
        """Until the last round is written (raises what its writes raised)."""
        async with self.turn:
            if self.last is not None:
                await self.last

    @staticmethod
    async def _write_after(previous: asyncio.Future | None, write, decided: Any) -> None:
        if previous is not None:
            await previous
        await write(decided)

    @staticmethod
    def _report(task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("writing a round of verdicts failed: %r", task.exception())
