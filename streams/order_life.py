"""The life of a dispatch order (处置闭环): accepted (接受), arrived (到达), closed with an outcome
(处置结果), or escalated to the next unit when nobody accepts it in time.

Pure functions on order records as Redis stores them (``streams.dispatch.order_for``). Each
returns a ``Change``: the order afterwards, the status it must still have when the change is
written (the sink compares and sets, so a change decided twice — two workers' timers, a
redelivered feedback — lands once), the unit's new state, and what it adds to the dispatch KPIs.
A change that is not allowed raises ``OrderRefused`` with a reason code.
"""

from __future__ import annotations

import math
from typing import Any

from schemas.orders import COMMAND_CENTRE, LIVE, Change, OrderRefused
from schemas.units import US
from streams.dispatch import PROVISIONAL_MARK

OUTCOMES = ("intercepted", "not_found", "refused_entry", "cancelled")
OUTCOME_LABELS = {
    "intercepted": "已拦截",
    "not_found": "未发现",
    "refused_entry": "已劝返",
    "cancelled": "取消",
    "withdrawn": "撤回（复核未确认）",  # the worker's, for a provisional order: never an officer's
}
STATIC_GVW_RANGE_KG = (500.0, 200_000.0)  # a static scale reading outside this is a typo


def _check(order: dict[str, Any], by: str, statuses: tuple[str, ...]) -> None:
    # messages name no order id: it carries the plate, and these reach logs and dead letters
    if order["status"] not in statuses:
        raise OrderRefused("order_status", f"the order is {order['status']}")
    if by not in (order["unit_id"], COMMAND_CENTRE):
        raise OrderRefused("not_your_order", f"the order is {order['unit_id']}'s, not {by}'s")


def _since_ordered_s(order: dict[str, Any], now_us: int) -> float:
    return max(now_us - order["first_ordered_us"], 0) / US


def accept(order: dict[str, Any], by: str, now_us: int) -> Change:
    _check(order, by, ("open",))
    after = {**order, "status": "accepted", "accepted_us": now_us}
    return Change(
        after,
        "open",
        _busy(order),
        {"accepted": 1, "accept_s_total": _since_ordered_s(order, now_us)},
    )


def arrive(order: dict[str, Any], by: str, now_us: int) -> Change:
    _check(order, by, ("accepted",))
    after = {**order, "status": "arrived", "arrived_us": now_us}
    return Change(after, "accepted", _busy(order, at=order["point_id"]))


def reweigh(order: dict[str, Any], static_gvw_kg: float) -> dict[str, Any]:
    """The static re-weigh (复磅) against the WIM weighing: deviation in % of the static weight,
    and whether the static weight confirms the over-limit (the static scale is the legal one)."""
    low, high = STATIC_GVW_RANGE_KG
    if not (math.isfinite(static_gvw_kg) and low <= static_gvw_kg <= high):
        raise OrderRefused(
            "bad_reweigh", f"复磅重量 {static_gvw_kg} kg 不在 {low:.0f}–{high:.0f} kg"
        )
    v = order["vehicle"]
    return {
        "static_gvw_kg": static_gvw_kg,
        "deviation_pct": round((v["gvw_kg"] - static_gvw_kg) / static_gvw_kg * 100, 2),
        "confirms": static_gvw_kg > v["limit_kg"],
    }


def close(
    order: dict[str, Any],
    by: str,
    outcome: str,
    now_us: int,
    static_gvw_kg: float | None = None,
    note: str | None = None,
) -> Change:
    """Close an order with its outcome. Closing an order nobody accepted counts it as accepted
    now (an officer who acts at once may skip the button)."""
    if outcome not in OUTCOMES:
        raise OrderRefused("bad_outcome", f"unknown outcome {outcome!r}; one of {OUTCOMES}")
    _check(order, by, LIVE)
    if (
        outcome == "refused_entry"
        and order.get("action") != "refuse_entry"
        and by != COMMAND_CENTRE
    ):
        raise OrderRefused("bad_outcome", "劝返 closes only a toll-lane order")
    checked = reweigh(order, static_gvw_kg) if static_gvw_kg is not None else None
    after = {
        **order,
        "status": "closed",
        "outcome": outcome,
        "closed_us": now_us,
        "closed_by": by,
        "reweigh": checked,
        "note": (note or "")[:200] or None,
    }
    counters: dict[str, float] = {outcome: 1, "closed": 1}
    if order["status"] == "open":
        after["accepted_us"] = now_us
        counters |= {"accepted": 1, "accept_s_total": _since_ordered_s(order, now_us)}
    if outcome in ("intercepted", "refused_entry") and order["vehicle"]["local"] is not None:
        counters["handled_local" if order["vehicle"]["local"] else "handled_nonlocal"] = 1
    if outcome == "intercepted":
        counters["intercept_s_total"] = _since_ordered_s(order, now_us)
    drift = None
    if checked is not None:
        counters["reweighed"] = 1
        counters["reweigh_confirmed"] = 1 if checked["confirms"] else 0
        drift = (order["vehicle"]["device_id"], checked["deviation_pct"])
    unit = None
    if order["unit_id"] != COMMAND_CENTRE:
        unit = {"available": True, "at": order["point_id"], "status": "available"}
    return Change(after, order["status"], unit, counters, drift, closes=True)


