"""KPI counters of a batch of verdicts (DESIGN §5), aggregated before they are written: one
HINCRBY per (scope, day, counter) per batch, never one write per event."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

CHINA = dt.timezone(dt.timedelta(hours=8))
HEAVY_MIN_GVW_KG = 3500.0


def day_of(ts_us: int) -> str:
    return dt.datetime.fromtimestamp(ts_us / 1e6, tz=CHINA).strftime("%Y-%m-%d")


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
    names.append(f"hour:{dt.datetime.fromtimestamp(verdict['ts_us'] / 1e6, tz=CHINA).hour:02d}")
    return names


def aggregate(verdicts: list[dict[str, Any]]) -> Counter[tuple[str, str, str, str]]:
    """(scope, scope id, day, counter) -> increment, for site and city scopes."""
    totals: Counter[tuple[str, str, str, str]] = Counter()
    for v in verdicts:
        day = day_of(v["ts_us"])
        for name in counters_of(v):
            totals[("site", v["site_id"], day, name)] += 1
            totals[("city", "", day, name)] += 1
    return totals
