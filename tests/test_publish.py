"""Publishing simulated traffic: a feed that is stopped sends no new weighing, and the reads
the vehicles already weighed still need (``zhichao up``'s end)."""

from __future__ import annotations

import asyncio

from schemas import topics as T
from schemas.units import US
from sim.publish import PaceClock, events_of, inputs_of_the_weighed, send_events
from zhichao.up import TAIL_US


class _Recorder:
    """Stands in for the Kafka producer: records what is sent, sets ``stop`` after ``n``."""

    def __init__(self, stop: asyncio.Event, n: int) -> None:
        self.sent: list[str] = []
        self.stop, self.n = stop, n

    async def send(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append(topic)
        if len(self.sent) == self.n:
            self.stop.set()


def test_a_stopped_feed_sends_nothing_more_and_says_how_far_it_got(city_traffic):
    events = events_of(city_traffic)[:50]

    async def run() -> tuple[int, int]:
        stop = asyncio.Event()
        producer = _Recorder(stop, 7)
        sent = await send_events(producer, events, PaceClock(events[0][0], 0), None, stop)
        return sent, len(producer.sent)

    assert asyncio.run(run()) == (7, 7)


def test_the_tail_holds_every_weigh_site_read_of_the_weighed_and_no_new_weighing(city_traffic):
    events = events_of(city_traffic)
    passages = sorted(city_traffic.passages, key=lambda p: p["ts_us"])
    edge = passages[len(passages) // 2]["ts_us"]  # weighing stops here
    unsent = [e for e in events if e[0] > edge]
    tail = inputs_of_the_weighed(unsent, edge, TAIL_US)
    assert tail and all(e[1] != T.WIM_PASSAGES for e in tail)
    assert max(e[0] for e in tail) <= edge + TAIL_US
    weighed = {p["passage_id"] for p in passages if p["ts_us"] <= edge}
    late_reads = {
        (r["camera_id"], r["ts_us"])
        for r in city_traffic.reads
        if r["_passage_id"] in weighed and r["ts_us"] > edge
    }
    assert late_reads  # some vehicles weighed before the edge pass their cameras after it
    in_tail = {(e[0], e[1]) for e in tail}
    assert all((ts, T.ANPR_READS) in in_tail for _, ts in late_reads)


def test_every_weigh_site_read_comes_within_the_tail_of_its_weighing(city_traffic):
    """TAIL_US is long enough for the slowest truck of the simulated city to reach its cameras
    (a walking-pace truck at a toll lane, gates 20 m past the sensors)."""
    weighed_at = {p["passage_id"]: p["ts_us"] for p in city_traffic.passages}
    gaps = [
        r["ts_us"] - weighed_at[r["_passage_id"]]
        for r in city_traffic.reads
        if r.get("_passage_id") in weighed_at
    ]
    assert gaps and max(gaps) <= TAIL_US, max(gaps) / US
