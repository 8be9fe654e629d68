"""The consumer's quick delivery (``streams.transport.QuickDelivery``): a delivery that does
not wait needs no tasks; one that waits goes on in a task and is still interrupted, as in
Faust, by the flow's suspension; results and errors come out as they would from a task."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest
from mode import Service
from mode.utils.locks import Event

from streams.transport import QuickDelivery


class Consumer(QuickDelivery, Service):
    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = Event()


def test_a_delivery_that_does_not_wait_runs_without_tasks():
    async def main():
        consumer = Consumer()
        seen = []

        async def deliver(x):
            seen.append(x)
            return x * 2

        calls = []
        real_ensure_future = asyncio.ensure_future
        asyncio.ensure_future = lambda *a, **k: calls.append(a) or real_ensure_future(*a, **k)
        try:
            result = await consumer.wait_first(deliver(21), consumer.suspend_flow.wait())
        finally:
            asyncio.ensure_future = real_ensure_future
        return result, seen, calls

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the unused suspend_flow.wait() must be closed
        result, seen, calls = asyncio.run(main())
        gc.collect()
    assert result.results == [42] and not result.stopped
    assert seen == [21] and calls == []


def test_a_delivery_that_waits_finishes_in_a_task_with_its_value():
    async def main():
        consumer = Consumer()
        room = asyncio.get_running_loop().create_future()
        steps = []

        async def deliver():
            steps.append("before")
            value = await room  # a full stream buffer
            await asyncio.sleep(0)  # a bare yield on the way
            steps.append("after")
            return value

        waiting = asyncio.ensure_future(
            consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        )
        await asyncio.sleep(0.01)
        assert steps == ["before"] and not waiting.done()
        room.set_result("delivered")
        result = await waiting
        return result, steps

    result, steps = asyncio.run(main())
    assert result.results == ["delivered"] and steps == ["before", "after"]


def test_suspending_the_flow_cancels_a_waiting_delivery_as_faust_does():
    async def main():
        consumer = Consumer()
        never = asyncio.get_running_loop().create_future()
        outcome = []

        async def deliver():
            try:
                await never
            except asyncio.CancelledError:
                outcome.append("cancelled where it waited")
                raise

        waiting = asyncio.ensure_future(
            consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        )
        await asyncio.sleep(0.01)
        consumer.suspend_flow.set()  # a rebalance
        await asyncio.wait_for(waiting, 1.0)
        await asyncio.sleep(0.01)
        return outcome, never.cancelled()

    outcome, future_cancelled = asyncio.run(main())
    assert outcome == ["cancelled where it waited"] and future_cancelled


def test_errors_reach_the_caller_before_and_after_waiting():
    async def main():
        consumer = Consumer()
        failing = asyncio.get_running_loop().create_future()

        async def at_once():
            raise ValueError("undeliverable")

        async def after_waiting():
            await failing
            return "unreachable"

        with pytest.raises(ValueError, match="undeliverable"):
            await consumer.wait_first(at_once(), consumer.suspend_flow.wait())
        waiting = asyncio.ensure_future(
            consumer.wait_first(after_waiting(), consumer.suspend_flow.wait())
        )
        await asyncio.sleep(0)
        failing.set_exception(KeyError("gone"))
        with pytest.raises(KeyError, match="gone"):
            await waiting

    asyncio.run(main())


def test_a_suspended_flow_or_other_waits_take_faust_own_path():
    async def main():
        consumer = Consumer()
        consumer.suspend_flow.set()
        ran = []

        async def deliver():
            ran.append(1)

        # Faust's own wait_first races them in tasks: the suspension wins at once
        await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        ready = Event()
        ready.set()
        plain = await consumer.wait_first(ready)  # an event, not a coroutine
        return plain

    plain = asyncio.run(main())
    assert not plain.stopped
