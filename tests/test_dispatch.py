"""Interception dispatch on hand-built scenarios over the example city: each row says where the
vehicle is, which units are free, and which point and unit (or the command centre) the plan
must name. The expected answers were worked out by hand from the registry's distances and
travel tables (written next to each row)."""

from __future__ import annotations

import pytest

from streams.dispatch import (
    COMMAND_CENTRE,
    UnitState,
    plan_interception,
)

BUSY = False

# site, speed km/h, seconds since weighing, unavailable units, expected (action, point, unit)
SCENARIOS = [
    # G104 up at km 12.3 -> IP-G104-K20 (7.7 km: 462 s at 60); U-KQ-01 is there (60+60 s)
    ("SX-G104-K1234-U", 60, 0, (), ("intercept", "IP-G104-K20", "U-KQ-01")),
    # U-KQ-01 busy: next best U-GS-01 needs 600+60 > 462 s: nobody in time
    ("SX-G104-K1234-U", 60, 0, ("U-KQ-01",), (COMMAND_CENTRE, None, None)),
    # same, slow truck (20 km/h: 1386 s): U-GS-01 (660 s) beats U-KQ-02 (960) and U-PS-01 (1360)
    ("SX-G104-K1234-U", 20, 0, ("U-KQ-01",), ("intercept", "IP-G104-K20", "U-GS-01")),
    # slow truck, but the alert is 800 s late: 586 s left; only U-KQ-01 (120 s) makes it
    ("SX-G104-K1234-U", 20, 800, (), ("intercept", "IP-G104-K20", "U-KQ-01")),
    # ... and with U-KQ-01 busy, no one does (U-GS-01 needs 660 s)
    ("SX-G104-K1234-U", 20, 800, ("U-KQ-01",), (COMMAND_CENTRE, None, None)),
    # the vehicle has passed the only point ahead already (7.7 km at 60 km/h = 462 s < 500 s)
    ("SX-G104-K1234-U", 60, 500, (), (COMMAND_CENTRE, None, None)),
    # G104 down at km 26 -> IP-G104-K05 (21 km: 1260 s); U-KQ-02 is based there
    ("SX-G104-K1260-D", 60, 0, (), ("intercept", "IP-G104-K05", "U-KQ-02")),
    # U-KQ-02 busy: U-GS-01 (500+60) is quicker than U-KQ-01 (900+60)
    ("SX-G104-K1260-D", 60, 0, ("U-KQ-02",), ("intercept", "IP-G104-K05", "U-GS-01")),
    # S308 up at km 4.5 -> IP-S308-K12 (7.5 km at 55: 491 s); U-YC-01 based there
    ("SX-S308-K045-U", 55, 0, (), ("intercept", "IP-S308-K12", "U-YC-01")),
    # U-YC-01 busy: U-PS-01 600+60 = 660 > 491; nobody
    ("SX-S308-K045-U", 55, 0, ("U-YC-01",), (COMMAND_CENTRE, None, None)),
    # S308 down at km 16.2 -> IP-S308-K02 (14.2 km at 55: 929 s); U-PS-01 based there
    ("SX-S308-K062-D", 55, 0, (), ("intercept", "IP-S308-K02", "U-PS-01")),
    # U-PS-01 busy: U-YC-01 (600+60) quicker than U-YC-02 (1000+60, too late anyway)
    ("SX-S308-K062-D", 55, 0, ("U-PS-01",), ("intercept", "IP-S308-K02", "U-YC-01")),
    # speed unknown (0): the road's truck speed (55) is used, same answer
    ("SX-S308-K062-D", 0, 0, (), ("intercept", "IP-S308-K02", "U-PS-01")),
    # expressway entrances: refuse entry at the toll lane (劝返), no unit needed
    ("SX-G60-KQ-ENT", 30, 0, (), ("refuse_entry", "IP-G60-KQ", None)),
    ("SX-G60-YC-ENT", 30, 0, ("U-YC-02",), ("refuse_entry", "IP-G60-YC", None)),
    # every unit busy
    (
        "SX-G104-K1260-D",
        60,
        0,
        ("U-KQ-01", "U-KQ-02", "U-YC-01", "U-YC-02", "U-PS-01", "U-GS-01"),
        (COMMAND_CENTRE, None, None),
    ),
]


@pytest.mark.parametrize(("site_id", "speed", "late_s", "busy", "expected"), SCENARIOS)
def test_the_plan_names_the_eta_optimal_point_and_unit(
    registry, site_id, speed, late_s, busy, expected
):
    states = {u: UnitState(u, available=BUSY) for u in busy}
    plan = plan_interception(
        registry.sites[site_id],
        speed,
        weighed_s=0.0,
        now_s=late_s,
        registry=registry,
        states=states,
    )
    assert (plan.action, plan.point_id, plan.unit_id) == expected, plan
    if plan.action == "intercept":
        assert plan.slack_s >= 0  # the unit is there before the vehicle


def test_the_plan_is_eta_optimal_against_brute_force(registry):
    """Every (site, speed, lateness, one busy unit) combination: the plan's unit has the
    smallest ETA among the units that reach the chosen point in time, and no nearer point
    was reachable."""
    for site in registry.weigh_sites:
        for speed in (20, 40, 60, 90):
            for late in (0, 200, 600):
                for busy in [None, *registry.units]:
                    states = {busy: UnitState(busy, available=False)} if busy else {}
                    plan = plan_interception(site, speed, 0.0, late, registry, states)
                    if plan.action != "intercept":
                        continue
                    point = registry.interception_points[plan.point_id]
                    km = abs(point.km - site.km)
                    vehicle_eta = km / speed * 3600 - late
                    free = [u for u in registry.units.values() if u.id != busy]
                    in_time = [u for u in free if u.travel_s[point.id] + 60 <= vehicle_eta]
                    best = min(in_time, key=lambda u: (u.travel_s[point.id], u.id))
                    assert plan.unit_id == best.id


def test_a_unit_away_from_home_is_timed_from_where_it_is(registry):
    # U-KQ-01 parked at IP-G104-K05 (U-KQ-02's base): from there K20 is 900 s, too late
    away = {"U-KQ-01": UnitState("U-KQ-01", at="IP-G104-K05")}
    plan = plan_interception(registry.sites["SX-G104-K1234-U"], 60, 0.0, 0.0, registry, away)
    assert plan.action == COMMAND_CENTRE
    there = {"U-GS-01": UnitState("U-GS-01", at="IP-G104-K20")}
    plan = plan_interception(registry.sites["SX-G104-K1234-U"], 60, 0.0, 0.0, registry, there)
    assert plan.unit_id == "U-GS-01"  # already there (0 s) beats U-KQ-01 at home (60 s)
