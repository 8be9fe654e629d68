"""The decision floor of paced traffic: how long after its first axle each weighing *can* be
decided at all, by any worker that gives replay's verdicts.

A verdict needs the vehicle's plate reads, and a camera 20 m past the sensors sees a truck
crawling through a toll queue some 12 s after it was weighed; its site's inputs must then be
known complete (the publication slack, 2 s) and its reads final against the vehicles behind it
(``streams.matching``). That wait is event time. The latency benchmark publishes traffic at
its event times compressed ``speedup`` times, so in wall time the floor is the event-time wait
divided by the speedup: what produce→verdict latency cannot go below, however fast the worker.

It is found by running the worker's own buffers (``MatchBuffers``) over the traffic in event
order with perfect inputs — every record arrives the moment it is captured, every input known
complete up to now — asking after every ``step_s`` of event time which vehicles can be decided
(``settled``, early, or a site's cut, ``ready``)."""

from __future__ import annotations

from schemas.registry import Registry
from schemas.units import US
from sim.traffic import CityTraffic
from streams.deciding import measure_isolating
from streams.matching import MatchBuffers

DRAIN_S = 120.0  # after the last input: what is still undecided waits this long at most


def decision_floor_s(
    traffic: CityTraffic, registry: Registry, slack_s: float = 2.0, step_s: float = 0.25
) -> dict[str, float]:
    """Per passage id: event seconds from its first axle to the earliest moment it can be
    decided (to within ``step_s``); none for a passage the axle kernel refuses."""
    measured = measure_isolating("measure_passages", traffic.passages, registry)
    weighed = {v["passage_id"]: v["ts_us"] for v in measured.vehicles}
    vehicles = [(v["ts_us"], 0, v) for v in measured.vehicles]
    inputs = sorted(vehicles + [(r["ts_us"], 1, r) for r in traffic.reads], key=lambda x: x[:2])
    buffers = MatchBuffers(registry, slack_s=slack_s, clock=lambda: 0.0)  # never overdue
    streams: set[tuple[str, str]] = set()
    decided_us: dict[str, float] = {}
    step, i = step_s * US, 0
    now = inputs[0][0] if inputs else 0
    end = inputs[-1][0] + DRAIN_S * US if inputs else 0
    while now < end and len(decided_us) < len(weighed):
        now += step
        while i < len(inputs) and inputs[i][0] <= now:
            _, kind, record = inputs[i]
            if kind == 0:
                buffers.add_vehicle(record)
                streams.add(("vehicles", record["site_id"]))
            else:
                buffers.add_read(record)
                streams.add(("reads", record["site_id"]))
            i += 1
        for stream in streams:  # every input known complete up to now
            buffers.vouch(stream, int(now))
        for group in buffers.settled():
            ids = {v["passage_id"] for v in group.vehicles}
            buffers.decided_early(group, ids)
            for passage_id in ids:
                decided_us.setdefault(passage_id, now)
        for group in buffers.ready():
            for v in group.vehicles:
                decided_us.setdefault(v["passage_id"], now)
        buffers.take_released()
    return {pid: (decided_us[pid] - ts) / US for pid, ts in weighed.items() if pid in decided_us}
