"""Source supervision (源头监管): over-limit trucks attributed to the freight sources of the
registry (``sources:``) by the rule in ``schemas/policy/sources.yaml``, counted from the
sightings in the store of record.

A truck-day is one plate on one China-time day, counting its weighings of 3.5 t and more (the
trucks, as the KPI counters count them). Its likely source is the one nearest to the
weigh site of its first sighting that day, on that site's road and within ``max_km``; a site
with no source that near attributes nothing. The truck-day is over-limit when any of that day's
sightings is. A source is up for supervision in a week (Monday to Sunday) when its over-limit
truck-days of that week reach ``weekly_overlimit_trucks``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml

from schemas.policy import POLICY_DIR
from schemas.registry import CHINA, Registry, SourceEnterprise
from sinks.kpi import HEAVY_MIN_GVW_KG

RULES_PATH = POLICY_DIR / "sources.yaml"

TRUCK_DAYS = """
WITH days AS (
    SELECT plate, (seen_at AT TIME ZONE 'Asia/Shanghai')::date AS day,
           (array_agg(site_id ORDER BY seen_at, sighting_id))[1] AS first_site,
           bool_or(verdict = 'overlimit') AS over
      FROM sightings
     WHERE plate IS NOT NULL AND gvw_kg >= %(heavy)s AND seen_at >= %(start)s AND seen_at < %(end)s
     GROUP BY 1, 2
)
SELECT first_site, day, count(*) AS trucks, count(*) FILTER (WHERE over) AS over
  FROM days GROUP BY 1, 2
"""


class SourceRulesError(ValueError):
    pass


@dataclass(frozen=True)
class SourceRules:
    version: str
    max_km: float
    weekly_overlimit_trucks: int


def load_source_rules(path: Path = RULES_PATH) -> SourceRules:
    """Read and check the rule (``SourceRulesError`` says what is wrong)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        version = str(data["version"])
        max_km = data["attribution"]["max_km"]
        weekly = data["supervision"]["weekly_overlimit_trucks"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise SourceRulesError(f"{path}: cannot read the source rule: {exc!r}") from exc
    if isinstance(max_km, bool) or not isinstance(max_km, int | float) or not 0 < max_km <= 100:
        raise SourceRulesError(
            f"{path}: attribution.max_km should be km in (0, 100], not {max_km!r}"
        )
    if isinstance(weekly, bool) or not isinstance(weekly, int) or weekly < 1:
        raise SourceRulesError(
            f"{path}: supervision.weekly_overlimit_trucks should be a whole number ≥ 1, "
            f"not {weekly!r}"
        )
    return SourceRules(version, float(max_km), weekly)


def source_of_site(registry: Registry, site_id: str, rules: SourceRules) -> SourceEnterprise | None:
    """The source nearest to ``site_id`` on its road within ``max_km`` (ties: the first id)."""
    site = registry.sites.get(site_id)
    if site is None:
        return None
    near = [
        (abs(s.km - site.km), s.id, s)
        for s in registry.sources.values()
        if s.road == site.road and abs(s.km - site.km) <= rules.max_km
    ]
    return min(near)[2] if near else None


def week_of(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass
class SourceCounts:
    trucks: int = 0  # truck-days first weighed near the source
    over: int = 0  # of them, over the limit that day
    weekly_over: dict[str, int] = field(default_factory=dict)  # ISO week -> over-limit

    def week_max(self) -> tuple[str, int]:
        weeks = self.weekly_over
        week = max(weeks, key=lambda w: (weeks[w], w), default="")
        if not week or not weeks[week]:
            return ("", 0)  # no over-limit truck-day in any week: no worst week to name
        return (week, weeks[week])


def source_counts(
    conn: psycopg.Connection,
    registry: Registry,
    start: dt.datetime,
    end: dt.datetime,
    rules: SourceRules,
) -> dict[str, SourceCounts]:
    """Per source id, its truck-days from ``start`` to ``end`` and their over-limit share,
    week by week; every source of the registry is listed, those without trucks at zero."""
    rows = conn.execute(TRUCK_DAYS, truck_days_query(start, end)).fetchall()
    return counts_of(registry, rows, rules)


def truck_days_query(start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    """The parameters of ``TRUCK_DAYS``: rows of (first site, day, truck-days, over-limit)."""
    return {"start": start, "end": end, "heavy": HEAVY_MIN_GVW_KG}


def counts_of(
    registry: Registry, rows: list[tuple[str, dt.date, int, int]], rules: SourceRules
) -> dict[str, SourceCounts]:
    """``TRUCK_DAYS``'s rows per source (``source_counts``)."""
    out = {sid: SourceCounts() for sid in registry.sources}
    for site_id, day, trucks, over in rows:
        source = source_of_site(registry, site_id, rules)
        if source is None:
            continue
        c = out[source.id]
        c.trucks += int(trucks)
        c.over += int(over)
        week = week_of(day)
        c.weekly_over[week] = c.weekly_over.get(week, 0) + int(over)
    return out


def flagged(counts: dict[str, SourceCounts], rules: SourceRules) -> dict[str, dict[str, int]]:
    """Per source, the weeks its over-limit truck-days reached the threshold."""
    return {
        sid: {w: n for w, n in sorted(c.weekly_over.items()) if n >= rules.weekly_overlimit_trucks}
        for sid, c in counts.items()
        if any(n >= rules.weekly_overlimit_trucks for n in c.weekly_over.values())
    }


def ranked_rows(
    registry: Registry, counts: dict[str, SourceCounts], rules: SourceRules
) -> list[tuple[Any, ...]]:
    """The report's rows: most over-limit truck-days first."""
    up = flagged(counts, rules)
    rows = []
    for sid, c in sorted(counts.items(), key=lambda kv: (-kv[1].over, kv[0])):
        s = registry.sources[sid]
        week, most = c.week_max()
        share = round(100.0 * c.over / c.trucks, 2) if c.trucks else None
        rows.append(
            (s.name, s.kind, s.road, c.trucks, c.over, share, week or None, most,
             "、".join(up.get(sid, {})) or "—")
        )  # fmt: skip
    return rows


def week_start(now: dt.datetime) -> dt.datetime:
    """Monday 00:00 of ``now``'s week, China time."""
    today = now.astimezone(CHINA).date()
    monday = today - dt.timedelta(days=today.weekday())
    return dt.datetime(monday.year, monday.month, monday.day, tzinfo=CHINA)


async def week_counts(
    pool: Any, registry: Registry, rules: SourceRules, now: dt.datetime
) -> dict[str, SourceCounts]:
    """``source_counts`` of ``now``'s week (Monday to Sunday, China time) on an async pool
    (``CaseStore.pool``): what the worker's supervision checks."""
    start = week_start(now)
    async with pool.connection() as conn:
        query = truck_days_query(start, start + dt.timedelta(days=7))
        cur = await conn.execute(TRUCK_DAYS, query)
        return counts_of(registry, await cur.fetchall(), rules)
