"""The officer loop in the worker: a unit's reports from ``dispatch.feedback`` applied to its
orders and its state, and unaccepted orders escalated when their time is up. Decisions are the
pure functions of ``streams.order_life``; ``sinks.order_sink`` writes them compare-and-set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas.registry import Registry
from schemas.units import US
from sinks.order_sink import OrderSink
from streams.dispatch import (
    COMMAND_CENTRE,
    Plan,
    UnitState,
    alert_of,
    order_for,
    plan_for_unit,
    plan_interception,
)
from streams.order_life import (
    OrderRefused,
    accept,
    arrive,
    close,
    escalate,
    overdue,
    reassign,
    unit_status,
)

log = logging.getLogger(__name__)
ORDER_KINDS = ("accept", "arrived", "outcome", "assign")
STATUS_KINDS = ("status", "position")


@dataclass(frozen=True)
class Applied:
    result: str  # 'ok', 'duplicate' (applied before), 'status:<now>' (the order moved on)
    order: dict[str, Any] | None = None
    successor: dict[str, Any] | None = None  # the order that took over (指派)


def change_for(
    order: dict[str, Any],
    fb: dict[str, Any],
    now_us: int,
    registry: Registry | None = None,
    target: UnitState | None = None,
):
    """What a report does to an order (raises ``OrderRefused``); an assignment by the command
    centre needs the registry and the chosen unit's state."""
    by = fb["unit_id"]
    if fb["kind"] == "assign":
        return assignment(order, fb, now_us, registry, target)
    if fb["kind"] == "accept":
        return accept(order, by, now_us)
    if fb["kind"] == "arrived":
        return arrive(order, by, now_us)
    if fb["outcome"] is None:
        raise OrderRefused("bad_outcome", "an outcome report needs its outcome")
    return close(order, by, fb["outcome"], now_us, fb["static_gvw_kg"], fb["note"])


def report_check(registry: Registry) -> Callable[[dict[str, Any], dict[str, Any]], Any]:
    """The pages' check of a report on an order: the change the worker will make of it, or
    ``OrderRefused`` with its reason (``sinks.web.server``)."""

    def check(order: dict[str, Any], fb: dict[str, Any]) -> Any:
        target = UnitState(fb["assign_to"]) if fb["assign_to"] else None
        return change_for(order, fb, fb["ts_us"], registry, target)

    return check


def assignment(
    order: dict[str, Any],
    fb: dict[str, Any],
    now_us: int,
    registry: Registry,
    target: UnitState | None,
):
    """The command centre gives an unaccepted order to the unit it chose (指派)."""
    if fb["unit_id"] != COMMAND_CENTRE:
        raise OrderRefused("not_command_centre", "only the command centre assigns orders")
    unit = registry.units.get(fb.get("assign_to") or "")
    if unit is None:
        raise OrderRefused("unknown_unit", f"unknown unit {fb.get('assign_to')!r}")
    if unit.id == order["unit_id"]:
        raise OrderRefused("same_unit", "the order is that unit's already")
    v = order["vehicle"]
    plan = plan_for_unit(
        registry.sites[v["site_id"]],
        v["speed_kmh"],
        v["weighed_us"] / US,
        now_us / US,
        registry,
        unit,
        target or UnitState(unit.id),
    )
    if plan is None:
        raise OrderRefused("no_point", "该单位没有可到达的拦截点")
    return reassign(order, next_order(order, plan, registry, now_us), now_us)


async def apply_feedback(
    fb: dict[str, Any], orders: OrderSink, registry: Registry, now_us: int
) -> Applied:
    """Apply one ``zhichao.DispatchFeedback`` record; raises ``OrderRefused`` for a report that
    names an unknown unit or order, or a change the order does not allow."""
    unit = fb["unit_id"]
    if unit not in registry.units and unit != COMMAND_CENTRE:
        raise OrderRefused("unknown_unit", f"unknown unit {unit!r}")
    if fb["kind"] in STATUS_KINDS:
        if unit == COMMAND_CENTRE:
            raise OrderRefused("bad_status", "the command centre has no position")
        state = unit_status(
            fb["status"] or "available", fb["location_id"], set(registry.interception_points)
        )
        fresh = await orders.set_unit_state(unit, state, fb["feedback_id"])
        return Applied("ok" if fresh else "duplicate")
    if fb["kind"] not in ORDER_KINDS:
        raise OrderRefused("bad_kind", f"unknown feedback kind {fb['kind']!r}")
    order = await orders.order(fb["order_id"] or "")
    if order is None:
        raise OrderRefused("unknown_order", "no such order")
    target = None
    if fb["kind"] == "assign" and fb.get("assign_to"):
        target = await orders.unit_state(fb["assign_to"])
    change = change_for(order, fb, now_us, registry, target)
    result = await orders.apply(change, now_us, fb["feedback_id"])
    return Applied(result, change.order, change.successor)


async def escalate_overdue(
    orders: OrderSink,
    registry: Registry,
    now_us: int,
    accept_timeout_s: float,
) -> list[dict[str, Any]]:
    """Orders nobody accepted in time go to the next unit that can still make it (or the
    command centre); the successors written, for the ``dispatch.orders`` topic. The units'
    states are read only when some order is overdue (this runs every 2 s)."""
    written = []
    due = [
        o
        for o in await orders.active(now_us - accept_timeout_s * US)
        if overdue(o, now_us, accept_timeout_s)
    ]
    states = await orders.unit_states() if due else {}
    for order in due:
        successor = successor_of(order, registry, states, now_us)
        result = await orders.apply(escalate(order, successor, now_us), now_us)
        if result == "ok":
            log.warning(  # no plate in the log (the order id carries it): units and times
                "an order to %s was not accepted in %.0f s: escalated to %s",
                order["unit_id"],
                accept_timeout_s,
                successor["unit_id"],
            )
            written.append(successor)
    return written


def successor_of(
    order: dict[str, Any], registry: Registry, states: dict[str, UnitState], now_us: int
) -> dict[str, Any]:
    """The order that takes over an unaccepted one: planned again from now, without the units
    tried before (the command centre when none is left in time)."""
    v = order["vehicle"]
    plan = plan_interception(
        registry.sites[v["site_id"]],
        v["speed_kmh"],
        v["weighed_us"] / US,
        now_us / US,
        registry,
        states,
        exclude=frozenset(order["tried"]),
    )
    return next_order(order, plan, registry, now_us)


def next_order(
    order: dict[str, Any], plan: Plan, registry: Registry, now_us: int
) -> dict[str, Any]:
    """The order of ``plan`` that takes over from ``order`` (same vehicle, next escalation)."""
    v = order["vehicle"]
    return order_for(
        alert_of(order),
        plan,
        registry,
        now_us,
        v["speed_kmh"],
        v["local"],
        order["escalation"] + 1,
        tuple(order["tried"]),
        order["first_ordered_us"],
        order.get("provisional", False),
    )
