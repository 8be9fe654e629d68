"""Batched gateway mode: ``wim.batches`` of whole vehicles judged as arrays
(``streams.gateway_round``). While a round is written, the next is judged (in the helper) and
the one after it taken; rounds are written, and their inputs acknowledged, in order."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from schemas import topics as T
from streams.worker import Worker

# gateway rounds taken and not yet written: one being written, the next ones judged in the
# helper or waiting for it. More than this holds more batches unacknowledged for no gain: the
# helper judges one round at a time.
ROUNDS_IN_FLIGHT = 3


def install(worker: Worker) -> None:
    app, settings, metrics, rounds_of = worker.app, worker.settings, worker.metrics, worker.gateway

    async def written_after(judging: Any, previous: Any) -> None:
        judged, tokens = await judging
        if previous is not None:
            await previous
        if judged:
            await rounds_of.write(judged, tokens)

    @app.agent(app.topic(T.WIM_BATCHES), name="gateway")
    async def gateway(stream):
        rounds: deque[Any] = deque()
        try:
            async for events in stream.noack_take(
                settings.gateway_take, within=settings.batch_timeout_s
            ):
                metrics.count_in(events)
                judging = asyncio.ensure_future(rounds_of.judge(events))
                previous = rounds[-1] if rounds else None
                rounds.append(asyncio.ensure_future(written_after(judging, previous)))
                while len(rounds) > ROUNDS_IN_FLIGHT:
                    await rounds.popleft()
        finally:
            while rounds:
                await rounds.popleft()
