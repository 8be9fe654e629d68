"""Batches of fetched input records for the match agent, without Faust's per-event stream.

Faust hands every fetched record to an agent through its conductor and the agent's stream: a
decode, an ``Event``, a queue, the stream's sensors and processors, then ``noack_take`` copies it
into its batch — about half of a loaded worker's main thread (``docs/performance.md``). The
match agent wants batches of raw records and acknowledges them itself, so for its topics the
conductor appends each record to an ``Inbox`` and the agent takes the batch from there.
Everything else stays Faust's: the consumer, its group and assignment, the generation of each
record, flow control in a rebalance, the acknowledgements and commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic
from typing import Any

import faust
from faust.transport import conductor

PRESSURE_DROP = 0.4  # fetching resumes once the inbox is down to this share of its size


class Arrival:
    """A fetched record as the agent handles it (the part of Faust's ``Event`` it uses): its
    raw value, its Kafka message, and its acknowledgement."""

    __slots__ = ("message", "_consumer")

    def __init__(self, message: Any, consumer: Any) -> None:
        self.message = message
        self._consumer = consumer

    @property
    def value(self) -> bytes:
        return self.message.value

    def ack(self) -> bool:
        return self.message.ack(self._consumer)


class Inbox:
    """Arrivals waiting for the agent, at most ``maxsize``. Past that a partition stops being
    fetched (the consumer's own back-pressure) and a delivery waits for room; the flow control
    clears the inbox in a rebalance (what it held is read again from the committed offsets)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.items: list[Arrival] = []
        self.want = 1  # the batch size of the take in progress
        self._enough = asyncio.Event()
        self._room = asyncio.Event()
        self._paused: dict[Any, Callable[[], None]] = {}  # partition -> resumes its fetching

    def __len__(self) -> int:
        return len(self.items)

    async def put(self, arrival: Arrival, tp: Any, on_full: Callable[[], None]) -> None:
        """Add ``arrival``; once the inbox is full, ``on_full`` stops fetching ``tp`` (its
        resumption is the returned callable) and the delivery waits for room."""
        items = self.items
        while len(items) >= self.maxsize:
            if tp not in self._paused:
                self._paused[tp] = on_full()
            self._room.clear()
            await self._room.wait()
        items.append(arrival)
        if len(items) >= self.want:
            self._enough.set()

    async def take(self, max_: int, within_s: float) -> list[Arrival]:
        """Up to ``max_`` arrivals, as soon as there are ``max_`` or ``within_s`` after the
        first wait began with some; waits for the first arrival if there is none."""
        self.want = max_
        while len(self.items) < max_:
            self._enough.clear()
            try:
                await asyncio.wait_for(self._enough.wait(), within_s)
            except TimeoutError:
                if self.items:
                    break
        batch = self.items[:max_]
        del self.items[:max_]  # in place: a delivery waiting for room holds the list
        self._enough.clear()
        self._drained()
        return batch

    def clear(self) -> None:
        """Forget what is waiting (Faust's flow control calls this in a rebalance)."""
        self.items.clear()
        self._drained()

    def _drained(self) -> None:
        self._room.set()
        if self._paused and len(self.items) <= self.maxsize * PRESSURE_DROP:
            paused, self._paused = self._paused, {}
            for resume in paused.values():
                resume()


class InboxTopic(faust.Topic):
    """A topic whose records go to ``inbox`` rather than to its stream (see the conductor
    below); its clones, such as the one the agent iterates, share the inbox."""

    def __init__(self, *args: Any, inbox: Inbox, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = inbox

    def _clone_args(self) -> dict[str, Any]:
        return {**super()._clone_args(), "inbox": self.inbox}


def _inbox_handler(app: Any, tp: Any, inbox: Inbox) -> Callable[[Any], Any]:
    acquire_flow_control = app.flow_control.acquire
    consumer = app.consumer
    # Faust's consumer logs "Stream has not started processing" for a partition that has
    # records and whose stream never took one (its monitor's inbound time): the inbox is that
    # partition's stream
    inbound = app.monitor.stream_inbound_time

    def on_full() -> Callable[[], None]:
        consumer.on_buffer_full(tp)
        return lambda: consumer.on_buffer_drop(tp)

    async def on_message(message: Any) -> None:
        await acquire_flow_control()
        inbound[tp] = monotonic()
        await inbox.put(Arrival(message, consumer), tp, on_full)

    return on_message


class Conductor(conductor.Conductor):
    """Faust's conductor, but the partitions of an ``InboxTopic`` go to its inbox."""

    def _build_handler(self, tp: Any, channels: Any) -> Any:
        inboxes = {id(c.inbox): c.inbox for c in channels if isinstance(c, InboxTopic)}
        if not inboxes:
            return super()._build_handler(tp, channels)
        if len(inboxes) > 1 or len(channels) > 1:
            raise RuntimeError(f"{tp}: an inbox topic must be its partitions' only reader")
        (inbox,) = inboxes.values()
        return _inbox_handler(self.app, tp, inbox)


async def batches(stream: Any, max_: int, within_s: float) -> Any:
    """The agent's batches: from its inbox when its topic has one (a running worker), else
    Faust's ``noack_take`` (an agent driven by ``test_context``). Neither acknowledges."""
    inbox = getattr(stream.channel, "inbox", None)
    if inbox is None:
        async for taken in stream.noack_take(max_, within=within_s):
            yield taken
        return
    stream.app.flow_control.manage_queue(inbox)
    aiter(stream.channel)  # subscribes the topic (Faust does this when a stream is iterated)
    while not stream.should_stop:
        yield await inbox.take(max_, within_s)
