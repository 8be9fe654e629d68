"""KPIs of the case workflow (案件流程), counted in the store of record from the case event log,
and the yearly targets they are held to (``schemas/policy/targets.yaml``).

The cases counted are those *weighed* in the year, in China time (Asia/Shanghai): a case counts
in the year of its offence, whenever it is reviewed, and a year's figures still move while its
cases are worked. A case "reached" a state when its event log holds the action into it, whatever
state it is in now (a penalized case that was then closed still counts as penalized):

- 有效案件处罚率 (``penalty_rate``): cases with a ``penalize`` event (reached 已处罚) ÷ effective
  cases, those with a ``file`` event (reached 已立案; declined cases, 不予立案, are not effective).
  A non-local case handed over to its home region (异地抄告) and closed on its answer was filed
  but not penalized here: it counts in the denominator only.
- 本地车辆处置率 (``local_handling_rate``): local vehicles' cases that reached 已处罚 or 已结案 ÷
  local vehicles' filed cases.
- ``handover_share``: non-local vehicles' filed cases with a ``hand_over`` event (已抄告) ÷
  non-local vehicles' filed cases. No target.
- the review backlog: cases now in 待审核, and how long the oldest has waited since its weighing.
- median hours from weighing to review (``weighed_at`` → its ``file`` or ``decline`` event) and
  from review to notice (``file`` event → ``notify`` event), over the cases that have both ends.

reference/domain.md and DESIGN.md §5 name the Shaoxing plan's rates and their steps but do not
define them; the definitions above are this module's, read from the case states of
``schemas/policy/cases.yaml``. Every rate is a percentage with one decimal, or None when its
denominator is 0 (no figure, rather than 0 % or 100 %).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from psycopg.rows import dict_row

from schemas.policy import POLICY_DIR
from schemas.registry import CHINA

TARGETS_PATH = POLICY_DIR / "targets.yaml"
# the KPIs a target may be set for; the over-limit rates are held to a ceiling (at most)
KPI_NAMES = (
    "penalty_rate",
    "local_handling_rate",
    "overlimit_rate",
    "overlimit_rate_expressway",
)
CASE_KPI_NAMES = KPI_NAMES[:2]  # the case workflow's, shown with the case tiles


class TargetsError(ValueError):
    """The targets file is not what this code reads: the message says where and what."""


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    by_year: dict[int, float]  # year -> percent
    at_most: bool = False  # met when the rate is at most the target (a ceiling), not at least

    def for_year(self, year: int) -> float | None:
        """The target of ``year``: that year's, else the last earlier year's (a target holds
        until another is set); None before the first."""
        earlier = [y for y in self.by_year if y <= year]
        return self.by_year[max(earlier)] if earlier else None


@dataclass(frozen=True)
class Targets:
    version: str
    kpis: dict[str, Target]

    def for_year(self, name: str, year: int) -> float | None:
        target = self.kpis.get(name)
        return None if target is None else target.for_year(year)

    def at_most(self, name: str) -> bool:
        target = self.kpis.get(name)
        return target is not None and target.at_most


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_targets(path: Path = TARGETS_PATH) -> Targets:
    """Read and check the targets file (``TargetsError`` says what is wrong)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TargetsError(f"{path}: cannot read the targets: {exc}") from exc
    if not isinstance(data, dict):
        raise TargetsError(f"{path}: should be a mapping with 'version' and 'kpis'")
    version, kpis = data.get("version"), data.get("kpis")
    if not isinstance(version, str) or not version:
        raise TargetsError(f"{path}: 'version' should be a non-empty text, not {version!r}")
    if not isinstance(kpis, dict) or not kpis:
        raise TargetsError(f"{path}: 'kpis' should map KPI names to their targets")
    out = {}
    for name, entry in kpis.items():
        where = f"{path}: kpis.{name}"
        if name not in KPI_NAMES:
            raise TargetsError(f"{where}: unknown KPI (known: {', '.join(KPI_NAMES)})")
        if not isinstance(entry, dict):
            raise TargetsError(f"{where}: should be a mapping with 'label' and 'by_year'")
        label, by_year = entry.get("label"), entry.get("by_year")
        if not isinstance(label, str) or not label.strip():
            raise TargetsError(f"{where}.label: should be a non-empty text, not {label!r}")
        if not isinstance(by_year, dict) or not by_year:
            raise TargetsError(f"{where}.by_year: should map years to percentages")
        years = {}
        for year, pct in by_year.items():
            if not isinstance(year, int) or isinstance(year, bool) or not 1900 <= year <= 2200:
                raise TargetsError(f"{where}.by_year: {year!r} is not a year (an integer)")
            if not _number(pct) or not 0 <= pct <= 100:
                raise TargetsError(
                    f"{where}.by_year.{year}: {pct!r} is not a percentage from 0 to 100"
                )
            years[year] = float(pct)
        at_most = entry.get("at_most", False)
        if not isinstance(at_most, bool):
            raise TargetsError(f"{where}.at_most: should be true or false, not {at_most!r}")
        out[name] = Target(name, label.strip(), dict(sorted(years.items())), at_most)
    return Targets(version, out)


@lru_cache(maxsize=1)
def default_targets() -> Targets:
    return load_targets()


def year_bounds(year: int) -> tuple[dt.datetime, dt.datetime]:
    """The year's first instant and the next year's, in China time."""
    return dt.datetime(year, 1, 1, tzinfo=CHINA), dt.datetime(year + 1, 1, 1, tzinfo=CHINA)


def as_of(today: dt.date | None, now: dt.datetime | None = None) -> dt.datetime:
    """The instant the backlog's age is measured at: now, or the end of ``today`` (China time)
    when that is earlier (a replayed city shown on its own day)."""
    now = now or dt.datetime.now(CHINA)
    if today is None:
        return now
    end = dt.datetime(today.year, today.month, today.day, tzinfo=CHINA) + dt.timedelta(days=1)
    return min(now, end)


