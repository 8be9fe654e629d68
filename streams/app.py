"""The Faust app: thin agents that decode a batch, call the stages (kernels), and send.

``weigh``: ``wim.passages`` / ``wim.vehicles`` -> ``vehicles.measured``.
``match``: ``vehicles.measured`` + ``anpr.reads`` (co-partitioned by site) -> per-site buffers
-> verdicts on ``vehicles.verdicts`` and in Redis, decided as soon as a cut allows
(``streams.matching``), or after ``max_wait_s`` of wall time.
Anything that cannot be decoded or measured goes to ``dead.letters`` with a reason.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

import schemas
from schemas.policy import load_policy
from schemas.registry import load_registry
from sinks.redis_sink import VerdictSink
from streams import topics as T
from streams.matching import MatchBuffers
from streams.stages import decide, measure_controller, measure_passages, warm_up
from zhichao.settings import Settings

log = logging.getLogger(__name__)
US = 1_000_000


def _dead_letter(event: Any, reason: str, message: str) -> bytes:
    m = event.message
    return schemas.DEAD_LETTER.encode_wire({
        "topic": m.topic, "partition": m.partition, "offset": m.offset, "reason": reason,
        "message": message, "ts_us": int(time.time() * US), "key": m.key,
        "value": m.value if isinstance(m.value, bytes) else b"",
    })


def create_app(settings: Settings) -> faust.App:
    registry = load_registry(settings.registry_path)
    policy = load_policy(settings.policy or registry.policy)
    warm_up(registry, policy)
    app = faust.App(
        "zhichao",
        broker=settings.broker_url,
        store=settings.store,
        topic_partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
        producer_compression_type=None,
        producer_max_request_size=16 << 20,
        consumer_max_fetch_size=32 << 20,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    app.conf.zhichao = settings  # what the agents were built with, for the operator
    passages = app.topic(T.WIM_PASSAGES)
    controller = app.topic(T.WIM_VEHICLES)
    measured_out = app.topic(T.VEHICLES_MEASURED)
    match_in = app.topic(T.VEHICLES_MEASURED, T.ANPR_READS)
    verdicts_out = app.topic(T.VEHICLES_VERDICTS)
    heartbeats_in = app.topic(T.DEVICE_HEARTBEATS)
    dead = app.topic(T.DEAD_LETTERS)
    buffers = MatchBuffers(registry)
    sink = VerdictSink(settings.redis_dsn, settings.verdict_ttl_s)

    async def send_dead(event: Any, reason: str, message: str) -> None:
        log.warning("dead letter %s from %s[%d]@%d: %s", reason, event.message.topic,
                    event.message.partition, event.message.offset, message)
        await dead.send(value=_dead_letter(event, reason, message))

    async def measure_batch(events: list[Any], codec: schemas.Codec, measure) -> None:
        records, by_id = [], {}
        for event in events:
            try:
                record = codec.decode_wire(event.value)
            except schemas.DecodeError as exc:
                await send_dead(event, "undecodable", str(exc))
                continue
            records.append(record)
            by_id[record["passage_id"]] = event
        measured, rejected = measure(records, registry)
        for bad in rejected:
            await send_dead(by_id[bad.record["passage_id"]], bad.reason, bad.message)
        for m in measured:
            await measured_out.send(key=m["site_id"].encode(),
                                    value=schemas.MEASURED_VEHICLE.encode_wire(m))

    @app.agent(passages)
    async def weigh(stream):
        async for events in stream.take_events(settings.batch_size,
                                               within=settings.batch_timeout_s):
            await measure_batch(events, schemas.WIM_PASSAGE, measure_passages)

    @app.agent(controller)
    async def weigh_controller(stream):
        async for events in stream.take_events(settings.batch_size,
                                               within=settings.batch_timeout_s):
            await measure_batch(events, schemas.WIM_VEHICLE, measure_controller)

    def ack(tokens: list[Any]) -> None:
        for event in tokens:
            if event is not None:
                event.ack()

    async def decide_ready(flush_all: bool = False) -> None:
        for group in buffers.ready(flush_all):
            vehicles = sorted(group.vehicles, key=lambda r: (r["ts_us"], r["passage_id"]))
            reads = sorted(group.reads, key=lambda r: (r["ts_us"], r["read_id"]))
            verdicts = decide(vehicles, reads, registry, policy)
            await sink.write(verdicts)
            for v in verdicts:
                key = (v["plate_front"] or v["plate_rear"] or v["passage_id"]).encode()
                await verdicts_out.send(key=key, value=schemas.VERDICT.encode_wire(v))
            ack(group.tokens)  # only now: a crash before this redelivers the inputs
        ack(buffers.take_released())

    @app.agent(match_in)
    async def match(stream):
        # noack_take: an input is acknowledged when its verdict is written, not when buffered
        async for events in stream.noack_take(settings.batch_size,
                                              within=settings.batch_timeout_s):
            for event in events:
                try:
                    name, record = schemas.decode_any_wire(event.value)
                except schemas.DecodeError as exc:
                    await send_dead(event, "undecodable", str(exc))
                    event.ack()
                    continue
                if name == "zhichao.MeasuredVehicle":
                    buffers.add_vehicle(record, event)
                elif name == "zhichao.CameraRead":
                    buffers.add_read(record, event)
                else:
                    await send_dead(event, "wrong_schema", f"{name} on {event.message.topic}")
                    event.ack()
            await decide_ready()

    @app.agent(heartbeats_in)
    async def heartbeats(stream):
        async for events in stream.take_events(settings.batch_size,
                                               within=settings.batch_timeout_s):
            batch = []
            for event in events:
                try:
                    batch.append(schemas.DEVICE_HEARTBEAT.decode_wire(event.value))
                except schemas.DecodeError as exc:
                    await send_dead(event, "undecodable", str(exc))
            await sink.write_heartbeats(batch)

    @app.on_partitions_assigned.connect
    async def mark_ready(sender, assigned, **kwargs):
        await sink.mark_ready(len(assigned))

    @app.timer(1.0)
    async def decide_stalled():
        """The wall-clock bound: a weighing does not wait forever for its reads."""
        await decide_ready()

    return app
