"""KPI counters of verdicts (DESIGN §5) per scope: city/day, site/day, site/hour and lane/day,
days and hours in China time. A verdict adds one to each of its counter names in each of its
scopes; the sink aggregates a batch before writing (one HINCRBY per key and field)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from functools import lru_cache
from typing import Any

from schemas.registry import CHINA
from sinks import constants as K

HEAVY_MIN_GVW_KG = 3500.0
HOUR_US = 3_600_000_000  # China is a whole number of hours from UTC


def china_time(ts_us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_us / 1e6, tz=CHINA)


def day_of(ts_us: int) -> str:
    return china_time(ts_us).strftime("%Y-%m-%d")


def counters_of(verdict: dict[str, Any]) -> list[str]:
    """The counter names one verdict adds to (each by one)."""
    names = ["vehicles"]
    if verdict["gvw_kg"] >= HEAVY_MIN_GVW_KG:
        names.append("heavy")
    if verdict["verdict"] in ("overlimit", "warning"):
        names.append(verdict["verdict"])
    if verdict["enforceable"]:
        names.append("enforceable")
    if "unidentified" in verdict["flags"]:
        names.append("unidentified")
    elif verdict["plate_front"] or verdict["plate_rear"]:
        names.append("local" if verdict["local"] else "nonlocal")
        if verdict["verdict"] == "overlimit":
            names.append("overlimit_local" if verdict["local"] else "overlimit_nonlocal")
    names.append(f"class:{verdict['vehicle_class']}")
    return names


def scopes_of(verdict: dict[str, Any]) -> tuple[str, ...]:
    """The Redis hashes a verdict counts in."""
    return scopes_at(verdict["site_id"], verdict.get("lane", 0), verdict["ts_us"] // HOUR_US)


@lru_cache(maxsize=4096)
def scopes_at(site: str, lane: int, hour_index: int) -> tuple[str, ...]:
    t = china_time(hour_index * HOUR_US)
    day, hour = t.strftime("%Y-%m-%d"), f"{t.hour:02d}"
    return (
        K.KPI_CITY_DAY_KEY.format(day=day),
        K.KPI_SITE_DAY_KEY.format(site_id=site, day=day),
        K.KPI_SITE_HOUR_KEY.format(site_id=site, day=day, hour=hour),
        K.KPI_LANE_DAY_KEY.format(site_id=site, lane=lane, day=day),
    )


def increments_of(verdict: dict[str, Any]) -> list[tuple[str, str]]:
    """(hash key, counter) pairs one verdict adds one to."""
    names = counters_of(verdict)
    return [(key, name) for key in scopes_of(verdict) for name in names]


def aggregate(verdicts: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """(hash key, counter) -> increment for a batch of verdicts."""
    totals: Counter[tuple[str, str]] = Counter()
    for v in verdicts:
        totals.update(increments_of(v))
    return totals
