"""A round's inputs are acknowledged only once its messages are delivered, while the next round
goes on (``streams.delivery``): no acknowledgement before its delivery, at most ``most`` rounds
waiting, and a failed delivery fails a later round instead of vanishing."""

from __future__ import annotations

import asyncio

import pytest

from streams.delivery import AcksAfterDelivery


class Event:
    def __init__(self) -> None:
        self.acked = False

    def ack(self) -> None:
        self.acked = True


def test_inputs_are_acknowledged_once_their_deliveries_are_done_not_before():
    async def main():
        acks = AcksAfterDelivery()
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        events = [Event(), None, Event()]
        await acks.after([first, second], events)  # returns at once: the round goes on
        first.set_result(None)
        await asyncio.sleep(0)
        assert not any(e.acked for e in events if e)
        second.set_result(None)
        await asyncio.sleep(0.01)
        assert all(e.acked for e in events if e)

    asyncio.run(main())


def test_a_round_without_messages_acknowledges_its_inputs_right_away():
    async def main():
        acks = AcksAfterDelivery()
        event = Event()
        await acks.after([], [event])
        await asyncio.sleep(0)
        assert event.acked

    asyncio.run(main())


def test_past_most_rounds_waiting_a_round_waits_for_the_oldest():
    async def main():
        acks = AcksAfterDelivery(most=2)
        loop = asyncio.get_running_loop()
        pending = [loop.create_future() for _ in range(3)]
        events = [Event() for _ in range(3)]
        await acks.after([pending[0]], [events[0]])
        await acks.after([pending[1]], [events[1]])
        third = asyncio.ensure_future(acks.after([pending[2]], [events[2]]))
        await asyncio.sleep(0.01)
        assert not third.done()  # three rounds waiting: it holds for the first
        pending[0].set_result(None)
        await asyncio.wait_for(third, 1)
        assert events[0].acked and not events[1].acked
        for f in pending[1:]:
            f.set_result(None)
        await asyncio.sleep(0.01)
        assert all(e.acked for e in events)

    asyncio.run(main())


def test_a_failed_delivery_fails_the_next_round_and_leaves_its_inputs_unacknowledged(caplog):
    async def main():
        acks = AcksAfterDelivery()
        loop = asyncio.get_running_loop()
        failed = loop.create_future()
        event = Event()
        await acks.after([failed], [event])
        failed.set_exception(ConnectionError("broker gone"))
        await asyncio.sleep(0.01)  # the waiting round's task sees it
        with pytest.raises(ConnectionError, match="broker gone"):
            await acks.after([], [Event()])
        assert not event.acked  # read again after a restart, decided again the same way
        assert "not delivered" in caplog.text  # the operator heard of it when it failed

    asyncio.run(main())
