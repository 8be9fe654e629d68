"""A plate read only by cameras over other lanes may be a neighbour's: such a verdict carries
``other_lane_plate`` and is never enforceable (it goes to review), while the same reads from
the vehicle's own lane support a fine."""

from __future__ import annotations

import pytest

from schemas.policy import load_policy
from sim.config import SimConfig
from sim.traffic import CitySimulator
from streams.stages import decide_with_support, join_site_reads, measure_passages


@pytest.fixture(scope="module")
def case(registry):
    """An enforceable rigid truck at a two-lane site, its matched reads, and the site's cameras
    per lane and view."""
    policy = load_policy(registry.policy)
    traffic = CitySimulator(SimConfig(vehicles=600, seed=3, overloaded_share=0.5), registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    matched = join_site_reads(measured, traffic.reads, registry)
    verdicts, _ = decide_with_support(measured, [], registry, policy, matched)
    for m, v, reads in zip(measured, verdicts, matched, strict=True):
        cams = {
            (c.lane, c.view): c.id
            for c in registry.cameras.values()
            if c.site == m["site_id"] and c.view in ("front", "rear")
        }
        lanes = {lane for lane, _ in cams}
        if v["enforceable"] and v["plate_front"] == v["plate_rear"] and len(lanes) > 1:
            return m, reads, cams, policy
    raise AssertionError("no enforceable rigid truck at a two-lane site in the sample")


def _moved(reads, cams, lane):
    return [{**r, "camera_id": cams[(lane, r["view"])]} for r in reads]


def test_reads_from_the_vehicles_own_lane_support_a_fine(case, registry):
    m, (front, rear), cams, policy = case
    [v], _ = decide_with_support([m], [], registry, policy, [(front, rear)])
    assert v["enforceable"] and "other_lane_plate" not in v["flags"]


def test_a_plate_only_other_lanes_cameras_read_goes_to_review(case, registry):
    m, (front, rear), cams, policy = case
    other = next(lane for lane, _ in cams if lane != m["lane"])
    moved = (_moved(front, cams, other), _moved(rear, cams, other))
    [v], _ = decide_with_support([m], [], registry, policy, [moved])
    assert "other_lane_plate" in v["flags"] and not v["enforceable"]
    assert v["verdict"] == "overlimit"  # still over the limit: only the fine waits for review


def test_an_unreadable_own_read_beside_a_neighbours_plate_goes_to_review(case, registry):
    """The join's one known slip: a neighbour speeding up gives its read to a truck whose own
    camera could not read its plate."""
    m, (front, rear), cams, policy = case
    other = next(lane for lane, _ in cams if lane != m["lane"])
    own_blank = [{**front[0], "plate": "", "char_conf": [], "confidence": 0.0, "read_id": "blank"}]
    neighbour = _moved(front, cams, other)
    [v], _ = decide_with_support([m], [], registry, policy, [(own_blank + neighbour, [])])
    assert "other_lane_plate" in v["flags"] and not v["enforceable"]
