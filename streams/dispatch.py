"""Interception dispatch (拦截调度): where to stop a vehicle and which unit to send.

For a vehicle weighed at a site, the candidate points are the interception points on the same
road and direction, ahead of the site ("up" runs toward higher km). The vehicle reaches a point
after ``distance / speed``; a unit reaches it after its travel time from where it is, plus
``setup_s`` to take position. The plan takes the nearest point that some available unit reaches
before the vehicle (the truck is off the road soonest), and there the unit with the smallest ETA
(ties by unit id). No point any unit can make in time → the command centre (指挥中心) decides.
An expressway entrance (入口称重) with a toll-lane point at the site needs no unit: the toll lane
refuses entry (劝返).

What happens to an order afterwards (accept, arrive, outcome, escalation) is
``streams.order_life``. Pure: times are passed in, nothing is read from a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.orders import COMMAND_CENTRE, UnitState
from schemas.registry import InterceptionPoint, Registry, Site, Unit


@dataclass(frozen=True)
class Plan:
    action: str  # "intercept", "refuse_entry" or "command_centre"
    point_id: str | None = None
    unit_id: str | None = None
    unit_eta_s: float | None = None  # unit at the point, from now
    vehicle_eta_s: float | None = None  # vehicle at the point, from now
    reason: str = ""

    @property
    def slack_s(self) -> float | None:
        if self.unit_eta_s is None or self.vehicle_eta_s is None:
            return None
        return self.vehicle_eta_s - self.unit_eta_s


def points_ahead(
    site: Site, points: list[InterceptionPoint]
) -> list[tuple[float, InterceptionPoint]]:
    """(distance in km, point) of the points ahead of ``site`` on its road and direction,
    nearest first."""
    sign = 1.0 if site.direction == "up" else -1.0
    ahead = [
        ((p.km - site.km) * sign, p)
        for p in points
        if p.road == site.road and p.direction == site.direction and (p.km - site.km) * sign > 0
    ]
    return sorted(ahead, key=lambda dp: (dp[0], dp[1].id))


def planning_speed_kmh(site: Site, speed_kmh: float, registry: Registry) -> float:
    """The measured speed, or the road's truck speed when none was measured."""
    if speed_kmh and speed_kmh > 5:
        return speed_kmh
    road = registry.roads.get(site.road)
    return road.truck_speed_kmh if road else 60.0


def travel_s(unit: Unit, state: UnitState, point_id: str, registry: Registry) -> float | None:
    """A unit's travel time to a point. The registry's tables are per unit, from its home
    point; from another point the table of the unit based there is used, and with none, the
    unit's own (an approximation, said so in the README)."""
    if state.at == point_id:
        return 0.0
    if state.at is None or state.at == unit.home:
        return unit.travel_s.get(point_id)
    based_there = [u for u in registry.units.values() if u.home == state.at]
    table = based_there[0].travel_s if based_there else unit.travel_s
    return table.get(point_id)


def plan_interception(
    site: Site,
    speed_kmh: float,
    weighed_s: float,
    now_s: float,
    registry: Registry,
    states: dict[str, UnitState],
    exclude: frozenset[str] = frozenset(),
    setup_s: float = 60.0,
) -> Plan:
    """Where and by whom an over-limit vehicle weighed at ``site`` can be stopped."""
    points = list(registry.interception_points.values())
    if site.expressway:
        for p in points:
            if p.toll_lane and p.road == site.road and abs(p.km - site.km) < 0.5:
                return Plan(
                    "refuse_entry", p.id, reason="expressway entrance: 劝返 at the toll lane"
                )
    speed = planning_speed_kmh(site, speed_kmh, registry)
    elapsed = now_s - weighed_s
    ahead = points_ahead(site, points)
    if not ahead:
        return Plan(COMMAND_CENTRE, reason="no interception point ahead of the site")
    for km, point in ahead:
        vehicle_eta = km / speed * 3600.0 - elapsed
        if vehicle_eta <= 0:
            continue  # it has passed this point already
        options = []
        for unit in registry.units.values():
            state = states.get(unit.id, UnitState(unit.id))
            if unit.id in exclude or not state.available:
                continue
            t = travel_s(unit, state, point.id, registry)
            if t is not None and t + setup_s <= vehicle_eta:
                options.append((t + setup_s, unit.id))
        if options:
            eta, unit_id = min(options)
            return Plan("intercept", point.id, unit_id, eta, vehicle_eta, "nearest point reachable")
    return Plan(COMMAND_CENTRE, reason="no available unit reaches a point before the vehicle")


