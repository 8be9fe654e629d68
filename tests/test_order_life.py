"""The life of a dispatch order (streams.order_life, streams.feedback.successor_of): who may do
what in which status, what each step adds to the KPIs, escalation to the next unit and then the
command centre, and the static re-weigh against the WIM weighing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.units import US
from streams.dispatch import COMMAND_CENTRE, plan_interception
from streams.dispatch import order_for as make_order
from streams.feedback import successor_of
from streams.order_life import (
    OrderRefused,
    accept,
    arrive,
    close,
    escalate,
    overdue,
    reweigh,
    unit_status,
)


def alert(site_id: str = "SX-G104-K1260-D", gvw: float = 62_000.0, limit: float = 49_000.0):
    return {
        "alert_id": "浙D12345|severe_overlimit|2026-12-01",
        "reason": "severe_overlimit",
        "message": "严重超限 拦截",
        "site_id": site_id,
        "plate": "浙D12345",
        "passage_id": "P-1",
        "device_id": "WIM-G104-K1260-D",
        "ts_us": 0,
        "vehicle_class": "6",
        "gvw_kg": gvw,
        "limit_kg": limit,
        "overload_pct": (gvw - limit) / limit * 100,
    }


def first_order(registry, site_id="SX-G104-K1260-D", local=True):
    a = alert(site_id)
    plan = plan_interception(registry.sites[site_id], 60, 0.0, 0.0, registry, {})
    return make_order(a, plan, registry, 0, 60.0, local)


def test_unaccepted_orders_go_to_the_next_unit_then_the_command_centre(registry):
    order = first_order(registry)
    assert order["unit_id"] == "U-KQ-02" and order["tried"] == ["U-KQ-02"]
    assert not overdue(order, 30 * US, 60)
    assert overdue(order, 61 * US, 60)
    units = []
    now = 0
    for step in range(3):
        now += 61 * US
        successor = successor_of(order, registry, {}, now)
        change = escalate(order, successor, now)
        assert change.expected_status == "open" and change.order["status"] == "escalated"
        assert change.order["successor"] == successor["order_id"]
        assert successor["order_id"].endswith(f":{step + 1}")
        assert successor["first_ordered_us"] == 0  # alert-to-accept counts from the first
        units.append(successor["unit_id"])
        order = successor
    # U-GS-01 (500+60 s) next, then U-KQ-01 (900+60 <= 1260-122 s), then nobody in time
    assert units == ["U-GS-01", "U-KQ-01", COMMAND_CENTRE]
    assert not overdue(order, now + 3600 * US, 60)  # the command centre's orders wait for it
    with pytest.raises(OrderRefused, match="not U-KQ-02's"):
        accept(order, "U-KQ-02", now)


def test_accept_arrive_close_with_a_reweigh_that_confirms(registry):
    order = first_order(registry)
    with pytest.raises(OrderRefused) as refused:
        accept(order, "U-YC-01", 5 * US)
    assert refused.value.reason == "not_your_order"
    accepted = accept(order, "U-KQ-02", 20 * US)
    assert accepted.counters == {"accepted": 1, "accept_s_total": 20.0}
    assert accepted.unit_state["available"] is False
    with pytest.raises(OrderRefused):  # no second accept
        accept(accepted.order, "U-KQ-02", 21 * US)
    assert not overdue(accepted.order, 500 * US, 60)  # accepted orders are not moved
    arrived = arrive(accepted.order, "U-KQ-02", 300 * US)
    assert arrived.unit_state["at"] == order["point_id"]
    closed = close(arrived.order, "U-KQ-02", "intercepted", 400 * US, static_gvw_kg=60_000.0)
    assert closed.closes and closed.expected_status == "arrived"
    assert closed.order["reweigh"] == {
        "static_gvw_kg": 60_000.0,
        "deviation_pct": 3.33,  # (62,000 - 60,000) / 60,000
        "confirms": True,
    }
    assert closed.counters["intercept_s_total"] == 400.0
    assert closed.counters["handled_local"] == 1 and closed.counters["reweigh_confirmed"] == 1
    assert closed.drift == ("WIM-G104-K1260-D", 3.33)
    assert closed.unit_state == {"available": True, "at": order["point_id"], "status": "available"}
    with pytest.raises(OrderRefused):
        close(closed.order, "U-KQ-02", "not_found", 401 * US)


def test_a_reweigh_under_the_limit_does_not_confirm_the_wim_overload(registry):
    order = first_order(registry)
    checked = reweigh(order, 48_500.0)
    assert checked["confirms"] is False and checked["deviation_pct"] > 0
    closed = close(order, "U-KQ-02", "intercepted", 10 * US, static_gvw_kg=48_500.0)
    assert closed.counters["reweigh_confirmed"] == 0
    # closing an order nobody accepted counts it accepted now
    assert closed.counters["accepted"] == 1 and closed.expected_status == "open"


@pytest.mark.parametrize("bad", [0.0, -5.0, math.nan, math.inf, 1e9, 120.0])
def test_absurd_static_weights_are_refused(registry, bad):
    with pytest.raises(OrderRefused) as refused:
        close(first_order(registry), "U-KQ-02", "intercepted", 10 * US, static_gvw_kg=bad)
    assert refused.value.reason == "bad_reweigh"


def test_outcomes_and_who_may_close(registry):
    order = first_order(registry)
    with pytest.raises(OrderRefused, match="unknown outcome"):
        close(order, "U-KQ-02", "vanished", 1)
    with pytest.raises(OrderRefused, match="劝返"):
        close(order, "U-KQ-02", "refused_entry", 1)
    # the command centre may cancel anyone's order
    cancelled = close(order, COMMAND_CENTRE, "cancelled", 1)
    assert (
        cancelled.order["closed_by"] == COMMAND_CENTRE and "handled_local" not in cancelled.counters
    )
    toll = first_order(registry, "SX-G60-KQ-ENT")
    assert toll["action"] == "refuse_entry" and toll["unit_id"] == COMMAND_CENTRE
    refused = close(toll, COMMAND_CENTRE, "refused_entry", 5 * US)
    assert refused.counters["handled_local"] == 1 and refused.unit_state is None


def test_unit_status_reports(registry):
    points = set(registry.interception_points)
    assert unit_status("busy", None, points) == {"available": False, "at": None, "status": "busy"}
    assert unit_status("available", "IP-G104-K20", points)["at"] == "IP-G104-K20"
    with pytest.raises(OrderRefused):
        unit_status("asleep", None, points)
    with pytest.raises(OrderRefused):
        unit_status("available", "IP-NOWHERE", points)


ACTIONS = st.sampled_from(["accept", "arrive", "intercepted", "not_found", "cancelled"])
UNITS = st.sampled_from(["U-KQ-02", "U-KQ-01", COMMAND_CENTRE])


@given(st.lists(st.tuples(ACTIONS, UNITS), max_size=8))
def test_any_sequence_of_reports_keeps_the_order_consistent(registry, steps):
    """Whatever officers tap, in any order: an order closes at most once, only through allowed
    statuses, and each applied change starts from the status the order had."""
    order = first_order(registry)
    closes = 0
    for i, (action, by) in enumerate(steps):
        now = (i + 1) * US
        try:
            if action == "accept":
                change = accept(order, by, now)
            elif action == "arrive":
                change = arrive(order, by, now)
            else:
                change = close(order, by, action, now)
        except OrderRefused:
            continue
        assert change.expected_status == order["status"]
        assert by in (order["unit_id"], COMMAND_CENTRE)
        closes += change.closes
        order = change.order
    assert closes <= 1
    assert order["status"] in ("open", "accepted", "arrived", "closed")


def test_the_redis_scripts_name_the_keys_of_sinks_constants():
    """The Lua scripts build some key names themselves: they must be the constants'."""
    from sinks import constants as K
    from sinks.order_sink import CHANGE_ORDER
    from sinks.redis_sink import WRITE_BATCH

    for name in (K.ACTIVE_ORDERS_KEY, K.UNITS_KEY, K.ORDER_STREAM, K.DRIFT_KEY):
        assert f"'{name}'" in CHANGE_ORDER
    for name in (K.ACTIVE_ORDERS_KEY, K.ORDER_STREAM, K.ALERT_STREAM):
        assert f"'{name}'" in WRITE_BATCH


