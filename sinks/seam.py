"""The seam a round's results go through on their way to the stores.

A round of the match agent (or of the batched gateway) ends with verdicts, the camera reads it
took as sightings, the sites' match progress, the evidence records of the enforceable verdicts,
the alerts raised and the interception orders planned. ``RoundResults`` carries them, and every
``RoundSink`` writes them. The primary sink is the live cache (Redis, ``sinks.redis_sink``): its
answer (``Written``) says which alerts and orders are new, and which evidence records could not
be linked into their chains, and the round acts on it. A store of record is a further sink
beside it, given the same results after the primary has written them; the round does not change
when one is added.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from sinks.evidence import Link


@dataclass(frozen=True)
class RoundResults:
    verdicts: list[dict[str, Any]]
    reads: list[dict[str, Any]] = field(default_factory=list)  # camera reads, as sightings
    progress: dict[str, Any] | None = None  # per site: what it has decided (None: unchanged)
    evidence: list[Link] = field(default_factory=list)  # records of the enforceable verdicts
    alerts: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    count: bool = True  # False: the verdicts' counters were written with their gateway batch

    def __bool__(self) -> bool:
        return bool(self.verdicts or self.reads or self.progress)


@dataclass(frozen=True)
class Written:
    new: int  # passages seen for the first time
    appended: int  # evidence records linked into their chains
    lost: list[str]  # passages whose evidence record could not be linked (its chain moved)
    alerts: list[str]  # ids of the alerts written for the first time
    orders: list[str]  # ids of the dispatch orders written (one open per vehicle)


NOTHING_WRITTEN = Written(0, 0, [], [], [])


class RoundSink(Protocol):
    name: str  # for the metrics
    store: str  # what it writes to, for the logs ("Redis", "PostgreSQL")
    unavailable: tuple[type[BaseException], ...]  # errors that mean "down: wait and retry"

    async def write_round(self, results: RoundResults) -> Written:
        """Write ``results`` atomically and idempotently: a round written again after a crash
        changes nothing."""
        ...


class PrimarySink(RoundSink, Protocol):
    """The live cache, which also answers what it holds."""

    async def verdicts_of(self, passage_ids: list[str]) -> list[dict[str, Any]]:
        """The verdicts written for these passages, as first written; none for a passage
        without one."""
        ...


# how the worker runs a write: retries it while the sink is unavailable, inputs unacknowledged
Retry = Callable[
    [str, Callable[[], Awaitable[Any]], tuple[type[BaseException], ...]], Awaitable[Any]
]


class RoundSinks:
    """The primary sink and the others, written in that order with the same results."""

    def __init__(self, primary: PrimarySink, others: tuple[RoundSink, ...] = ()) -> None:
        self.primary = primary
        self.others = others

    async def write(self, results: RoundResults, retry: Retry) -> Written:
        written = await _write(self.primary, results, retry)
        for sink in self.others:
            await _write(sink, results, retry)
        return written

    async def verdicts_of(self, passage_ids: list[str], retry: Retry) -> list[dict[str, Any]]:
        """The verdicts the primary holds for these passages, as first written."""
        primary = self.primary
        return await retry(
            primary.name,
            partial(primary.verdicts_of, passage_ids),
            primary.unavailable,
            primary.store,
        )


async def _write(sink: RoundSink, results: RoundResults, retry: Retry) -> Written:
    return await retry(sink.name, partial(sink.write_round, results), sink.unavailable, sink.store)
