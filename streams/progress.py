"""How far the worker has read: the broker's time (the clock of the wait for reads), each input
partition's lag behind its log, which partitions vouch for their sites' time, and which inputs
belong to the consumer's current generation (after a rebalance, the others are left to be read
again by their new owner)."""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted

from streams.intake import ReadPositions, of_generation
from streams.matching import BACKLOG_RECORDS, MatchBuffers
from streams.metrics import Metrics
from streams.vouching import LatestSeen

log = logging.getLogger(__name__)
Lags = dict[tuple[str, int], tuple[int | None, float | None]]
LONGEST_TICK_S = 2.0  # a tick longer than this (a stalled loop) counts as this long


class BrokerTime:
    """Seconds during which the broker answered: the clock of the wait for reads."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._last = time.monotonic()

    def tick(self, answered: bool) -> None:
        now = time.monotonic()
        if answered:
            self.seconds += min(now - self._last, LONGEST_TICK_S)
        self._last = now

    def now(self) -> float:
        return self.seconds


class Progress:
    def __init__(
        self,
        app: faust.App,
        input_topics: set[str],
        buffers: MatchBuffers,
        positions: ReadPositions,
        latest: LatestSeen,
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.input_topics = input_topics
        self.buffers = buffers
        self.positions = positions
        self.latest = latest
        self.metrics = metrics

    def partition_lags(self) -> Lags:
        """Per assigned partition: records fetched or in the log beyond the last one the agent
        buffered, as of the broker's last answer, and when that answer came (wall clock);
        None before the first fetch."""
        consumer = self.app.consumer
        try:
            assignment = consumer.assignment()
        except ConsumerNotStarted:  # agents driven by test_context have no consumer
            return {}
        lags: Lags = {}
        for tp in assignment:
            fetched_s = consumer.last_fetched_s(tp)  # before the highwater (see there)
            lag = self.positions.lag((tp.topic, tp.partition), consumer.highwater(tp))
            lags[(tp.topic, tp.partition)] = (lag, fetched_s)
        return lags

    def input_progress(self) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
        """The input partitions this worker has not read to their end, and those it has; the
        ones far behind (a backlog) become ``buffers.backlogged``. A partition read to its end
        is complete up to the newest time read on two partitions before its fetch was answered
        (``streams.vouching``)."""
        buffers = self.buffers
        lagging, caught_up = set(), set()
        buffers.backlogged = set()
        for tp, (lag, fetched_s) in self.partition_lags().items():
            if tp[0] not in self.input_topics:
                continue
            (caught_up if lag == 0 else lagging).add(tp)
            if lag is None or lag > BACKLOG_RECORDS:
                buffers.backlogged.add(tp)
            seen_by_then = None if lag != 0 or fetched_s is None else self.latest.before(fetched_s)
            if seen_by_then is not None:
                buffers.vouch(tp, seen_by_then)
        self.latest.note(time.time(), buffers.latest())
        return lagging, caught_up

    def current_generation(self, events: list[Any]) -> list[Any]:
        """The events of the consumer's current generation; the others were fetched before a
        rebalance and are left to be read again."""
        fresh = of_generation(events, self.app.consumer_generation_id)
        if len(fresh) < len(events):
            self.metrics.stale_events.inc(len(events) - len(fresh))
            log.info(
                "rebalance: %d inputs fetched before it are left to be read again",
                len(events) - len(fresh),
            )
        return fresh

    def topic_lags(self) -> dict[str, int]:
        lag: dict[str, int] = {}
        for (topic, _), (n, _) in self.partition_lags().items():
            lag[topic] = lag.get(topic, 0) + (n or 0)
        return lag
