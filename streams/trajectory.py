"""Alerts from where a plate has been (``sinks.sightings``). Leads for the command centre, not
evidence for a fine.

Bypass (绕行, ``plates.md`` M6): a truck read at a checkpoint (卡口) before a weigh site, never
read at that site, and then read on the road that bypasses it. Decided when the bypass camera
reads it; that read is the evidence that it was not a missed read at the site.

Cloned plate (套牌, M5): a confidently read plate weighed at two sites so close in time that no
truck could have driven between them (great-circle distance faster than any truck drives). One
such journey may still be two misreads: the plate is alerted when the two weighings cannot be
one truck (a different number of axles), or at its next impossible journeys within some days.
The numbers are alert rules (``schemas/policy/alerts.yaml``: ``clone_plate``, ``bypass``).

Pure functions; the worker reads the sightings.
"""

from __future__ import annotations

import math
from typing import Any

from schemas.plate_grammar import normalise
from schemas.registry import Registry, Site
from schemas.units import US
from sinks.sightings import Sighting
from streams.alerts import AlertRules, alert_id, load_alert_rules, read_alert, window_of

RULES = load_alert_rules()  # the city's rules, unless a caller passes its own
TRUCK_COLOURS = ("yellow", "yellowgreen")


def bypass_cameras(registry: Registry) -> dict[str, Site]:
    """Camera id -> its checkpoint, for checkpoints on a road that bypasses a weigh site."""
    return {
        c.id: registry.sites[c.site]
        for c in registry.cameras.values()
        if registry.sites[c.site].kind == "checkpoint" and registry.sites[c.site].bypass_of
    }


def _before(site: Site, km: float) -> bool:
    """Whether a point at ``km`` on the site's road comes before the site in its direction."""
    return km < site.km if site.direction == "up" else km > site.km


def suspected_bypass(
    read: dict[str, Any],
    bypass: Site,
    history: list[Sighting],
    registry: Registry,
    rules: AlertRules = RULES,
) -> dict[str, Any] | None:
    """The alert for a truck read at ``bypass`` (a checkpoint on a bypass road), given the
    plate's sightings before it; None if it was weighed, or not seen upstream."""
    if read["plate_color"] not in TRUCK_COLOURS:
        return None
    road = bypass.bypass_of
    t = read["ts_us"]
    earlier = [s for s in history if t - rules.bypass_lookback_s * US <= s.ts_us < t]
    upstream = [
        s
        for s in earlier
        if (site := registry.sites.get(s.site_id)) is not None
        and site.kind == "checkpoint"
        and site.road == road
        and not site.bypass_of
    ]
    if not upstream:
        return None
    last = max(upstream, key=lambda s: s.ts_us)
    checkpoint = registry.sites[last.site_id]
    weigh = [s for s in registry.weigh_sites if s.road == road and _before(s, checkpoint.km)]
    if not weigh:
        return None
    site = min(weigh, key=lambda s: abs(s.km - checkpoint.km))
    if any(s.site_id == site.id and s.ts_us >= last.ts_us for s in earlier):
        return None  # it was read at the site: weighed, not bypassed
    plate = normalise(read["plate"])
    message = (
        f"疑似绕行：{plate} 经{checkpoint.name}后未经{site.name}称重，"
        f"出现在绕行道路 {bypass.road}（{bypass.name}）"
    )
    return read_alert(read, plate, "bypass_suspected", "warning", site.id, message)


# -- cloned plates (套牌, M5) ------------------------------------------------------------------


def distance_km(a: Site, b: Site) -> float:
    """Great-circle distance: never more than the road distance, so a journey called impossible
    at this distance is impossible on the road too."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def impossible_journeys(
    verdict: dict[str, Any],
    others: list[dict[str, Any]],
    registry: Registry,
    rules: AlertRules = RULES,
) -> list[dict[str, Any]]:
    """Other confident weighings of the same plate that no truck could have driven to or from in
    the time between (``verdict`` itself read with the rule's confidence or more)."""
    rule = rules.clone
    if not verdict["plate_front"] or verdict["plate_confidence"] < rule.confidence:
        return []
    here = registry.sites[verdict["site_id"]]
    out = []
    for o in others:
        there = registry.sites.get(o["site_id"])
        if there is None or there.id == here.id or o["passage_id"] == verdict["passage_id"]:
            continue
        if o["plate_front"] != verdict["plate_front"] or o["plate_confidence"] < rule.confidence:
            continue
        hours = abs(o["ts_us"] - verdict["ts_us"]) / US / 3600
        km = distance_km(here, there)
        if km > 1.0 and km > rule.speed_kmh * hours:
            out.append(o)
    return out


def clashes(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two weighings of one plate that cannot be one truck: a different number of axles."""
    return a["axle_count"] != b["axle_count"]


def clone_alert(
    verdict: dict[str, Any],
    other: dict[str, Any],
    conflicts: int,
    registry: Registry,
    rules: AlertRules = RULES,
) -> dict[str, Any]:
    """The 套牌 alert of a plate weighed at two places no truck could have driven between."""
    here = registry.sites[verdict["site_id"]]
    there = registry.sites[other["site_id"]]
    plate = verdict["plate_front"]
    minutes = abs(other["ts_us"] - verdict["ts_us"]) / US / 60
    window = window_of(verdict["ts_us"])
    why = (
        f"{verdict['axle_count']} 轴与 {other['axle_count']} 轴"
        if clashes(verdict, other)
        else f"{rules.clone.days} 天内 {conflicts} 次"
    )
    return {
        "alert_id": alert_id(plate, "clone_suspected", window),
        "reason": "clone_suspected",
        "severity": "warning",
        "ts_us": verdict["ts_us"],
        "site_id": here.id,
        "plate": plate,
        "plate_rear": verdict["plate_rear"] or None,
        "passage_id": verdict["passage_id"],
        "device_id": verdict["device_id"],
        "vehicle_class": verdict["vehicle_class"],
        "gvw_kg": verdict["gvw_kg"],
        "limit_kg": verdict["limit_kg"],
        "excess_kg": verdict["excess_kg"],
        "overload_pct": verdict["overload_pct"],
        "image_refs": [],
        "likely_plates": [],
        "message": (
            f"疑似套牌：{plate} 在{here.name}称重，相隔 {minutes:.0f} 分钟又在{there.name}称重"
            f"（相距至少 {distance_km(here, there):.0f} 公里；{why}）"
        ),
        "window": window,
    }
