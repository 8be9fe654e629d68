"""The match agent's work: a batch admitted into the site buffers (its passages measured in one
kernel call), and the rounds that decide what the buffers have ready — verdicts, their evidence,
alerts and orders written through the sink seam, then sent, then the inputs acknowledged once
the broker has every message of the round (``streams.delivery``).

A round fixes what it decides and acknowledges when it starts; the agent buffers the next batch
while it is decided (``streams.rounds``), and the timer's rounds take turns with the agent's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from schemas.settings import Settings
from sinks.seam import RoundResults, RoundSinks
from streams.alerting import Alerting
from streams.decider import Decider
from streams.deciding import EarlyJob, cut_job
from streams.delivery import AcksAfterDelivery
from streams.device_timing import DeviceTiming
from streams.intake import Intake
from streams.matching import MatchBuffers
from streams.metrics import Metrics
from streams.ordering import Ordering
from streams.outbox import Outbox
from streams.progress import Progress
from streams.retry import Retry
from streams.sealing import Sealing
from streams.validation import read_problem

log = logging.getLogger(__name__)


@dataclass
class Decided:
    """What a round decided: verdicts, the evidence bodies of the enforceable ones, and the
    inputs it acknowledges once delivered."""

    verdicts: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)
    tokens: list[Any] = field(default_factory=list)


@dataclass
class MatchState:
    """What the match agent keeps between batches and rounds."""

    unwritten_reads: list[dict[str, Any]] = field(default_factory=list)  # with the next round
    produced_s: dict[str, float] = field(default_factory=dict)  # passage id -> Kafka timestamp
    late_unreported: dict[str, int] = field(default_factory=dict)  # device -> late inputs


class MatchRound:
    def __init__(
        self,
        settings: Settings,
        buffers: MatchBuffers,
        decider: Decider,
        timing: DeviceTiming,
        progress: Progress,
        sealing: Sealing,
        alerting: Alerting,
        ordering: Ordering,
        sinks: RoundSinks,
        retry: Retry,
        outbox: Outbox,
        metrics: Metrics,
        foresee_kg: float | None,
    ) -> None:
        self.settings = settings
        self.registry = buffers.registry
        self.buffers = buffers
        self.decider = decider
        self.timing = timing
        self.progress = progress
        self.sealing = sealing
        self.alerting = alerting
        self.ordering = ordering
        self.sinks = sinks
        self.retry = retry
        self.outbox = outbox
        self.metrics = metrics
        self.foresee_kg = foresee_kg  # 预判 from this weight on; None: no provisional orders
        self.state = MatchState()
        self.deciding = asyncio.Lock()  # the agent and the timer take turns
        self.acks = AcksAfterDelivery(settings.acks_rounds_in_flight)

    # -- admitting a batch ---------------------------------------------------------------------
    async def admit(self, intake: Intake) -> None:
        """Measure the batch's passages (one kernel call) and buffer vehicles and reads; what
        cannot be used goes to dead.letters in one send, acknowledged once delivered."""
        dead = list(intake.bad)
        buffers = self.buffers
        # against the other inputs only when every one is being read as it comes
        self.timing.check_ahead(intake.stamps(), 0 if buffers.lagging else buffers.latest())
        for items, stage in (
            (intake.passages, "measure_passages"),
            (intake.vehicles, "measure_controller"),
        ):
            if items:
                await self._measure(items, stage, dead)
        self._buffer_reads(intake.reads, dead)
        if dead:
            sent = await self.outbox.send_dead_letters(dead)
            await self.acks.after(sent, [event for event, _, _ in dead])

    async def _measure(
        self, items: list[tuple[dict[str, Any], Any]], stage: str, dead: list[Any]
    ) -> None:
        event_of = {}
        for record, event in items:
            if record["passage_id"] in event_of:  # the same id twice in one batch
                dead.append((event, "duplicate_passage_id", record["passage_id"]))
            else:
                event_of[record["passage_id"]] = event
        items = [(r, e) for r, e in items if event_of[r["passage_id"]] is e]
        with self.metrics.stage_seconds.labels(stage).time():
            result = await self.decider.measure(stage, [r for r, _ in items])
        for failure in result.failures:
            log.error("%s: %s", stage, failure)
        dead += [(event_of[p], "kernel_error", message) for p, message in result.poison]
        dead += [(event_of[p], reason, message) for p, reason, message in result.rejected]
        # the helper took a while: a rebalance meanwhile leaves these to their new owner
        fresh = {id(e) for e in self.progress.current_generation(list(event_of.values()))}
        for m in result.vehicles:
            event = event_of[m["passage_id"]]
            if id(event) not in fresh:
                continue
            self.state.produced_s.setdefault(m["passage_id"], event.message.timestamp)
            self.buffers.add_vehicle(m, event, (event.message.topic, event.message.partition))

    def _buffer_reads(self, reads: list[tuple[dict[str, Any], Any]], dead: list[Any]) -> None:
        fresh = {id(e) for e in self.progress.current_generation([e for _, e in reads])}
        for read, event in reads:
            if id(event) not in fresh:
                continue
            problem = read_problem(read, self.registry)
            if problem:
                dead.append((event, *problem))
                continue
            self.buffers.add_read(read, event, (event.message.topic, event.message.partition))
            self.state.unwritten_reads.append(read)

    # -- a round -------------------------------------------------------------------------------
    async def decide_ready(self, flush_all: bool = False) -> None:
        async with self.deciding:
            await self._decide_ready(flush_all)

    def _note_progress(self) -> None:
        buffers = self.buffers
        buffers.lagging, caught_up = self.progress.input_progress()  # the agent may have waited
        self.metrics.caught_up.set(len(caught_up))
        late = buffers.take_late()
        for device_id, n in late.items():
            self.metrics.late_inputs.labels(device_id).inc(n)
            unreported = self.state.late_unreported
            unreported[device_id] = unreported.get(device_id, 0) + n
        self.timing.note_late(late)

    async def _decide_ready(self, flush_all: bool) -> None:
        self._note_progress()
        buffers = self.buffers
        groups = buffers.ready(flush_all)
        early_decisions = self.settings.early_decisions and not flush_all
        settled = buffers.settled(self.foresee_kg) if early_decisions else []
        early_groups = [g for g in settled if not g.provisional]
        ahead_groups = [g for g in settled if g.provisional]
        self.metrics.pending.set(buffers.pending())
        # what this round acknowledges and writes is fixed now: the agent buffers the next batch
        # while the round is decided (a read released later is written by a later round)
        released = buffers.take_released()
        decided_again = buffers.take_decided_again()
        reads = self.state.unwritten_reads.copy()
        self.state.unwritten_reads.clear()
        progress = {g.site_id: g.progress for g in groups}  # early decisions do not move it
        with self.metrics.stage_seconds.labels("decide").time():
            cut_results, early_results = await self.decider.decide(
                [cut_job(g.vehicles, g.reads, g.early) for g in groups],
                [EarlyJob(e.vehicles, e.matched) for e in early_groups + ahead_groups],
            )
        early_results, ahead_results = (
            early_results[: len(early_groups)],
            early_results[len(early_groups) :],
        )
        deliveries: list[Any] = []  # of the messages this round sends
        await self._order_ahead(ahead_groups, ahead_results, deliveries)
        decided = Decided()
        deliveries += await self._collect_cut(groups, cut_results, decided)
        self._collect_early(early_groups, early_results, decided)
        if decided.verdicts or reads:
            await self._write(decided, reads, progress, deliveries)
        if decided.verdicts:
            deliveries += await self._send_verdicts(decided.verdicts)
        if decided_again:
            deliveries += await self._announce_again(decided_again)
        # only once delivered: a crash before then redelivers the inputs, decided again the same
        # way; the next round goes on meanwhile (``streams.delivery``)
        await self.acks.after(deliveries, decided.tokens + released)

    async def _order_ahead(self, groups: list[Any], results: list[Any], deliveries: list[Any]):
        for group, result in zip(groups, results, strict=True):
            for failure in result.failures:  # its verdict will fail alike, and be dead-lettered
                log.error("site %s, provisional: %s", group.site_id, failure)
        ahead = [v for r in results for v in r.verdicts]
        if ahead:
            await self.ordering.order_ahead(ahead, deliveries)

    async def _collect_cut(self, groups: list[Any], results: list[Any], into: Decided) -> list[Any]:
        """The verdicts of cut groups into ``into``; the poison among them dead-lettered (their
        tokens are the group's, acknowledged with the round). Returns those deliveries."""
        dead = []
        for group, result in zip(groups, results, strict=True):
            for failure in result.failures:
                log.error("site %s: %s", group.site_id, failure)
            if result.differ and group.complete:
                self.metrics.early_disagreements.inc(len(result.differ))
                log.error("decided early, given other reads by their group: %s", result.differ)
            token_of = {
                v["passage_id"]: t for v, t in zip(group.vehicles, group.tokens, strict=False)
            }
            dead += [(token_of[p], "decide_error", message) for p, message in result.poison]
            into.verdicts += result.verdicts
            into.bodies += self.sealing.bodies(result.verdicts, result.support)
            into.tokens += group.tokens
        return await self.outbox.send_dead_letters(dead)

    def _collect_early(self, groups: list[Any], results: list[Any], into: Decided) -> None:
        for early, result in zip(groups, results, strict=True):
            for failure in result.failures:
                log.error("site %s: %s", early.site_id, failure)
            self.buffers.decided_early(early, {v["passage_id"] for v in result.verdicts})
            self.metrics.early_decisions.inc(len(result.verdicts))
            into.verdicts += result.verdicts
            into.bodies += self.sealing.bodies(result.verdicts, result.support)

    async def _write(
        self,
        decided: Decided,
        reads: list[dict[str, Any]],
        progress: dict[str, Any],
        deliveries: list[Any],
    ) -> None:
        """Evidence, alerts and orders of the round's verdicts, written with them and its reads;
        then the new alerts and orders sent, 预判 orders settled, trajectory alerts raised."""
        verdicts = decided.verdicts
        links = self.sealing.seal(decided.bodies)
        alerts = await self.alerting.raise_alerts(verdicts)
        foreseen = {}
        if self.foresee_kg is not None:
            heavy = [v["passage_id"] for v in verdicts if v["gvw_kg"] >= self.foresee_kg]
            foreseen = await self.ordering.foreseen(heavy)
        stand = self.ordering.standing(foreseen, alerts)
        unordered = [a for a in alerts if a["passage_id"] not in stand]
        orders = await self.ordering.plan_orders(unordered, verdicts)
        results = RoundResults(verdicts, reads, progress, links, alerts, orders)
        with self.metrics.stage_seconds.labels("sink").time():
            written = await self.sinks.write(results, self.retry)
        await self.sealing.check(written, links)
        await self.outbox.send_alerts(alerts, set(written.alerts), deliveries)
        await self.outbox.send_orders(orders, set(written.orders), deliveries)
        await self.ordering.settle_foreseen(foreseen, stand)
        await self.alerting.raise_trajectory_alerts(reads, deliveries)
        await self.alerting.raise_clone_alerts(verdicts, deliveries)

    async def _send_verdicts(self, verdicts: list[dict[str, Any]]) -> list[Any]:
        now = time.time()
        for v in verdicts:
            sent = self.state.produced_s.pop(v["passage_id"], None)
            if sent is not None:
                self.metrics.weigh_to_verdict.observe(max(now - sent, 0.0))
        self.metrics.count_verdicts(verdicts)
        return await self.outbox.send_verdicts(verdicts)

    async def _announce_again(self, passage_ids: list[str]) -> list[Any]:
        """The kept verdicts of redelivered vehicles, sent again (their consumers, the store of
        record among them, take a verdict once by passage id): what was written but maybe not
        sent before a crash is not lost to them."""
        verdicts = await self.sinks.verdicts_of(passage_ids, self.retry)
        if len(verdicts) < len(passage_ids):
            log.info(
                "%d redelivered vehicles were decided but have no verdict kept (late, or "
                "expired): not announced again",
                len(passage_ids) - len(verdicts),
            )
        self.metrics.announced_again.inc(len(verdicts))
        return await self.outbox.send_verdicts(verdicts)

    # -- partitions ----------------------------------------------------------------------------
    async def restore(self, sink_progress: Any) -> None:
        """Before any record of newly assigned partitions is read: what their sites decided."""
        self.buffers.restore(await self.retry("progress", sink_progress))
        await self.sealing.restore()
