"""A plate's trajectory (车辆轨迹) from the store of record: every sighting of the plate at a weigh
site in time order, with the site's name and road, what was weighed and decided, and its case.
Sightings at checkpoint cameras stay in the live cache (``sinks.sightings``, a few days) and are
not part of it yet."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg.rows import dict_row

from schemas.plate_grammar import normalise
from schemas.registry import CHINA, Registry

TRACK = """
SELECT s.sighting_id, s.seen_at, s.site_id, s.lane, s.direction, s.vehicle_class,
       s.axle_count, s.gvw_kg, s.verdict, s.enforceable, w.limit_kg, w.overload_pct,
       c.case_id, c.state AS case_state
  FROM sightings s
  LEFT JOIN weighings w ON w.passage_id = s.sighting_id
  LEFT JOIN cases c ON c.passage_id = s.sighting_id
 WHERE s.plate = %(plate)s
   AND (%(start)s::timestamptz IS NULL OR s.seen_at >= %(start)s)
   AND (%(end)s::timestamptz IS NULL OR s.seen_at < %(end)s)
 ORDER BY s.seen_at, s.sighting_id
"""


class TrackError(ValueError):
    """A plate or a day that cannot be searched on: the message says what was expected."""


def day_bounds(first: str | None, last: str | None) -> tuple[dt.datetime | None, ...]:
    """China-time bounds of the days ``first`` to ``last`` (YYYY-MM-DD, both included; either
    may be open)."""

    def at(text: str, days: int) -> dt.datetime:
        try:
            d = dt.date.fromisoformat(text)
        except ValueError as exc:
            raise TrackError(f"日期应写作 2026-03-01，而不是 {text!r}") from exc
        return dt.datetime(d.year, d.month, d.day, tzinfo=CHINA) + dt.timedelta(days=days)

    return (at(first, 0) if first else None, at(last, 1) if last else None)


def track(
    conn: psycopg.Connection,
    registry: Registry,
    plate: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """The plate's sightings from ``start`` to ``end`` (open when None), oldest first."""
    wanted = normalise(plate)
    if not wanted or "?" in wanted:
        raise TrackError(f"{plate!r} 不是车牌号码")
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(TRACK, {"plate": wanted, "start": start, "end": end}).fetchall()
    out = []
    for r in rows:
        site = registry.sites.get(r["site_id"])
        out.append(
            r
            | {
                "seen_at": r["seen_at"].astimezone(CHINA).isoformat(),
                "site_name": site.name if site else "",
                "road": site.road if site else "",
                "gvw_kg": round(float(r["gvw_kg"]), 1),
                "limit_kg": None if r["limit_kg"] is None else round(float(r["limit_kg"]), 1),
                "overload_pct": None
                if r["overload_pct"] is None
                else round(float(r["overload_pct"]), 2),
            }
        )
    return out