def confirm(order: dict[str, Any], now_us: int) -> Change:
    """A provisional order (预判, ``streams.matching.Early.provisional``) whose vehicle's verdict
    calls for it after all: it stands, now as an ordinary order, in whatever status it has."""
    _check(order, COMMAND_CENTRE, LIVE)
    after = {
        **order,
        "provisional": False,
        "confirmed_us": now_us,
        "instruction": order["instruction"].removeprefix(PROVISIONAL_MARK),
    }
    return Change(after, order["status"])


def withdraw(order: dict[str, Any], now_us: int, note: str) -> Change:
    """A provisional order whose vehicle's verdict does not call for it (the rear reads named
    another plate, or took away the identification a fine needs): closed by the worker, the
    unit freed, counted as ``withdrawn`` only (not as an officer's outcome)."""
    _check(order, COMMAND_CENTRE, LIVE)
    after = {
        **order,
        "status": "closed",
        "outcome": "withdrawn",
        "closed_us": now_us,
        "closed_by": "system",
        "note": note[:200],
    }
    unit = None
    if order["unit_id"] != COMMAND_CENTRE:
        unit = {"available": True, "at": order.get("point_id"), "status": "available"}
    return Change(after, order["status"], unit, {"withdrawn": 1}, closes=True)


def overdue(order: dict[str, Any], now_us: int, accept_timeout_s: float) -> bool:
    """An order to a unit that nobody accepted within the timeout."""
    return (
        order["status"] == "open"
        and order["unit_id"] != COMMAND_CENTRE
        and now_us - order["ts_us"] >= accept_timeout_s * US
    )


def escalate(order: dict[str, Any], successor: dict[str, Any], now_us: int) -> Change:
    """Hand an unaccepted order over to ``successor`` (the next unit, or the command centre)."""
    counters = {"escalated": 1}
    if successor["unit_id"] == COMMAND_CENTRE:
        counters["escalated_to_command_centre"] = 1
    return _handed_over(order, successor, now_us, counters)


def _handed_over(
    order: dict[str, Any], successor: dict[str, Any], now_us: int, counters: dict[str, float]
) -> Change:
    """An open order that ``successor`` takes over (status ``escalated``)."""
    _check(order, COMMAND_CENTRE, ("open",))
    after = {
        **order,
        "status": "escalated",
        "escalated_us": now_us,
        "successor": successor["order_id"],
    }
    return Change(after, "open", counters=counters, successor=successor)


def _busy(order: dict[str, Any], at: str | None = None) -> dict[str, Any] | None:
    if order["unit_id"] == COMMAND_CENTRE:
        return None
    return {"available": False, "at": at, "status": "busy", "order_id": order["order_id"]}


def unit_status(status: str, location_id: str | None, points: set[str]) -> dict[str, Any]:
    """A unit's own report (在岗 / 忙碌 / 下班) as its state in ``zc:units``."""
    if status not in ("available", "busy", "off_duty"):
        raise OrderRefused("bad_status", f"unknown unit status {status!r}")
    if location_id is not None and location_id not in points:
        raise OrderRefused("unknown_location", f"unknown interception point {location_id!r}")
    return {"available": status == "available", "at": location_id, "status": status}


def reassign(order: dict[str, Any], successor: dict[str, Any], now_us: int) -> Change:
    """The command centre gives an order nobody has accepted to a unit it chooses (指派)."""
    return _handed_over(order, successor, now_us, {"assigned": 1})
