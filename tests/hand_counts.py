"""Counts the tests make by hand from verdict lines, to hold the store of record's SQL to: the
rule of ``schemas/policy/sources.yaml`` written out in plain Python."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

from schemas.registry import CHINA

MAX_KM = 6  # schemas/policy/sources.yaml, attribution.max_km


def china(v) -> dt.datetime:
    return dt.datetime.fromtimestamp(v["ts_us"] / 1e6, CHINA)


def plate_of(v) -> str:
    return "" if "unidentified" in v["flags"] else (v["plate_front"] or v["plate_rear"])


def source_truck_days(verdicts, registry, lo: dt.datetime, hi: dt.datetime):
    """Per source id: Counter(trucks, over) of the truck-days from ``lo`` to ``hi`` whose first
    weighing (3.5 t and more, China-time day) was within 6 km of it on its road, the nearest
    source winning; and per source, its over-limit truck-days by ISO week."""
    days = defaultdict(list)
    for v in verdicts:
        if lo <= china(v) < hi and plate_of(v) and v["gvw_kg"] >= 3500:
            days[(plate_of(v), china(v).date())].append(v)
    counts = {s: Counter() for s in registry.sources}
    weekly = defaultdict(Counter)
    for (_, day), vs in days.items():
        first = min(vs, key=lambda v: (v["ts_us"], v["passage_id"]))
        site = registry.sites[first["site_id"]]
        near = sorted(
            (abs(s.km - site.km), s.id)
            for s in registry.sources.values()
            if s.road == site.road and abs(s.km - site.km) <= MAX_KM
        )
        if not near:
            continue
        source = near[0][1]
        over = any(v["verdict"] == "overlimit" for v in vs)
        counts[source]["trucks"] += 1
        counts[source]["over"] += over
        year, week, _ = day.isocalendar()
        weekly[source][f"{year}-W{week:02d}"] += over
    return counts, weekly
