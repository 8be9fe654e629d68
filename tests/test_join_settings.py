"""The site join's tolerances are settings (``ZHICHAO_JOIN_*``), and the settings reach every
place that judges which camera can see which vehicle: the join itself (``streams.stages``), the
Decider in the main thread and in its helper, the buffers' capture windows and early settling.
One case throughout: a truck in lane 3 of a three-lane site, read only by lane 1's front camera
at the time its speed says. Two lanes away: the default join leaves the read alone, a join
allowed two lanes gives it to the truck."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from kernels.plates import JoinParams
from kernels.settle import settled_camera
from schemas.policy import load_policy
from schemas.registry import EXAMPLE_CITY
from schemas.settings import Settings
from schemas.units import US
from sim.config import SimConfig
from sim.traffic import CitySimulator
from streams.decider import Decider
from streams.deciding import cut_job
from streams.matching import MatchBuffers
from streams.stages import decide, join_params, join_site_reads, measure_passages

SITE = "SX-G104-K1260-D"  # three lanes, a front and a rear camera over each
CAMERA = f"{SITE}-CAM-F1"
PLATE = "陕A12345"
TWO_LANES = JoinParams(max_lane_gap=2)


@pytest.fixture(scope="module")
def policy(registry):
    return load_policy(registry.policy)


@pytest.fixture(scope="module")
def truck_and_read(registry):
    """A measured vehicle of ``SITE`` moved to lane 3, and one read of lane 1's front camera
    exactly when the truck reaches it."""
    traffic = CitySimulator(SimConfig(vehicles=200, seed=5), registry).run()
    measured, _ = measure_passages(
        [p for p in traffic.passages if p["site_id"] == SITE][:1], registry
    )
    truck = {**measured[0], "lane": 3}
    camera = registry.cameras[CAMERA]
    at_us = truck["ts_us"] + round(camera.d_cam_m / (truck["speed_kmh"] / 3.6) * US)
    read = {
        "read_id": "read-two-lanes-away",
        "camera_id": CAMERA,
        "site_id": SITE,
        "view": "front",
        "direction": truck["direction"],
        "ts_us": at_us,
        "plate": PLATE,
        "confidence": 0.98,
        "char_conf": None,
    }
    return truck, read


def test_the_join_settings_come_from_the_environment():
    s = Settings.load(environ={"ZHICHAO_JOIN_MAX_LANE_GAP": "2", "ZHICHAO_JOIN_GATE_TAU": "4"})
    assert join_params(s) == JoinParams(max_lane_gap=2, gate_tau=4.0)
    assert join_params(Settings.load(environ={})) == JoinParams()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("join_max_lane_gap", -1),
        ("join_tau_base_s", 0.0),
        ("join_gate_tau", 0.0),
        ("join_null_cost", -9.0),
        ("join_frame_gap_s", -0.1),
        ("join_min_speed_ms", 0.0),
        ("read_retention_s", 0.0),
        ("acks_rounds_in_flight", 0),
    ],
)
def test_bad_join_settings_are_rejected(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.load({name: value}, environ={})


def test_a_read_two_lanes_away_joins_only_when_the_setting_allows(registry, truck_and_read):
    truck, read = truck_and_read
    [(front, _)] = join_site_reads([truck], [read], registry)
    assert front == []
    [(front, _)] = join_site_reads([truck], [read], registry, TWO_LANES)
    assert front == [read]


def test_the_setting_reaches_the_verdict(registry, policy, truck_and_read):
    truck, read = truck_and_read
    allowed = join_params(Settings.load({"join_max_lane_gap": 2}, environ={}))
    [default] = decide([truck], [read], registry, policy)
    [wider] = decide([truck], [read], registry, policy, allowed)
    assert default["plate_front"] == ""
    assert wider["plate_front"] == PLATE


@pytest.mark.parametrize("processes", [0, 1])
def test_the_decider_decides_with_its_join_in_the_main_thread_and_the_helper(
    registry, policy, truck_and_read, processes
):
    truck, read = truck_and_read
    plates = {}
    for name, join in (("default", None), ("wider", TWO_LANES)):
        decider = Decider(registry, policy, EXAMPLE_CITY, "", processes, join=join)
        decider.start()
        try:
            cuts, _ = asyncio.run(decider.decide([cut_job([truck], [read], {})], []))
        finally:
            decider.close()
        assert not cuts[0].failures
        plates[name] = cuts[0].verdicts[0]["plate_front"]
    assert plates == {"default": "", "wider": PLATE}


def test_the_buffers_give_a_camera_two_lanes_away_a_window_only_when_allowed(
    registry, truck_and_read
):
    truck, _ = truck_and_read
    cameras = [c.id for c in MatchBuffers(registry)._cameras(SITE)]
    i = cameras.index(CAMERA)
    _, hi = MatchBuffers(registry)._windows(truck)
    assert hi[i] == -math.inf
    lo, hi = MatchBuffers(registry, join=TWO_LANES)._windows(truck)
    assert lo[i] < hi[i]


def test_settling_agrees_with_the_join_on_the_lane_gap():
    """One vehicle two lanes from the camera, one read at its expected time, nothing later."""
    t_exp, tau, lanes = np.array([10.0 * US]), np.array([0.5 * US]), np.array([3])
    read_ts, clash = np.array([10.0 * US]), np.array([0.0])
    later = 100.0 * US  # every later vehicle and read comes long after
    vehicle_of, _ = settled_camera(t_exp, tau, lanes, 1, read_ts, clash, later, later, later)
    assert vehicle_of.tolist() == [-1]
    vehicle_of, settled = settled_camera(
        t_exp, tau, lanes, 1, read_ts, clash, later, later, later, TWO_LANES
    )
    assert vehicle_of.tolist() == [0]
    assert settled.tolist() == [True]
