"""The Faust app: thin agents that decode a batch, call the stages (kernels), and send.

``match``: ``wim.passages`` + ``wim.vehicles`` + ``anpr.reads`` (co-partitioned by site) ->
axle kernel for the passages of the batch -> per-site buffers -> verdicts, decided as soon as a
cut allows (``streams.matching``) or after ``max_wait_s`` of wall time -> Redis (one atomic
script per batch) and ``vehicles.verdicts``. Every camera read is also a sighting of its plate
(trajectories, ``sinks.sightings``). Inputs are acknowledged only once their verdicts are written.
``heartbeats``: ``device.heartbeats`` -> device state in Redis.
Anything that cannot be decoded or measured goes to ``dead.letters`` with a reason.

Weighing and matching run in one agent: a hop through an intermediate topic would double
Faust's per-event cost, which dominates the worker's time (DESIGN §6). For the same reason
``match`` takes its records from an inbox the conductor fills (``streams.inbox``), not
through Faust's per-event stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import faust
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from faust.exceptions import ConsumerNotStarted

import schemas
from schemas import topics as T
from schemas.plate_grammar import normalise
from schemas.policy import load_policy
from schemas.registry import load_registry
from schemas.settings import Settings
from schemas.units import US
from sinks import constants as K
from sinks.blacklist import apply_updates, listed, update_problem
from sinks.devices import device_kpis
from sinks.evidence import EvidenceChain, evidence_body
from sinks.gateway_sink import BatchCount, GatewaySink
from sinks.order_sink import OrderSink
from sinks.redis_sink import VerdictSink, is_case
from sinks.sightings import MIN_CONFIDENCE, Sightings
from sinks.web.server import serve, web_app
from streams.alerts import alerts_for, device_alerts, load_alert_rules, sighting_alert
from streams.decider import Decider
from streams.deciding import EarlyJob, cut_job
from streams.delivery import AcksAfterDelivery
from streams.device_timing import DeviceTiming
from streams.dispatch import COMMAND_CENTRE, order_for, plan_interception
from streams.feedback import apply_feedback, escalate_overdue, report_check
from streams.gateway import Outcome
from streams.inbox import Inbox, InboxTopic, batches
from streams.intake import Intake, ReadPositions, of_generation, sort_events
from streams.kafka_security import faust_credentials
from streams.likely_plate import rank, upstream_probe
from streams.matching import BACKLOG_RECORDS, MatchBuffers
from streams.metrics import Metrics
from streams.order_life import OrderRefused, confirm, withdraw
from streams.rounds import Rounds
from streams.stages import (
    warm_up,
)
from streams.trajectory import (
    CLONE_CONFIDENCE,
    CLONE_CONFLICTS,
    CLONE_DAYS,
    CLONE_WINDOW_S,
    LOOKBACK_S,
    bypass_cameras,
    clashes,
    clone_alert,
    impossible_journeys,
    suspected_bypass,
)
from streams.transport import FETCH_MAX_WAIT_MS, App, broker_answers
from streams.validation import Clock, read_problem
from streams.vouching import LatestSeen

log = logging.getLogger(__name__)
REDIS_DOWN = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
)
# gateway rounds taken and not yet written: one being written, the next ones judged in the
# helper or waiting for it (stop 17, a gateway backlog: 2 gave 116–121k vehicles/s, 3 gave
# 118–136k, 4 gave 123–130k; runs vary by ±10 %)
GATEWAY_ROUNDS_IN_FLIGHT = 3
LATE_REPORT_S = 60.0  # how often devices publishing later than the slack are logged


def dead_letter_record(event: Any, reason: str, message: str) -> bytes:
    m = event.message
    return schemas.DEAD_LETTER.encode_wire(
        {
            "topic": m.topic,
            "partition": m.partition,
            "offset": m.offset,
            "reason": reason,
            "message": message,
            "ts_us": int(time.time() * US),
            "key": m.key,
            "value": m.value if isinstance(m.value, bytes) else b"",
        }
    )


def verdict_key(verdict: dict[str, Any]) -> bytes:
    return (verdict["plate_front"] or verdict["plate_rear"] or verdict["passage_id"]).encode()


class BrokerTime:
    """Seconds during which the broker answered: the clock of the wait for reads."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._last = time.monotonic()

    def tick(self, answered: bool) -> None:
        now = time.monotonic()
        if answered:
            self.seconds += min(now - self._last, 2.0)
        self._last = now

    def now(self) -> float:
        return self.seconds


