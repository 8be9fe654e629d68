"""The officer loop in the worker: officers' reports (接受 / 到达 / 处置结果 / 在岗状态) applied
to their orders, unaccepted orders escalated when their time is up, and 黑名单 updates."""

from __future__ import annotations

import time
from functools import partial

import schemas
from schemas import topics as T
from schemas.orders import OrderRefused
from schemas.units import US
from sinks.blacklist import apply_updates, update_problem
from streams.feedback import apply_feedback, escalate_overdue
from streams.worker import Worker

ESCALATION_CHECK_S = 2.0  # how often overdue orders are looked for


def install(worker: Worker) -> None:
    app, settings, metrics, outbox = worker.app, worker.settings, worker.metrics, worker.outbox
    registry, order_sink, retry = worker.registry, worker.order_sink, worker.retry

    @app.agent(app.topic(T.DISPATCH_FEEDBACK), name="feedback")
    async def feedback(stream):
        async for event in stream.events():
            metrics.count_in([event])
            try:
                fb = schemas.DISPATCH_FEEDBACK.decode_wire(event.value)
            except schemas.DecodeError as exc:
                await outbox.send_dead(event, "undecodable", str(exc))
                continue
            now_us = int(time.time() * US)
            try:
                applied = await retry(
                    "orders", partial(apply_feedback, fb, order_sink, registry, now_us)
                )
            except OrderRefused as exc:
                await outbox.send_dead(event, f"feedback_{exc.reason}", str(exc))
                continue
            metrics.feedback.labels(fb["kind"], applied.result.split(":")[0]).inc()
            if applied.result == "ok" and applied.successor is not None:
                await outbox.send_orders([applied.successor], {applied.successor["order_id"]})
            if applied.result.startswith("status:"):  # it moved on (a second tap, a race)
                await outbox.send_dead(
                    event, "feedback_order_status", f"order is {applied.result[7:]}"
                )

    @app.timer(ESCALATION_CHECK_S, name="escalate")
    async def escalate():
        """Orders nobody accepted within ``accept_timeout_s`` go to the next unit."""
        now_us = int(time.time() * US)
        successors = await retry(
            "orders",
            partial(escalate_overdue, order_sink, registry, now_us, settings.accept_timeout_s),
        )
        if successors:
            await outbox.send_orders(successors, {o["order_id"] for o in successors})

    @app.agent(app.topic(T.BLACKLIST_UPDATES), name="blacklist")
    async def blacklist(stream):
        """黑名单 updates (add / remove a plate) into Redis, in the order sent."""
        async for events in stream.take_events(
            settings.batch_size, within=settings.batch_timeout_s
        ):
            metrics.count_in(events)
            updates = []
            for update, event in await outbox.decoded(events, schemas.BLACKLIST_UPDATE):
                problem = update_problem(update)
                if problem is not None:
                    await outbox.send_dead(event, *problem)
                    continue
                updates.append(update)
            await retry("blacklist", partial(apply_updates, worker.redis, updates))
