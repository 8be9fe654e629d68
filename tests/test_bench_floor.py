"""``bench.floor``: the earliest moment each weighing can be decided, found by the worker's own
buffers over perfect inputs, is never before its plate cameras' gates close plus the
publication slack, and every weighing gets one."""

from __future__ import annotations

import pytest

from bench.floor import decision_floor_s
from kernels.plates import JoinParams
from schemas.units import US
from sim.config import SimConfig
from sim.traffic import CitySimulator
from streams.deciding import measure_isolating
from streams.matching import MatchBuffers


@pytest.fixture(scope="module")
def traffic(registry):
    return CitySimulator(SimConfig(vehicles=120, seed=31), registry).run()


def test_every_weighing_waits_at_least_for_its_gates_and_the_slack(traffic, registry):
    floor = decision_floor_s(traffic, registry, slack_s=2.0, step_s=0.25)
    vehicles = measure_isolating("measure_passages", traffic.passages, registry).vehicles
    assert len(vehicles) == len(traffic.passages) == len(floor)
    windows = MatchBuffers(registry)
    frames = JoinParams().frame_gap_s * US  # a window is its gate and a frame gap more
    waits = []
    for v in vehicles:
        _, hi = windows._windows(v)
        closes = max((h for h in hi if h > -float("inf")), default=v["ts_us"]) - frames
        assert floor[v["passage_id"]] >= (closes - v["ts_us"]) / US + 2.0
        waits.append(floor[v["passage_id"]] - (closes - v["ts_us"]) / US - 2.0)
    # most are decided within a few steps of that (settled early), not at their site's cut
    assert sorted(waits)[len(waits) // 2] < 1.0


def test_a_longer_slack_raises_every_floor_by_as_much_or_more(traffic, registry):
    short = decision_floor_s(traffic, registry, slack_s=2.0)
    long = decision_floor_s(traffic, registry, slack_s=5.0)
    assert all(long[p] >= short[p] + 3.0 - 0.25 for p in short)