def create_app(settings: Settings) -> faust.App:
    registry = load_registry(settings.registry_path)
    policy = load_policy(settings.policy or registry.policy)
    app = App(
        "zhichao",
        broker=settings.broker_url,
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
        producer_compression_type=None,
        producer_max_request_size=16 << 20,
        producer_max_batch_size=1 << 20,  # gateway verdict batches are tens of KB each
        consumer_max_fetch_size=32 << 20,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_credentials=faust_credentials(settings),
        web_enabled=False,
    )
    app.conf.zhichao = settings  # what the agents were built with, for the operator
    inputs = InboxTopic(
        app,
        topics=[T.WIM_PASSAGES, T.WIM_VEHICLES, T.ANPR_READS],
        inbox=Inbox(settings.inbox_size),
    )
    gateway_in = app.topic(T.WIM_BATCHES)
    heartbeats_in = app.topic(T.DEVICE_HEARTBEATS)
    feedback_in = app.topic(T.DISPATCH_FEEDBACK)
    blacklist_in = app.topic(T.BLACKLIST_UPDATES)
    broker_time = BrokerTime()
    buffers = MatchBuffers(
        registry,
        max_wait_s=settings.max_wait_s,
        slack_s=settings.publish_slack_s,
        clock=broker_time.now,
    )
    clock = Clock(settings.max_event_age_s, settings.max_event_ahead_s)
    redis = aioredis.Redis.from_url(settings.redis_dsn)
    sink = VerdictSink(redis, settings.verdict_ttl_s, settings.sighting_retention_s)
    sightings = Sightings(redis)
    bypass_cams = bypass_cameras(registry)
    order_sink = OrderSink(redis, settings.verdict_ttl_s)
    gateway_sink = GatewaySink(redis, settings.verdict_ttl_s)
    chain = EvidenceChain(settings.evidence_key.encode())
    alert_rules = load_alert_rules()
    unwritten_reads: list[dict[str, Any]] = []  # sightings, written with the next verdicts
    metrics = Metrics()
    produced_s: dict[str, float] = {}  # passage_id -> Kafka timestamp, for the latency metric
    positions = ReadPositions()  # per input partition: the last record buffered
    late_unreported: dict[str, int] = {}  # per device: late inputs since the last warning
    timing = DeviceTiming(settings.clock_ahead_alert_s)  # late and fast devices, for alerts
    latest = LatestSeen(guard_s=2 * FETCH_MAX_WAIT_MS / 1000)  # what caught-up inputs vouch for
    runners: list[Any] = []  # the pages' web server, cleaned up on close
    decider = Decider(
        registry,
        policy,
        settings.registry_path,
        settings.policy,
        settings.decide_processes,
        metrics.decider_failures.inc,
        settings.inline_passages,
        settings.inline_vehicles,
        lambda where: metrics.decider_work.labels(where).inc(),
    )
    decider.start()  # compiles its kernels while this process compiles its own
    # small batches and rounds are measured and decided here too (``inline_passages``)
    warm_up(
        registry,
        policy,
        measure_too=settings.decide_processes == 0 or settings.inline_passages > 0,
    )
    decider.wait_ready()  # then takes partitions: nothing compiles beside live work
    # 预判 orders for vehicles heavy enough to be over a limit (half the lightest class limit
    # leaves room for every reduction); decided as their front reads are final
    foresee_kg = (
        float(policy.class_limit_kg.min()) / 2
        if settings.provisional_orders and settings.early_decisions
        else None
    )

    async def hand_over(topic: str, messages: list[tuple[bytes | None, bytes]]) -> list[Any]:
        """Hand messages to the producer; returns their deliveries (done once the broker has
        each one)."""
        metrics.events_out.labels(topic).inc(len(messages))
        producer = app.producer
        return [await producer.send(topic, k, v, None, None, None) for k, v in messages]

    async def send_all(topic: str, messages: list[tuple[bytes, bytes]]) -> None:
        """Hand messages to the producer and wait until the broker has them all."""
        await asyncio.gather(*await hand_over(topic, messages))

    async def delivered(sent: list[Any], deliveries: list[Any] | None) -> None:
        """Wait for ``sent`` here, or leave it to the round's ``deliveries`` when given."""
        if deliveries is None:
            await asyncio.gather(*sent)
        else:
            deliveries += sent

    async def send_dead(event: Any, reason: str, message: str, ack: bool = True) -> None:
        """A dead letter for ``event``; ``ack=False`` when the rest of it is still to be
        written (a gateway batch's bad rows)."""
        m = event.message
        log.warning(
            "dead letter %s from %s[%d]@%d: %s", reason, m.topic, m.partition, m.offset, message
        )
        metrics.dead_letters.labels(reason).inc()
        await hand_over(T.DEAD_LETTERS, [(None, dead_letter_record(event, reason, message))])
        if ack:
            event.ack()

    async def decoded(events: list[Any], codec: Any) -> list[tuple[dict[str, Any], Any]]:
        """(record, event) of the events ``codec`` can decode; the others to dead.letters."""
        out = []
        for event in events:
            try:
                out.append((codec.decode_wire(event.value), event))
            except schemas.DecodeError as exc:
                await send_dead(event, "undecodable", str(exc))
        return out

    async def admit(intake: Intake) -> None:
        """Measure the batch's passages (one kernel call) and buffer vehicles and reads."""
        for event, reason, message in intake.bad:
            await send_dead(event, reason, message)
        # against the other inputs only when every one is being read as it comes
        timing.check_ahead(intake.stamps(), 0 if buffers.lagging else buffers.latest())
        for items, stage in (
            (intake.passages, "measure_passages"),
            (intake.vehicles, "measure_controller"),
        ):
            if not items:
                continue
            event_of = {}
            for record, event in items:
                if record["passage_id"] in event_of:  # the same id twice in one batch
                    await send_dead(event, "duplicate_passage_id", record["passage_id"])
                else:
                    event_of[record["passage_id"]] = event
            items = [(r, e) for r, e in items if event_of[r["passage_id"]] is e]
            with metrics.stage_seconds.labels(stage).time():
                result = await decider.measure(stage, [r for r, _ in items])
            for failure in result.failures:
                log.error("%s: %s", stage, failure)
            for passage_id, message in result.poison:
                await send_dead(event_of[passage_id], "kernel_error", message)
            for passage_id, reason, message in result.rejected:
                await send_dead(event_of[passage_id], reason, message)
            # the helper took a while: a rebalance meanwhile leaves these to their new owner
            fresh = {id(e) for e in current_generation(list(event_of.values()))}
            for m in result.vehicles:
                event = event_of[m["passage_id"]]
                if id(event) not in fresh:
                    continue
                produced_s.setdefault(m["passage_id"], event.message.timestamp)
                buffers.add_vehicle(m, event, (event.message.topic, event.message.partition))
        fresh = {id(e) for e in current_generation([e for _, e in intake.reads])}
        for read, event in intake.reads:
            if id(event) not in fresh:
                continue
            problem = read_problem(read, registry)
            if problem:
                await send_dead(event, *problem)
                continue
            buffers.add_read(read, event, (event.message.topic, event.message.partition))
            unwritten_reads.append(read)

    def seal(decided: list[dict[str, Any]], support: list[dict[str, Any]]) -> list[Any]:
        """The evidence records of the enforceable verdicts, for the chain."""
        return [
            (v, evidence_body(v, s, registry))
            for v, s in zip(decided, support, strict=True)
            if v["enforceable"]
        ]

    async def until_written(sink_name: str, write: Callable[[], Awaitable[Any]]) -> Any:
        """Run a Redis write, waiting out an outage: meanwhile the batch's inputs stay
        unacknowledged (a crash now loses nothing) and the agent holds still, so Kafka keeps
        what comes next. A retried script is harmless: every effect in it is idempotent."""
        delay, down_since, told = 0.2, None, 0.0
        while True:
            try:
                result = await write()
            except REDIS_DOWN as exc:
                metrics.sink_errors.labels(sink_name).inc()
                metrics.redis_up.set(0)
                now = time.monotonic()
                if down_since is None:
                    down_since = told = now
                    log.error("Redis unavailable (%s): holding the batch, retrying", exc)
                elif now - told > 10:
                    told = now
                    log.error("Redis still unavailable after %.0f s", now - down_since)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if down_since is not None:
                log.warning(
                    "Redis is back after %.0f s: held writes done", time.monotonic() - down_since
                )
            metrics.redis_up.set(1)
            return result

    async def raise_alerts(verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The alerts of a batch of verdicts, unidentified weighings with their likely plates."""
        out = await alerts_of(verdicts)
        for a in out:
            if a["reason"] == "unidentified":
                await until_written("sightings", partial(add_likely_plates, a))
        return out

    async def alerts_of(verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The alerts of a batch of verdicts (``streams.alerts``), with each plate's blacklist
        entry and earlier cases read from Redis once per batch."""
        if not verdicts:
            return []
        since = min(v["ts_us"] for v in verdicts) - alert_rules.repeat_window_days * 86_400 * US
        blacklisted, cases = await until_written(
            "alerts", partial(sink.alert_context, verdicts, since)
        )
        out = []
        for v in sorted(verdicts, key=lambda v: (v["ts_us"], v["passage_id"])):
            plate = v["plate_front"] or v["plate_rear"]
            out += alerts_for(v, registry, alert_rules, cases.get(plate, 0), plate in blacklisted)
            if plate and is_case(v):
                cases[plate] = cases.get(plate, 0) + 1  # a later verdict in this batch sees it
        return out

    async def raise_trajectory_alerts(reads: list[dict[str, Any]], deliveries: list[Any]) -> None:
        """黑名单 plates read by any camera (checkpoints too), and suspected bypasses (绕行, M6),
        judged when a bypass road's camera reads a truck, from the plate's sightings (those of
        this batch are written by now)."""
        sure = {}  # weigh-site reads are alerted with their weighing
        for r in reads:
            plate = normalise(r["plate"]) if r["confidence"] >= MIN_CONFIDENCE else ""
            if plate and r["view"] == "checkpoint":
                sure.setdefault(plate, r)
        hits = await until_written("alerts", partial(listed, redis, sorted(sure)))
        alerts = [sighting_alert(sure[p], p, alert_rules, registry) for p in sorted(hits)]
        for r in reads:
            checkpoint = bypass_cams.get(r["camera_id"])
            if checkpoint is None or r["confidence"] < MIN_CONFIDENCE or not r["plate"]:
                continue
            since = r["ts_us"] - LOOKBACK_S * US
            history = await until_written("sightings", partial(sightings.of, r["plate"], since))
            alert = suspected_bypass(r, checkpoint, history, registry)
            if alert is not None:
                alerts.append(alert)
        if alerts:
            new = await until_written("alerts", partial(sink.write_alerts_once, alerts))
            await send_alerts(alerts, set(new), deliveries)

    async def raise_clone_alerts(verdicts: list[dict[str, Any]], deliveries: list[Any]) -> None:
        """Suspected cloned plates (套牌, M5): confident weighings of one plate at places no
        truck could have driven between (this batch's verdicts are written by now)."""
        window_us = CLONE_WINDOW_S * US
        sure = [
            v for v in verdicts if v["plate_front"] and v["plate_confidence"] >= CLONE_CONFIDENCE
        ]
        probes = [(v["plate_front"], v["ts_us"] - window_us, v["ts_us"] + window_us) for v in sure]
        if not probes:
            return
        known = {v["passage_id"]: v for v in verdicts}
        weighed = await until_written("alerts", partial(sink.weighings_of, probes, known))
        alerts = []
        for v in sure:
            conflicts = impossible_journeys(v, weighed.get(v["plate_front"], []), registry)
            if not conflicts:
                continue
            since = v["ts_us"] - CLONE_DAYS * 86_400 * US
            count = await until_written(
                "alerts",
                partial(
                    sink.count_clone_conflict, v["plate_front"], v["passage_id"], v["ts_us"], since
                ),
            )
            clash = next((o for o in conflicts if clashes(v, o)), None)
            if clash is not None or count >= CLONE_CONFLICTS:
                alerts.append(clone_alert(v, clash or conflicts[0], count, registry))
        if alerts:
            new = await until_written("alerts", partial(sink.write_alerts_once, alerts))
            await send_alerts(alerts, set(new), deliveries)

    async def add_likely_plates(alert: dict[str, Any]) -> None:
        """An unidentified weighing's likely plates from the checkpoint before it (M7)."""
        probe = upstream_probe(registry.sites[alert["site_id"]], alert["ts_us"], registry)
        if probe is None:
            return
        reads = await sightings.at_camera(probe.camera_id, probe.lo_us, probe.hi_us)
        spread = (probe.hi_us - probe.lo_us) // 2
        lo, hi = alert["ts_us"] - spread, alert["ts_us"] + spread
        seen = set()
        for plate in {r[0] for r in reads}:
            if alert["site_id"] in await sightings.sites_between(plate, lo, hi):
                seen.add(plate)
        found = rank(probe, reads, seen)
        if found:
            alert["likely_plates"] = [c.plate for c in found]
            name = registry.sites[probe.site_id].name
            alert["message"] += f"；疑似车牌 {'、'.join(alert['likely_plates'])}（{name}）"

    async def send_alerts(
        alerts: list[dict[str, Any]], new_ids: set[str], deliveries: list[Any] | None = None
    ) -> None:
        """The alerts Redis took for the first time, to the ``alerts`` topic (Redis is their
        record; the topic is for downstream consumers); see ``delivered``."""
        fresh = {a["alert_id"]: a for a in reversed(alerts) if a["alert_id"] in new_ids}
        for a in fresh.values():
            metrics.alerts.labels(a["reason"]).inc()
        encode = schemas.ALERT.encode_wire
        sent = await hand_over(
            T.ALERTS,
            [
                ((a["plate"] or a["passage_id"] or a["device_id"]).encode(), encode(a))
                for a in fresh.values()
            ],
        )
        await delivered(sent, deliveries)

    def calls_for_order(alert: dict[str, Any]) -> bool:
        return alert_rules.reasons[alert["reason"]]["action"] in ("intercept", "refuse_entry")

    async def plan_orders(
        alerts: list[dict[str, Any]], verdicts: list[dict[str, Any]], provisional: bool = False
    ) -> list[dict[str, Any]]:
        """Interception orders (``streams.dispatch``) for the alerts that call for one: the
        first such alert of a vehicle in the batch; the sink keeps one open per vehicle."""
        acting = {}
        for a in alerts:
            if calls_for_order(a):
                acting.setdefault(a["plate"] or a["passage_id"], a)
        if not acting:
            return []
        states = await until_written("units", order_sink.unit_states)
        seen = {v["passage_id"]: v for v in verdicts}
        now = time.time()
        orders = []
        for a in acting.values():
            site = registry.sites[a["site_id"]]
            plan = plan_interception(
                site, seen[a["passage_id"]]["speed_kmh"], a["ts_us"] / US, now, registry, states
            )
            v = seen[a["passage_id"]]
            local = v["local"] if a["plate"] else None
            orders.append(
                order_for(
                    a, plan, registry, int(now * US), v["speed_kmh"], local, provisional=provisional
                )
            )
        return orders

    async def order_ahead(ahead: list[dict[str, Any]], deliveries: list[Any]) -> None:
        """预判: orders for the heavy vehicles decided on their front reads alone
        (``MatchBuffers.settled``), seconds before their verdicts; each verdict then confirms
        or withdraws its vehicle's order (``settle_foreseen``). No alert and no verdict is
        written for them: those wait for the rear reads."""
        alerts = [a for a in await alerts_of(ahead) if calls_for_order(a)]
        orders = await plan_orders(alerts, ahead, provisional=True)
        written = await until_written("orders", partial(order_sink.write_ahead, orders))
        metrics.provisional_orders.labels("issued").inc(len(written))
        await send_orders(orders, set(written), deliveries)

    def standing(foreseen: dict[str, dict[str, Any]], alerts: list[dict[str, Any]]) -> set[str]:
        """The weighings whose provisional order their verdict's alerts call for: same plate."""
        return {
            a["passage_id"]
            for a in alerts
            if calls_for_order(a)
            and a["passage_id"] in foreseen
            and a["plate"] == foreseen[a["passage_id"]]["plate"]
        }

    async def settle_foreseen(foreseen: dict[str, dict[str, Any]], stand: set[str]) -> None:
        """A provisional order that its verdict calls for stands (an ordinary order now); the
        others are withdrawn, and the officer's page says so."""
        now_us = int(time.time() * US)
        for passage_id, order in foreseen.items():
            stands = passage_id in stand
            if stands:
                change = confirm(order, now_us)
            else:
                change = withdraw(order, now_us, "复核：车辆判定未确认该指令，已撤回")
            result = await until_written("orders", partial(order_sink.apply, change, now_us))
            if result == "ok":
                metrics.provisional_orders.labels("confirmed" if stands else "withdrawn").inc()
            else:  # an officer closed or escalated it meanwhile: theirs stands
                log.info("provisional order not settled (%s)", result)

    async def send_orders(
        orders: list[dict[str, Any]], new_ids: set[str], deliveries: list[Any] | None = None
    ) -> None:
        fresh = [o for o in orders if o["order_id"] in new_ids]
        for o in fresh:
            metrics.orders.labels(
                "command_centre" if o["unit_id"] == COMMAND_CENTRE else "unit"
            ).inc()
        encode = schemas.DISPATCH_ORDER.encode_wire
        sent = await hand_over(
            T.DISPATCH_ORDERS, [(o["unit_id"].encode(), encode(o)) for o in fresh]
        )
        await delivered(sent, deliveries)

    deciding = asyncio.Lock()  # the agent and the timer take turns
    acks = AcksAfterDelivery()  # a round's inputs, acknowledged once its messages are delivered

    async def decide_ready(flush_all: bool = False) -> None:
        async with deciding:
            await _decide_ready(flush_all)

    async def _decide_ready(flush_all: bool) -> None:
        buffers.lagging, caught_up = input_progress()  # now: the agent may have waited
        metrics.caught_up.set(len(caught_up))
        late = buffers.take_late()
        for device_id, n in late.items():
            metrics.late_inputs.labels(device_id).inc(n)
            late_unreported[device_id] = late_unreported.get(device_id, 0) + n
        timing.note_late(late)
        groups = buffers.ready(flush_all)
        settled = buffers.settled(foresee_kg) if settings.early_decisions and not flush_all else []
        early_groups = [g for g in settled if not g.provisional]
        ahead_groups = [g for g in settled if g.provisional]
        metrics.pending.set(buffers.pending())
        # what this round acknowledges and writes is fixed now: the agent buffers the next batch
        # while the round is decided (a read released later is written by a later round)
        released = buffers.take_released()
        reads = unwritten_reads.copy()
        unwritten_reads.clear()
        progress = {g.site_id: g.progress for g in groups}  # early decisions do not move it
        with metrics.stage_seconds.labels("decide").time():
            cut_results, early_results = await decider.decide(
                [cut_job(g.vehicles, g.reads, g.early) for g in groups],
                [EarlyJob(e.vehicles, e.matched) for e in early_groups + ahead_groups],
            )
        early_results, ahead_results = (
            early_results[: len(early_groups)],
            early_results[len(early_groups) :],
        )
        for group, result in zip(ahead_groups, ahead_results, strict=True):
            for failure in result.failures:  # its verdict will fail alike, and be dead-lettered
                log.error("site %s, provisional: %s", group.site_id, failure)
        deliveries: list[Any] = []  # of the messages this round sends
        ahead = [v for r in ahead_results for v in r.verdicts]
        if ahead:
            await order_ahead(ahead, deliveries)
        verdicts, tokens, sealed = [], [], []
        for group, result in zip(groups, cut_results, strict=True):
            for failure in result.failures:
                log.error("site %s: %s", group.site_id, failure)
            if result.differ and group.complete:
                metrics.early_disagreements.inc(len(result.differ))
                log.error("decided early, given other reads by their group: %s", result.differ)
            token_of = {
                v["passage_id"]: t for v, t in zip(group.vehicles, group.tokens, strict=False)
            }
            for passage_id, message in result.poison:
                await send_dead(token_of[passage_id], "decide_error", message)
            verdicts += result.verdicts
            sealed += seal(result.verdicts, result.support)
            tokens += group.tokens
        for early, result in zip(early_groups, early_results, strict=True):
            for failure in result.failures:
                log.error("site %s: %s", early.site_id, failure)
            buffers.decided_early(early, {v["passage_id"] for v in result.verdicts})
            metrics.early_decisions.inc(len(result.verdicts))
            verdicts += result.verdicts
            sealed += seal(result.verdicts, result.support)
        if verdicts or reads:
            links = chain.extend(sealed)
            alerts = await raise_alerts(verdicts)
            foreseen = {}
            if foresee_kg is not None:
                heavy = [v["passage_id"] for v in verdicts if v["gvw_kg"] >= foresee_kg]
                foreseen = await until_written("orders", partial(order_sink.foreseen, heavy))
            stand = standing(foreseen, alerts)
            unordered = [a for a in alerts if a["passage_id"] not in stand]
            orders = await plan_orders(unordered, verdicts)
            with metrics.stage_seconds.labels("sink").time():
                written = await until_written(
                    "verdicts",
                    partial(sink.write, verdicts, reads, progress, links, alerts, orders),
                )
            await check_chain(written, links)
            await send_alerts(alerts, set(written.alerts), deliveries)
            await send_orders(orders, set(written.orders), deliveries)
            await settle_foreseen(foreseen, stand)
            await raise_trajectory_alerts(reads, deliveries)
            await raise_clone_alerts(verdicts, deliveries)
        if verdicts:
            now = time.time()
            for v in verdicts:
                sent = produced_s.pop(v["passage_id"], None)
                if sent is not None:
                    metrics.weigh_to_verdict.observe(max(now - sent, 0.0))
            metrics.count_verdicts(verdicts)
            encode = schemas.VERDICT.encode_wire
            deliveries += await hand_over(
                T.VEHICLES_VERDICTS, [(verdict_key(v), encode(v)) for v in verdicts]
            )
        # only once delivered: a crash before then redelivers the inputs, decided again the same
        # way; the next round goes on meanwhile (``streams.delivery``)
        await acks.after(deliveries, tokens + released)

    async def check_chain(written: Any, links: list[Any]) -> None:
        """After a write: when Redis' chains are not where this worker sealed (a redelivered
        verdict's record was in its chain already, or another writer moved a chain in a
        rebalance), the heads are read again, and every record of a passage that has none yet
        is sealed again on them and appended, until it is in its chain: an enforceable verdict
        always has its evidence record."""
        if written.appended == len(links):
            return
        lost = set(written.lost)
        pending = [link for link in links if link.passage_id in lost]
        attempt = 0
        while True:
            chain.heads.clear()
            chain.restore(await until_written("evidence", sink.evidence_heads))
            if not pending:
                return
            attempt += 1
            metrics.evidence_conflicts.inc(len(pending))
            (log.warning if attempt < 3 else log.error)(
                "evidence chain moved under this worker: sealing %d records again (attempt %d)",
                len(pending),
                attempt,
            )
            pending = chain.reseal(pending)
            _, still = await until_written("evidence", partial(sink.append_evidence, pending))
            lost = set(still)
            pending = [link for link in pending if link.passage_id in lost]
            if pending:
                await asyncio.sleep(min(0.05 * attempt, 1.0))

    async def judge_gateway_batches(events: list[Any]) -> tuple[list[Outcome], list[Any]]:
        """Batched gateway mode, first half: each ``VehicleBatch`` read and judged as arrays
        (``streams.gateway``, in the helper); the batches with a plate on the 黑名单 are judged
        again with it. Returns their outcomes and their events (not acknowledged)."""
        messages = [(event.value, event.message.topic) for event in events]
        now_s = time.time()
        with metrics.stage_seconds.labels("gateway_judge").time():
            judged = await decider.judge_gateway(messages, clock, now_s)
        kept = []
        for event, message, received in zip(events, messages, judged.received, strict=True):
            if received.dead is not None:
                await send_dead(event, *received.dead, ack=not received.goes_on)
            if received.goes_on:
                kept.append((event, message))
        if not kept:
            return [], []
        outcomes = judged.outcomes
        plates = [o.plate_set() for o in outcomes]
        hits = await until_written("alerts", partial(listed, redis, sorted(set().union(*plates))))
        again = [k for k, mine in enumerate(plates) if not mine.isdisjoint(hits)]
        if again:
            redone = await decider.judge_gateway(
                [kept[k][1] for k in again], clock, now_s, frozenset(hits)
            )
            for k, outcome in zip(again, redone.outcomes, strict=True):
                outcomes[k] = outcome
        return outcomes, [event for event, _ in kept]

    async def write_gateway_batches(outcomes: list[Outcome], tokens: list[Any]) -> None:
        """Second half: evidence, alerts and orders of the flagged vehicles, their full
        verdicts, each batch's counters once, ``VerdictBatch`` out; then the inputs are
        acknowledged. Runs while the next round is judged, before the next round's alerts."""
        flagged = [v for o in outcomes for v in o.flagged]
        links = chain.extend(
            [
                (v, evidence_body(v, o.support, registry))
                for o in outcomes
                for v in o.flagged
                if v["enforceable"]
            ]
        )
        alerts = await raise_alerts(flagged)
        orders = await plan_orders(alerts, flagged)
        with metrics.stage_seconds.labels("sink").time():
            written = await until_written(
                "verdicts",
                partial(sink.write, flagged, (), None, links, alerts, orders, count=False),
            )
            counted = [BatchCount(o.batch_id, o.summary, o.counters) for o in outcomes]
            await until_written("verdicts", partial(gateway_sink.write, counted))
        await check_chain(written, links)
        deliveries: list[Any] = []  # waited for at once: one produce round trip, not three
        await send_alerts(alerts, set(written.alerts), deliveries)
        await send_orders(orders, set(written.orders), deliveries)
        deliveries += await hand_over(
            T.VERDICT_BATCHES, [(o.site_id.encode(), o.verdict_batch) for o in outcomes]
        )
        await asyncio.gather(*deliveries)
        metrics.count_verdict_arrays(outcomes)
        now = time.time()
        for event in tokens:
            metrics.weigh_to_verdict.observe(max(now - event.message.timestamp, 0.0))
            event.ack()  # only now: a crash before this redelivers the batch, counted once

    def partition_lags() -> dict[tuple[str, int], tuple[int | None, float | None]]:
        """Per assigned partition: records fetched or in the log beyond the last one the agent
        buffered, as of the broker's last answer, and when that answer came (wall clock);
        None before the first fetch."""
        try:
            assignment = app.consumer.assignment()
        except ConsumerNotStarted:  # agents driven by test_context have no consumer
            return {}
        lags: dict[tuple[str, int], tuple[int | None, float | None]] = {}
        for tp in assignment:
            fetched_s = app.consumer.last_fetched_s(tp)  # before the highwater (see there)
            lag = positions.lag((tp.topic, tp.partition), app.consumer.highwater(tp))
            lags[(tp.topic, tp.partition)] = (lag, fetched_s)
        return lags

    def input_progress() -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
        """The input partitions this worker has not read to their end, and those it has; the
        ones far behind (a backlog) become ``buffers.backlogged``. A partition read to its end
        is complete up to the newest time read on two partitions before its fetch was answered
        (``streams.vouching``)."""
        lagging, caught_up = set(), set()
        buffers.backlogged = set()
        for tp, (lag, fetched_s) in partition_lags().items():
            if tp[0] not in inputs.topics:
                continue
            (caught_up if lag == 0 else lagging).add(tp)
            if lag is None or lag > BACKLOG_RECORDS:
                buffers.backlogged.add(tp)
            seen_by_then = None if lag != 0 or fetched_s is None else latest.before(fetched_s)
            if seen_by_then is not None:
                buffers.vouch(tp, seen_by_then)
        latest.note(time.time(), buffers.latest())
        return lagging, caught_up

    def current_generation(events: list[Any]) -> list[Any]:
        fresh = of_generation(events, app.consumer_generation_id)
        if len(fresh) < len(events):
            metrics.stale_events.inc(len(events) - len(fresh))
            log.info(
                "rebalance: %d inputs fetched before it are left to be read again",
                len(events) - len(fresh),
            )
        return fresh

    @app.agent(inputs)
    async def match(stream):
        # an input is acknowledged when its verdict is written, not when buffered;
        # the next batches are buffered while a round is decided (streams.rounds)
        rounds = Rounds(decide_ready)
        async for taken in batches(stream, settings.batch_size, settings.batch_timeout_s):
            events = current_generation(taken)
            metrics.count_in(events)
            await admit(sort_events(events, clock))
            # buffered now (admit waits for the helper meanwhile); none of a rebalance since
            positions.buffered(events, app.consumer_generation_id)
            await rounds.admitted()

    @app.agent(gateway_in)
    async def gateway(stream):
        """Gateway batches: while a round is written, the next is judged (in the helper) and
        the one after it taken; rounds are written, and their inputs acknowledged, in order."""

        async def written_after(judging: Any, previous: Any) -> None:
            judged, tokens = await judging
            if previous is not None:
                await previous
            if judged:
                await write_gateway_batches(judged, tokens)

        rounds: deque[Any] = deque()
        try:
            async for events in stream.noack_take(
                settings.gateway_take, within=settings.batch_timeout_s
            ):
                metrics.count_in(events)
                judging = asyncio.ensure_future(judge_gateway_batches(events))
                previous = rounds[-1] if rounds else None
                rounds.append(asyncio.ensure_future(written_after(judging, previous)))
                while len(rounds) > GATEWAY_ROUNDS_IN_FLIGHT:
                    await rounds.popleft()
        finally:
            while rounds:
                await rounds.popleft()

    @app.agent(heartbeats_in)
    async def heartbeats(stream):
        async for events in stream.take_events(
            settings.batch_size, within=settings.batch_timeout_s
        ):
            metrics.count_in(events)
            batch = [record for record, _ in await decoded(events, schemas.DEVICE_HEARTBEAT)]
            await until_written("heartbeats", partial(sink.write_heartbeats, batch))

    @app.agent(blacklist_in)
    async def blacklist(stream):
        """黑名单 updates (add / remove a plate) into Redis, in the order sent."""
        async for events in stream.take_events(
            settings.batch_size, within=settings.batch_timeout_s
        ):
            metrics.count_in(events)
            updates = []
            for update, event in await decoded(events, schemas.BLACKLIST_UPDATE):
                problem = update_problem(update)
                if problem is not None:
                    await send_dead(event, *problem)
                    continue
                updates.append(update)
            await until_written("blacklist", partial(apply_updates, redis, updates))

    @app.agent(feedback_in)
    async def feedback(stream):
        """Officers' reports (接受 / 到达 / 处置结果 / 在岗状态) applied to their orders."""
        async for event in stream.events():
            metrics.count_in([event])
            try:
                fb = schemas.DISPATCH_FEEDBACK.decode_wire(event.value)
            except schemas.DecodeError as exc:
                await send_dead(event, "undecodable", str(exc))
                continue
            now_us = int(time.time() * US)
            try:
                applied = await until_written(
                    "orders", partial(apply_feedback, fb, order_sink, registry, now_us)
                )
            except OrderRefused as exc:
                await send_dead(event, f"feedback_{exc.reason}", str(exc))
                continue
            metrics.feedback.labels(fb["kind"], applied.result.split(":")[0]).inc()
            if applied.result == "ok" and applied.successor is not None:
                await send_orders([applied.successor], {applied.successor["order_id"]})
            if applied.result.startswith("status:"):  # it moved on (a second tap, a race)
                await send_dead(event, "feedback_order_status", f"order is {applied.result[7:]}")

    @app.timer(2.0)
    async def escalate():
        """Orders nobody accepted within ``accept_timeout_s`` go to the next unit."""
        now_us = int(time.time() * US)
        successors = await until_written(
            "orders",
            partial(escalate_overdue, order_sink, registry, now_us, settings.accept_timeout_s),
        )
        if successors:
            await send_orders(successors, {o["order_id"] for o in successors})

    @app.task
    async def serve_pages():
        if not settings.web_port:
            return

        async def send_feedback(fb: dict[str, Any]) -> None:
            encode = schemas.DISPATCH_FEEDBACK.encode_wire
            await send_all(T.DISPATCH_FEEDBACK, [(fb["unit_id"].encode(), encode(fb))])

        pages = web_app(
            redis,
            registry,
            send_feedback,
            report_check(registry),
            settings.heartbeat_interval_s,
            settings.accept_timeout_s,
        )
        runners.append(await serve(pages, settings.web_addr, settings.web_port))
        log.info("pages on http://%s:%d/", settings.web_addr, settings.web_port)

    @app.on_partitions_assigned.connect
    async def mark_ready(sender, assigned, **kwargs):
        # before any record of these partitions is read: what their sites have decided already
        buffers.restore(await until_written("progress", sink.match_progress))
        chain.restore(await until_written("evidence", sink.evidence_heads))
        metrics.assigned.set(len(assigned))
        await sink.mark_ready(len(assigned))

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender, revoked, **kwargs):
        """What another worker now owns is re-read there from the committed offsets: drop it
        here, undecided, so that it is not decided twice on partial data."""
        gone = {(tp.topic, tp.partition) for tp in revoked}
        dropped = buffers.forget(gone)
        positions.forget(gone)  # read again from the committed offset if it comes back
        if dropped:
            log.info("rebalance: %d buffered vehicles left to their new owner", dropped)

    @app.timer(1.0)
    async def decide_stalled():
        """The time bound: a weighing does not wait forever for its reads. Its clock runs
        while the broker answers."""
        up = await broker_answers(app)
        broker_time.tick(up)
        metrics.broker_up.set(1 if up else 0)
        await decide_ready()

    @app.timer(max(settings.heartbeat_interval_s / 4, 1.0))
    async def judge_devices():
        """Device online / normal rates (设备在线率) into Redis and Prometheus: a device that
        misses three heartbeat intervals is offline."""
        ids = sorted(registry.wim_devices) + sorted(registry.cameras)
        h = await until_written(
            "devices",
            partial(device_kpis, redis, ids, settings.heartbeat_interval_s, int(time.time() * US)),
        )
        metrics.devices_online.set(h.online_rate)
        metrics.devices_normal.set(h.normal_rate)
        late, ahead = timing.take()
        alerts = device_alerts(
            h,
            registry,
            alert_rules,
            int(time.time() * US),
            late,
            ahead,
            settings.publish_slack_s,
        )
        new = await until_written(
            "devices",
            partial(sink.write_alerts_once, alerts, K.OPS_ALERT_KEY, K.OPS_ALERT_STREAM),
        )
        await send_alerts(alerts, set(new))

    @app.timer(LATE_REPORT_S)
    async def report_late():
        """Devices that publish later than the slack break what "known until" rests on."""
        if late_unreported:
            log.warning(
                "inputs published more than %.1f s after capture in the last %.0f s, per device: "
                "%s; their sites may have been decided without them "
                "(ZHICHAO_PUBLISH_SLACK_S, zhichao_late_inputs)",
                settings.publish_slack_s,
                LATE_REPORT_S,
                dict(sorted(late_unreported.items())),
            )
            late_unreported.clear()

    @app.timer(5.0)
    async def measure_lag():
        lag: dict[str, int] = {}
        for (topic, _), (n, _) in partition_lags().items():
            lag[topic] = lag.get(topic, 0) + (n or 0)
        for topic, n in lag.items():
            metrics.consumer_lag.labels(topic).set(n)

    @app.task
    async def serve_metrics():
        if settings.metrics_port:
            metrics.serve(settings.metrics_port, settings.metrics_addr)
            log.info(
                "metrics on http://%s:%d/metrics", settings.metrics_addr, settings.metrics_port
            )

    async def close() -> None:
        """Stop the pages and release the Redis connections (when the worker stops)."""
        for runner in runners:
            await runner.cleanup()
        await redis.aclose()
        decider.close()

    app._zhichao_close = close
    return app