PROVISIONAL_MARK = "【预判】"
INSTRUCTION = {
    "intercept": "拦截",
    "refuse_entry": "劝返",
    COMMAND_CENTRE: "请指挥中心调度",
}


def order_for(
    alert: dict,
    plan: Plan,
    registry: Registry,
    now_us: int,
    speed_kmh: float = 0.0,
    local: bool | None = None,
    escalation: int = 0,
    tried: tuple[str, ...] = (),
    first_ordered_us: int | None = None,
    provisional: bool = False,
) -> dict:
    """The order record of a plan, with its instruction in Chinese. Redis keeps all of it (the
    officer page shows the vehicle); the ``zhichao.DispatchOrder`` topic takes its schema's
    fields. ``provisional``: planned on the front reads before the verdict (预判, marked in
    the instruction; ``streams.order_life.confirm`` or ``withdraw`` settle it)."""
    point = registry.interception_points.get(plan.point_id or "")
    site = registry.sites.get(alert["site_id"])
    plate = alert["plate"] or "车牌未识别"
    if plan.action == "intercept":
        minutes = (plan.vehicle_eta_s or 0) / 60
        text = f"拦截：{plate}，请至{point.name}，车辆约 {minutes:.0f} 分钟后到达"
    elif plan.action == "refuse_entry":
        text = f"劝返：{plate}，{point.name}，禁止驶入高速"
    else:
        text = f"{alert['message']}；无单位可及时到达，请指挥中心调度"
    unit_id = plan.unit_id or COMMAND_CENTRE
    return {
        "order_id": f"{alert['alert_id']}:{escalation}",
        "alert_id": alert["alert_id"],
        "unit_id": unit_id,
        "action": plan.action,
        "point_id": plan.point_id,
        "point_name": point.name if point else None,
        "plate": alert["plate"],
        "ts_us": now_us,
        "first_ordered_us": now_us if first_ordered_us is None else first_ordered_us,
        "unit_eta_s": plan.unit_eta_s,
        "vehicle_eta_s": plan.vehicle_eta_s,
        "status": "open",
        "escalation": escalation,
        "tried": sorted({*tried, unit_id} - {COMMAND_CENTRE}),
        "instruction": PROVISIONAL_MARK + text if provisional else text,
        "provisional": provisional,
        "reason": plan.reason,
        "vehicle": {
            "passage_id": alert["passage_id"],
            "site_id": alert["site_id"],
            "site_name": site.name if site else alert["site_id"],
            "device_id": alert["device_id"],
            "weighed_us": alert["ts_us"],
            "speed_kmh": speed_kmh,
            "local": local,
            "vehicle_class": alert["vehicle_class"],
            "gvw_kg": alert["gvw_kg"],
            "limit_kg": alert["limit_kg"],
            "overload_pct": alert["overload_pct"],
            "alert_reason": alert["reason"],
            "message": alert["message"],
        },
    }


def alert_of(order: dict) -> dict:
    """The alert fields of an order's vehicle, to plan it again (escalation)."""
    v = order["vehicle"]
    return {
        "alert_id": order["alert_id"],
        "plate": order["plate"],
        "reason": v["alert_reason"],
        "message": v["message"],
        "site_id": v["site_id"],
        "passage_id": v["passage_id"],
        "device_id": v["device_id"],
        "ts_us": v["weighed_us"],
        "vehicle_class": v["vehicle_class"],
        "gvw_kg": v["gvw_kg"],
        "limit_kg": v["limit_kg"],
        "overload_pct": v["overload_pct"],
    }


def plan_for_unit(
    site: Site,
    speed_kmh: float,
    weighed_s: float,
    now_s: float,
    registry: Registry,
    unit: Unit,
    state: UnitState,
    setup_s: float = 60.0,
) -> Plan | None:
    """The command centre's choice of unit (指派): the nearest point ahead it reaches before the
    vehicle, or else the farthest point ahead (the most time to get there); None if there is no
    point ahead that the unit has a travel time to."""
    speed = planning_speed_kmh(site, speed_kmh, registry)
    elapsed = now_s - weighed_s
    options = []
    for km, point in points_ahead(site, list(registry.interception_points.values())):
        t = travel_s(unit, state, point.id, registry)
        if t is not None:
            options.append((km / speed * 3600.0 - elapsed, t + setup_s, point))
    if not options:
        return None
    in_time = [o for o in options if o[1] <= o[0]]
    vehicle_eta, unit_eta, point = in_time[0] if in_time else options[-1]
    reason = "assigned by the command centre" + ("" if in_time else " (late)")
    return Plan("intercept", point.id, unit.id, unit_eta, vehicle_eta, reason)
