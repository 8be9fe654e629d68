"""Weigh-in-motion passages, controller vehicles and camera reads into verdicts.

``wim.passages`` + ``wim.vehicles`` + ``anpr.reads`` (co-partitioned by site) come in through an
inbox the conductor fills (``streams.inbox``), not through Faust's per-event stream, and are
weighed and matched in one agent: a hop through an intermediate topic would double Faust's
per-event cost, which dominates the worker's time (DESIGN §6). An input is acknowledged when
its verdict is delivered, not when buffered (``streams.match_round``).
"""

from __future__ import annotations

import logging
from typing import Any

from streams.inbox import InboxTopic, batches
from streams.intake import sort_events
from streams.rounds import Rounds
from streams.transport import broker_answers
from streams.worker import Worker

log = logging.getLogger(__name__)
STALL_CHECK_S = 1.0  # how often the time bound is checked


def install(worker: Worker, inputs: InboxTopic) -> None:
    app, settings, metrics, rounds_of = worker.app, worker.settings, worker.metrics, worker.match

    @app.agent(inputs, name="match")
    async def match(stream):
        # the next batches are buffered while a round is decided (streams.rounds)
        rounds = Rounds(rounds_of.decide_ready)
        async for taken in batches(stream, settings.batch_size, settings.batch_timeout_s):
            events = worker.progress.current_generation(taken)
            metrics.count_in(events)
            await rounds_of.admit(sort_events(events, worker.clock))
            # buffered now (admit waits for the helper meanwhile); none of a rebalance since
            worker.positions.buffered(events, app.consumer_generation_id)
            await rounds.admitted()

    @app.timer(STALL_CHECK_S, name="decide_stalled")
    async def decide_stalled():
        """The time bound: a weighing does not wait forever for its reads. Its clock runs
        while the broker answers."""
        up = await broker_answers(app)
        worker.broker_time.tick(up)
        metrics.broker_up.set(1 if up else 0)
        await rounds_of.decide_ready()

    @app.on_partitions_assigned.connect
    async def mark_ready(sender: Any, assigned: Any, **kwargs: Any) -> None:
        # before any record of these partitions is read: what their sites have decided already
        await rounds_of.restore(worker.sink.match_progress)
        metrics.assigned.set(len(assigned))
        await worker.sink.mark_ready(len(assigned))

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        """What another worker now owns is re-read there from the committed offsets: drop it
        here, undecided, so that it is not decided twice on partial data."""
        gone = {(tp.topic, tp.partition) for tp in revoked}
        dropped = worker.buffers.forget(gone)
        worker.positions.forget(gone)  # read again from the committed offset if it comes back
        if dropped:
            log.info("rebalance: %d buffered vehicles left to their new owner", dropped)