def test_the_command_centre_assigns_an_order_to_the_unit_it_chooses(registry):
    from streams.feedback import change_for

    order = first_order(registry)  # to U-KQ-02
    fb = {"unit_id": COMMAND_CENTRE, "kind": "assign", "assign_to": "U-YC-01"}
    change = change_for(order, fb, 30 * US, registry)
    succ = change.successor
    assert change.order["status"] == "escalated" and change.counters == {"assigned": 1}
    assert succ["unit_id"] == "U-YC-01" and succ["escalation"] == 1
    assert succ["point_id"] == order["point_id"]  # the only point ahead on that road
    # U-YC-01 needs 1700 + 60 s to IP-G104-K05, the truck 1260 - 30 s: sent, marked late
    assert "late" in succ["reason"]
    with pytest.raises(OrderRefused) as refused:
        change_for(order, {**fb, "unit_id": "U-KQ-02"}, 30 * US, registry)
    assert refused.value.reason == "not_command_centre"
    with pytest.raises(OrderRefused):
        change_for(order, {**fb, "assign_to": "U-KQ-02"}, 30 * US, registry)  # its unit already
    with pytest.raises(OrderRefused):
        change_for(order, {**fb, "assign_to": "U-NOBODY"}, 30 * US, registry)
    accepted = accept(order, "U-KQ-02", 10 * US).order
    with pytest.raises(OrderRefused):  # an accepted order is the unit's
        change_for(accepted, fb, 30 * US, registry)
