"""Sorting a batch of input events by kind: WIM passages, controller vehicles, camera reads, and
what cannot be used (with a reason code for the dead-letter topic): undecodable, a schema that
does not belong on an input topic, an event time too far from now; and how far the agent has
read each input partition (``ReadPositions``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import schemas
from streams.validation import Clock


@dataclass
class Intake:
    """Decoded records of one batch, each with the event it came from (its ack token)."""

    passages: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    vehicles: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    reads: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    bad: list[tuple[Any, str, str]] = field(default_factory=list)  # event, reason, message

    def stamps(self) -> Iterator[tuple[int, str]]:
        """(event time, device) of every usable record."""
        for record, _ in self.passages + self.vehicles:
            yield record["ts_us"], record["device_id"]
        for record, _ in self.reads:
            yield record["ts_us"], record["camera_id"]


def of_generation(events: list[Any], generation: int) -> list[Any]:
    """The events fetched in the consumer's current generation (or by no consumer at all).

    A take fills its batch before a rebalance and hands it over after it; what was fetched
    earlier belongs to partitions forgotten in the rebalance and is read again from the
    committed offsets. Deciding it now would move a site's clock past the inputs still to come.
    """
    return [e for e in events if e.message.generation_id in (generation, None)]


def sort_events(events: list[Any], clock: Clock | None = None) -> Intake:
    intake = Intake()
    for event in events:
        try:
            name, record = schemas.decode_any_wire(event.value)
        except schemas.DecodeError as exc:
            intake.bad.append((event, "undecodable", str(exc)))
            continue
        kind = schemas.KIND_OF_SCHEMA.get(name)
        if kind not in schemas.MATCH_KINDS:
            intake.bad.append((event, "wrong_schema", f"{name} on {event.message.topic}"))
            continue
        late = clock.problem(record["ts_us"]) if clock else None
        if late:
            intake.bad.append((event, *late))
            continue
        getattr(intake, kind).append((record, event))
    return intake


class ReadPositions:
    """Per input partition, the offset of the last record the match agent buffered; with the
    broker's high watermark, how far the agent is behind on it (``lag``: 0 is read to its end,
    which lets the partition vouch for its sites' time, ``streams.vouching``).

    Only records of the consumer's current generation move it, and a revoked partition is
    forgotten: if it comes back it is read again from its committed offset, and until the agent
    has buffered that far it is behind, not read to its end."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], int] = {}

    def buffered(self, events: list[Any], generation: int) -> None:
        for event in of_generation(events, generation):
            self._last[(event.message.topic, event.message.partition)] = event.message.offset

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        for tp in partitions:
            self._last.pop(tp, None)

    def lag(self, tp: tuple[str, int], highwater: int | None) -> int | None:
        """Records in the log beyond the last one buffered; None before the first fetch."""
        if highwater is None:
            return None
        return max(highwater - self._last.get(tp, -1) - 1, 0)
