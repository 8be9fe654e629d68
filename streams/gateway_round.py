"""The batched gateway mode's rounds: each ``VehicleBatch`` judged as arrays in the helper
(``streams.gateway``), then the flagged vehicles' evidence, alerts and orders written with
their full verdicts through the sink seam, each batch's counters once, and a ``VerdictBatch``
out; then the inputs are acknowledged."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

from schemas import topics as T
from sinks.blacklist import listed
from sinks.gateway_sink import BatchCount, GatewaySink
from sinks.seam import RoundResults, RoundSinks
from streams.alerting import Alerting
from streams.decider import Decider
from streams.gateway import Outcome
from streams.metrics import Metrics
from streams.ordering import Ordering
from streams.outbox import Outbox
from streams.retry import Retry
from streams.sealing import Sealing
from streams.validation import Clock


class GatewayRound:
    def __init__(
        self,
        decider: Decider,
        clock: Clock,
        sealing: Sealing,
        alerting: Alerting,
        ordering: Ordering,
        sinks: RoundSinks,
        gateway_sink: GatewaySink,
        retry: Retry,
        outbox: Outbox,
        metrics: Metrics,
    ) -> None:
        self.decider = decider
        self.clock = clock
        self.sealing = sealing
        self.alerting = alerting
        self.ordering = ordering
        self.sinks = sinks
        self.gateway_sink = gateway_sink
        self.retry = retry
        self.outbox = outbox
        self.metrics = metrics

    async def judge(self, events: list[Any]) -> tuple[list[Outcome], list[Any]]:
        """First half: each batch read and judged (in the helper); the batches with a plate on
        the 黑名单 are judged again with it. Returns their outcomes and their events (not
        acknowledged)."""
        messages = [(event.value, event.message.topic) for event in events]
        now_s = time.time()
        with self.metrics.stage_seconds.labels("gateway_judge").time():
            judged = await self.decider.judge_gateway(messages, self.clock, now_s)
        kept, dead, finished = [], [], []
        for event, message, received in zip(events, messages, judged.received, strict=True):
            if received.dead is not None:
                dead.append((event, *received.dead))
                if not received.goes_on:
                    finished.append(event)
            if received.goes_on:
                kept.append((event, message))
        if dead:
            # a batch whose good rows go on is acknowledged with them, the rest once delivered
            await self.outbox.send_dead_and_ack(dead, finished)
        if not kept:
            return [], []
        outcomes = judged.outcomes
        plates = [o.plate_set() for o in outcomes]
        redis = self.alerting.redis
        hits = await self.retry("alerts", partial(listed, redis, sorted(set().union(*plates))))
        again = [k for k, mine in enumerate(plates) if not mine.isdisjoint(hits)]
        if again:
            redone = await self.decider.judge_gateway(
                [kept[k][1] for k in again], self.clock, now_s, frozenset(hits)
            )
            for k, outcome in zip(again, redone.outcomes, strict=True):
                outcomes[k] = outcome
        return outcomes, [event for event, _ in kept]

    async def write(self, outcomes: list[Outcome], tokens: list[Any]) -> None:
        """Second half, while the next round is judged and before its alerts: evidence, alerts
        and orders of the flagged vehicles, their full verdicts, each batch's counters once,
        ``VerdictBatch`` out; then the inputs are acknowledged."""
        flagged = [v for o in outcomes for v in o.flagged]
        links = self.sealing.seal(
            [b for o in outcomes for b in self.sealing.bodies_on(o.flagged, o.support)]
        )
        alerts = await self.alerting.raise_alerts(flagged)
        orders = await self.ordering.plan_orders(alerts, flagged)
        results = RoundResults(flagged, evidence=links, alerts=alerts, orders=orders, count=False)
        with self.metrics.stage_seconds.labels("sink").time():
            written = await self.sinks.write(results, self.retry)
            counted = [BatchCount(o.batch_id, o.summary, o.counters) for o in outcomes]
            await self.retry("verdicts", partial(self.gateway_sink.write, counted))
        await self.sealing.check(written, links)
        deliveries: list[Any] = []  # waited for at once: one produce round trip, not three
        await self.outbox.send_alerts(alerts, set(written.alerts), deliveries)
        await self.outbox.send_orders(orders, set(written.orders), deliveries)
        deliveries += await self.outbox.hand_over(
            T.VERDICT_BATCHES, [(o.site_id.encode(), o.verdict_batch) for o in outcomes]
        )
        await asyncio.gather(*deliveries)
        self.metrics.count_verdict_arrays(outcomes)
        now = time.time()
        for event in tokens:
            self.metrics.weigh_to_verdict.observe(max(now - event.message.timestamp, 0.0))
            event.ack()  # only now: a crash before this redelivers the batch, counted once
