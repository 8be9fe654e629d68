"""The match agent's inbox (``streams.inbox``): batches as Faust's ``noack_take`` makes them, the
consumer's back-pressure when it is full, the flow control's clearing in a rebalance, and the
conductor sending an inbox topic's partitions there and every other topic to its stream."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.inbox import Arrival, Conductor, Inbox, InboxTopic
from streams.transport import App


class Message:
    def __init__(self, offset: int) -> None:
        self.offset, self.value, self.acked_by = offset, f"v{offset}".encode(), None

    def ack(self, consumer) -> bool:
        self.acked_by = consumer
        return True


def arrivals(n: int, start: int = 0) -> list[Arrival]:
    return [Arrival(Message(i), "consumer") for i in range(start, start + n)]


def never_full():
    raise AssertionError("the inbox was not full")


def test_an_arrival_is_its_message_value_and_acknowledges_through_the_consumer():
    (arrival,) = arrivals(1, start=7)
    assert arrival.value == b"v7"
    assert arrival.ack() and arrival.message.acked_by == "consumer"


def test_a_full_batch_is_taken_at_once_in_order_and_the_rest_stays():
    async def main():
        inbox = Inbox(maxsize=100)
        for a in arrivals(10):
            await inbox.put(a, "tp", never_full)
        started = time.monotonic()
        first = await inbox.take(4, within_s=5.0)
        second = await inbox.take(4, within_s=5.0)
        return first, second, len(inbox), time.monotonic() - started

    first, second, left, took_s = asyncio.run(main())
    assert [a.message.offset for a in first] == [0, 1, 2, 3]
    assert [a.message.offset for a in second] == [4, 5, 6, 7]
    assert left == 2 and took_s < 1.0  # full batches do not wait out the window


def test_a_partial_batch_comes_after_the_window_and_an_empty_inbox_waits_for_a_record():
    async def main():
        inbox = Inbox(maxsize=100)
        for a in arrivals(3):
            await inbox.put(a, "tp", never_full)
        partial = await inbox.take(10, within_s=0.05)

        async def later():
            await asyncio.sleep(0.2)
            await inbox.put(arrivals(1, start=3)[0], "tp", never_full)

        feeding = asyncio.ensure_future(later())
        started = time.monotonic()
        waited = await inbox.take(10, within_s=0.05)
        await feeding
        return partial, waited, time.monotonic() - started

    partial, waited, took_s = asyncio.run(main())
    assert [a.message.offset for a in partial] == [0, 1, 2]
    assert [a.message.offset for a in waited] == [3] and took_s >= 0.2


def test_a_batch_fills_while_the_take_waits():
    async def main():
        inbox = Inbox(maxsize=100)

        async def feed():
            for a in arrivals(5):
                await inbox.put(a, "tp", never_full)
                await asyncio.sleep(0)

        feeding = asyncio.ensure_future(feed())
        batch = await inbox.take(5, within_s=5.0)
        await feeding
        return batch

    assert [a.message.offset for a in asyncio.run(main())] == [0, 1, 2, 3, 4]


def test_a_full_inbox_pauses_the_partition_and_resumes_it_once_drained():
    events = []

    def on_full():
        events.append("paused")
        return lambda: events.append("resumed")

    async def main():
        inbox = Inbox(maxsize=4)
        for a in arrivals(4):
            await inbox.put(a, "tp", on_full)
        blocked = asyncio.ensure_future(inbox.put(arrivals(1, start=4)[0], "tp", on_full))
        await asyncio.sleep(0.01)
        assert not blocked.done() and events == ["paused"]
        first = await inbox.take(1, within_s=1.0)  # 3 left: room, but above the drop mark
        await asyncio.sleep(0.01)
        assert blocked.done() and events == ["paused"]
        rest = await inbox.take(10, within_s=0.01)  # empty: fetching resumes
        return first, rest

    first, rest = asyncio.run(main())
    assert events == ["paused", "resumed"]
    assert [a.message.offset for a in first + rest] == [0, 1, 2, 3, 4]


def test_clearing_forgets_what_waits_and_lets_a_blocked_delivery_in():
    async def main():
        inbox = Inbox(maxsize=2)
        pause = lambda: lambda: None  # noqa: E731 - pausing and resuming do nothing here
        for a in arrivals(2):
            await inbox.put(a, "tp", pause)
        blocked = asyncio.ensure_future(inbox.put(arrivals(1, start=2)[0], "tp", pause))
        await asyncio.sleep(0.01)
        inbox.clear()  # a rebalance
        await asyncio.sleep(0.01)
        assert blocked.done()
        return await inbox.take(10, within_s=0.01)

    assert [a.message.offset for a in asyncio.run(main())] == [2]


@pytest.fixture()
def app(tmp_path):
    return App("inbox-test", broker="kafka://127.0.0.1:9", store="memory://", datadir=tmp_path)


def test_the_conductor_sends_an_inbox_topics_partitions_to_its_inbox(app):
    inbox = Inbox(maxsize=10)
    topic = InboxTopic(app, topics=["wim.passages"], inbox=inbox)
    clone = topic.clone(is_iterator=True)
    assert isinstance(clone, InboxTopic) and clone.inbox is inbox
    assert isinstance(app.topics, Conductor)

    class FetchedMessage(Message):
        def ack(self, consumer):  # not called here
            raise AssertionError

    async def main():
        handler = app.topics._build_handler(("wim.passages", 0), {clone})
        message = FetchedMessage(5)
        await handler(message)
        return await inbox.take(1, within_s=0.01), message

    app.flow_control.resume()
    (arrival,), message = asyncio.run(main())
    assert arrival.message is message
    # Faust's check that a partition with records is being processed sees it
    assert ("wim.passages", 0) in app.monitor.stream_inbound_time


def test_an_inbox_topic_must_be_its_partitions_only_reader(app):
    inbox = Inbox(maxsize=10)
    clone = InboxTopic(app, topics=["wim.passages"], inbox=inbox).clone(is_iterator=True)
    other = app.topic("wim.passages").clone(is_iterator=True)
    with pytest.raises(RuntimeError, match="only reader"):
        app.topics._build_handler(("wim.passages", 0), {clone, other})