# One statement: every case weighed in the year with what its event log says it reached, then
# the counts, the intervals' medians (percentile_cont, interpolated like statistics.median) and
# the counts by state, read in one snapshot.
CASE_KPIS = """
WITH c AS (
    SELECT c.case_id, c.state, c.is_local, c.weighed_at,
           min(e.at) FILTER (WHERE e.action = 'file') AS filed_at,
           min(e.at) FILTER (WHERE e.action IN ('file', 'decline')) AS reviewed_at,
           min(e.at) FILTER (WHERE e.action = 'notify') AS notified_at,
           coalesce(bool_or(e.action = 'penalize'), false) AS penalized,
           coalesce(bool_or(e.to_state IN ('penalized', 'closed')), false) AS settled,
           coalesce(bool_or(e.action = 'hand_over'), false) AS handed_over
      FROM cases c LEFT JOIN case_events e USING (case_id)
     WHERE c.weighed_at >= %(start)s AND c.weighed_at < %(end)s
       AND (%(site)s::text IS NULL OR c.site_id = %(site)s)
     GROUP BY c.case_id
)
SELECT count(*) AS cases,
       count(*) FILTER (WHERE filed_at IS NOT NULL) AS filed,
       count(*) FILTER (WHERE filed_at IS NOT NULL AND penalized) AS penalized,
       count(*) FILTER (WHERE filed_at IS NOT NULL AND is_local) AS local_filed,
       count(*) FILTER (WHERE filed_at IS NOT NULL AND is_local AND settled) AS local_settled,
       count(*) FILTER (WHERE filed_at IS NOT NULL AND NOT is_local) AS nonlocal_filed,
       count(*) FILTER (WHERE filed_at IS NOT NULL AND NOT is_local AND handed_over)
           AS nonlocal_handed_over,
       count(*) FILTER (WHERE state = 'pending_review') AS backlog,
       min(weighed_at) FILTER (WHERE state = 'pending_review') AS oldest_pending,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM reviewed_at - weighed_at) / 3600.0) AS review_h,
       count(reviewed_at) AS reviewed,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM notified_at - filed_at) / 3600.0) AS notice_h,
       count(*) FILTER (WHERE filed_at IS NOT NULL AND notified_at IS NOT NULL) AS notified,
       (SELECT coalesce(jsonb_object_agg(state, n), '{}'::jsonb)
          FROM (SELECT state, count(*) AS n FROM c GROUP BY state) s) AS by_state
  FROM c
"""


def rate(
    numerator: int,
    denominator: int,
    target: float | None = None,
    at_most: bool = False,
    decimals: int = 1,
) -> dict[str, Any]:
    """A rate as the dashboard shows it: percent with one decimal (None without a
    denominator), its parts, the year's target and whether it is met (None: no figure or no
    target): at least the target, or at most it for a ceiling (``at_most``)."""
    value = round(100.0 * numerator / denominator, decimals) if denominator else None
    if value is None or target is None:
        met = None
    else:
        met = value <= target if at_most else value >= target
    return {
        "value": value,
        "numerator": numerator,
        "denominator": denominator,
        "target": target,
        "met": met,
    }


def _hours(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)


async def case_kpis(
    pool: Any,
    year: int,
    today: dt.date | None = None,
    targets: Targets | None = None,
) -> dict[str, Any]:
    """The case workflow's KPIs for the cases weighed in ``year`` (China time), with the
    year's targets; definitions in the module's docstring. ``pool``: a psycopg
    ``AsyncConnectionPool`` (``CaseStore.pool``). ``today``: the day shown, for the backlog's
    age (now, or the end of that day when earlier). Raises what psycopg raises when the
    server cannot be reached."""
    targets = targets or default_targets()
    start, end = year_bounds(year)
    moment = as_of(today)
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(CASE_KPIS, {"start": start, "end": end, "site": None})
        r = await cur.fetchone()
    oldest = r["oldest_pending"]
    return {
        "year": year,
        "as_of": moment.isoformat(),
        "targets_version": targets.version,
        "cases": int(r["cases"]),
        "by_state": {k: int(v) for k, v in sorted(r["by_state"].items())},
        "penalty_rate": rate(
            int(r["penalized"]), int(r["filed"]), targets.for_year("penalty_rate", year)
        ),
        "local_handling_rate": rate(
            int(r["local_settled"]),
            int(r["local_filed"]),
            targets.for_year("local_handling_rate", year),
        ),
        "handover_share": rate(int(r["nonlocal_handed_over"]), int(r["nonlocal_filed"])),
        "backlog": {
            "pending_review": int(r["backlog"]),
            "oldest_weighed_at": None if oldest is None else oldest.astimezone(CHINA).isoformat(),
            "oldest_age_h": None
            if oldest is None
            else round((moment - oldest).total_seconds() / 3600.0, 2),
        },
        "review_h": {"median": _hours(r["review_h"]), "n": int(r["reviewed"])},
        "notice_h": {"median": _hours(r["notice_h"]), "n": int(r["notified"])},
    }


def year_targets(year: int, targets: Targets | None = None) -> dict[str, float | None]:
    """The year's targets of the case KPIs by name, for a page that has no figures to hold to
    them."""
    targets = targets or default_targets()
    return {name: targets.for_year(name, year) for name in CASE_KPI_NAMES}


__all__ = [
    "CASE_KPIS",
    "KPI_NAMES",
    "TARGETS_PATH",
    "Target",
    "Targets",
    "TargetsError",
    "case_kpis",
    "default_targets",
    "load_targets",
    "rate",
    "year_targets",
    "year_bounds",
]
