"""Interception dispatch (拦截调度): where to stop a vehicle and which unit to send.

For a vehicle weighed at a site, the candidate points are the interception points on the same
road and direction, ahead of the site ("up" runs toward higher km). The vehicle reaches a point
after ``distance / speed``; a unit reaches it after its travel time from where it is, plus
``setup_s`` to take position. The plan takes the nearest point that some available unit reaches
before the vehicle (the truck is off the road soonest), and there the unit with the smallest ETA
(ties by unit id). No point any unit can make in time → the command centre (指挥中心) decides.
An expressway entrance (入口称重) with a toll-lane point at the site needs no unit: the toll lane
refuses entry (劝返).

``DispatchBook`` holds one open dispatch per vehicle, escalates to the next unit when an order
is not accepted within ``accept_timeout_s`` (and to the command centre when no unit is left), and
closes with the officer's outcome. Pure: times are passed in, nothing is read from a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from schemas.registry import InterceptionPoint, Registry, Site, Unit

COMMAND_CENTRE = "command_centre"
OUTCOMES = ("intercepted", "not_found", "refused_entry", "cancelled")


@dataclass(frozen=True)
class UnitState:
    """Where a unit is and whether it can take an order (from ``dispatch.feedback``)."""

    unit_id: str
    available: bool = True
    at: str | None = None  # an interception point id; None: at its home point


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
    road = registry.roads.get(site.road)
    speed = speed_kmh if speed_kmh and speed_kmh > 5 else (road.truck_speed_kmh if road else 60.0)
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


@dataclass
class Dispatch:
    """One vehicle's open dispatch."""

    key: str  # the vehicle: plate, or passage id when unidentified
    passage_id: str
    site_id: str
    speed_kmh: float
    weighed_s: float
    plan: Plan
    ordered_s: float
    tried: frozenset[str] = frozenset()
    accepted_s: float | None = None
    outcome: str | None = None
    escalations: int = 0


@dataclass
class DispatchBook:
    registry: Registry
    accept_timeout_s: float = 60.0
    open: dict[str, Dispatch] = field(default_factory=dict)

    def order(
        self,
        key: str,
        passage_id: str,
        site_id: str,
        speed_kmh: float,
        weighed_s: float,
        now_s: float,
        states: dict[str, UnitState],
    ) -> Dispatch | None:
        """Open a dispatch for a vehicle; None if it already has one open."""
        if key in self.open:
            return None
        site = self.registry.sites[site_id]
        plan = plan_interception(site, speed_kmh, weighed_s, now_s, self.registry, states)
        tried = frozenset({plan.unit_id}) if plan.unit_id else frozenset()
        dispatch = Dispatch(key, passage_id, site_id, speed_kmh, weighed_s, plan, now_s, tried)
        self.open[key] = dispatch
        return dispatch

    def accept(self, key: str, unit_id: str, now_s: float) -> bool:
        d = self.open.get(key)
        if d is None or d.plan.unit_id != unit_id or d.accepted_s is not None:
            return False
        d.accepted_s = now_s
        return True

    def escalate_overdue(self, now_s: float, states: dict[str, UnitState]) -> list[Dispatch]:
        """Orders not accepted within the timeout go to the next unit (or the command centre)."""
        moved = []
        for d in self.open.values():
            if d.plan.action != "intercept" or d.accepted_s is not None:
                continue
            if now_s - d.ordered_s < self.accept_timeout_s:
                continue
            site = self.registry.sites[d.site_id]
            plan = plan_interception(
                site, d.speed_kmh, d.weighed_s, now_s, self.registry, states, exclude=d.tried
            )
            d.plan = replace(plan, reason=f"escalated: {plan.reason}")
            d.ordered_s = now_s
            d.escalations += 1
            if plan.unit_id:
                d.tried = d.tried | {plan.unit_id}
            moved.append(d)
        return moved

    def close(self, key: str, outcome: str) -> Dispatch | None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; one of {OUTCOMES}")
        d = self.open.pop(key, None)
        if d is not None:
            d.outcome = outcome
        return d


INSTRUCTION = {
    "intercept": "拦截",
    "refuse_entry": "劝返",
    COMMAND_CENTRE: "请指挥中心调度",
}


def order_for(
    alert: dict, plan: Plan, registry: Registry, now_us: int, escalation: int = 0
) -> dict:
    """The ``zhichao.DispatchOrder`` record of a plan, with its instruction in Chinese."""
    point = registry.interception_points.get(plan.point_id or "")
    plate = alert["plate"] or "车牌未识别"
    if plan.action == "intercept":
        minutes = (plan.vehicle_eta_s or 0) / 60
        text = f"拦截：{plate}，请至{point.name}，车辆约 {minutes:.0f} 分钟后到达"
    elif plan.action == "refuse_entry":
        text = f"劝返：{plate}，{point.name}，禁止驶入高速"
    else:
        text = f"{alert['message']}；无单位可及时到达，请指挥中心调度"
    return {
        "order_id": f"{alert['alert_id']}:{escalation}",
        "alert_id": alert["alert_id"],
        "unit_id": plan.unit_id or COMMAND_CENTRE,
        "point_id": plan.point_id,
        "plate": alert["plate"],
        "ts_us": now_us,
        "unit_eta_s": plan.unit_eta_s,
        "vehicle_eta_s": plan.vehicle_eta_s,
        "status": "open",
        "escalation": escalation,
        "instruction": text,
    }
