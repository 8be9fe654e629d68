"""The tables of the periodic 通报 (quarterly, monthly or any range of days), read from the store of
record: the hourly traffic counts (``traffic_hours``) for the traffic, the sightings and
weighings for repeat offenders, the case event log for the case KPIs. A quarter sums a few rows
per site and hour; no weighing is scanned for the traffic tables.

超限率 (over-limit rate) is over-limit vehicles ÷ vehicles weighed, in percent, as the dashboard's
tile counts it; the tables show the trucks (GVW ≥ 3.5 t) beside it. 环比 compares with the period
before (the quarter, month or as many days before), 同比 with the same period a year earlier;
both are the change of the over-limit count in percent, and empty where the other period holds
no traffic at all (nothing was recorded then) or counted none.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from schemas.registry import CHINA, Registry
from sinks.records.kpis import CASE_KPIS, Targets, default_targets, rate
from sinks.records.sources import load_source_rules, ranked_rows, source_counts

COUNTS = ("vehicles", "heavy", "overlimit", "warnings", "enforceable", "unidentified")
QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
MONTH = re.compile(r"^(\d{4})-(\d{2})$")
LOCALITY = {"local": "本地", "nonlocal": "外地", "unread": "未识别"}
YEARS = (2000, 2100)  # the years a period may name: beyond them is a typing error
MAX_DAYS = 400  # a custom range: a year and a bit, as far back as the KPI counters go


class PeriodError(ValueError):
    """A period that cannot be read: the message says what was expected."""


@dataclass(frozen=True)
class Period:
    """Days ``start`` to ``end`` (exclusive), China time. ``kind``: ``quarter``, ``month``,
    ``days`` (any range), or the dashboard's ranges up to today: ``week`` (from Monday),
    ``month_to_date``, ``quarter_to_date``; each is compared with its like (``previous``)."""

    label: str
    start: dt.date
    end: dt.date
    kind: str

    @staticmethod
    def quarter(text: str) -> Period:
        m = QUARTER.match(text.strip())
        if not m:
            raise PeriodError(f"季度应写作 2026Q1，而不是 {text!r}")
        year, q = _year(int(m[1])), int(m[2])
        start = dt.date(year, 3 * q - 2, 1)
        return Period(f"{year}Q{q}", start, _months_after(start, 3), "quarter")

    @staticmethod
    def month(text: str) -> Period:
        m = MONTH.match(text.strip())
        if not m or not 1 <= int(m[2]) <= 12:
            raise PeriodError(f"月份应写作 2026-03，而不是 {text!r}")
        start = dt.date(_year(int(m[1])), int(m[2]), 1)
        return Period(f"{start:%Y-%m}", start, _months_after(start, 1), "month")

    @staticmethod
    def days(first: str, last: str) -> Period:
        """From ``first`` to ``last`` (YYYY-MM-DD), both included."""
        try:
            start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
        except ValueError as exc:
            raise PeriodError(f"日期应写作 2026-03-01：{exc}") from exc
        if end < start:
            raise PeriodError(f"结束日期 {last} 早于开始日期 {first}")
        _year(start.year)
        _year(end.year)
        return _days(start, end + dt.timedelta(days=1))

    @staticmethod
    def named(kind: str, today: dt.date, first: str = "", last: str = "") -> Period:
        """The dashboard's ranges: ``today``; ``week``, ``month``, ``quarter``: from the first
        day of today's week (Monday), month or quarter to today; ``custom``: ``first``–``last``,
        at most ``MAX_DAYS``."""
        end = today + dt.timedelta(days=1)
        if kind == "today":
            return _days(today, end)
        if kind == "week":
            monday = today - dt.timedelta(days=today.weekday())
            return _days(monday, end, "week")
        if kind == "month":
            start = today.replace(day=1)
            return Period(f"{start:%Y-%m}（至 {today:%m-%d}）", start, end, "month_to_date")
        if kind == "quarter":
            start = dt.date(today.year, (today.month - 1) // 3 * 3 + 1, 1)
            label = f"{today.year}Q{(today.month + 2) // 3}（至 {today:%m-%d}）"
            return Period(label, start, end, "quarter_to_date")
        if kind == "custom":
            period = Period.days(first, last)
            if (period.end - period.start).days > MAX_DAYS:
                raise PeriodError(f"自定义范围最长 {MAX_DAYS} 天")
            return period
        raise PeriodError(f"范围应为 today、week、month、quarter 或 custom，而不是 {kind!r}")

    def previous(self) -> Period:
        """The period before (环比): the quarter or month before; a week to date, the same
        weekdays a week earlier; a month or quarter to date, as many days from the start of the
        month or quarter before; any other range, as many days just before."""
        if self.kind == "quarter":
            start = _months_after(self.start, -3)
            return Period(f"{start.year}Q{(start.month + 2) // 3}", start, self.start, "quarter")
        if self.kind == "month":
            start = _months_after(self.start, -1)
            return Period(f"{start:%Y-%m}", start, self.start, "month")
        if self.kind == "week":
            week = dt.timedelta(days=7)
            return _days(self.start - week, self.end - week, "week")
        if self.kind in ("month_to_date", "quarter_to_date"):
            start = _months_after(self.start, -1 if self.kind == "month_to_date" else -3)
            return _days(start, min(start + (self.end - self.start), self.start), self.kind)
        return _days(self.start - (self.end - self.start), self.start)

    def year_before(self) -> Period:
        """The same period a year earlier (同比); a range's last day moves back a year too (29
        February to the 28th), so the range keeps its days."""
        start = _years_before(self.start)
        if self.kind == "quarter":
            return Period(
                f"{start.year}Q{(start.month + 2) // 3}", start, _months_after(start, 3), "quarter"
            )
        if self.kind == "month":
            return Period(f"{start:%Y-%m}", start, _months_after(start, 1), "month")
        last = _years_before(self.end - dt.timedelta(days=1))
        return _days(start, last + dt.timedelta(days=1), self.kind)

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        def at(d: dt.date) -> dt.datetime:
            return dt.datetime(d.year, d.month, d.day, tzinfo=CHINA)

        return at(self.start), at(self.end)


def _days(start: dt.date, end: dt.date, kind: str = "days") -> Period:
    last = end - dt.timedelta(days=1)
    return Period(str(start) if last == start else f"{start}–{last}", start, end, kind)


def _year(year: int) -> int:
    if not YEARS[0] <= year <= YEARS[1]:
        raise PeriodError(f"年份应在 {YEARS[0]} 至 {YEARS[1]} 之间，而不是 {year}")
    return year


def _months_after(d: dt.date, months: int) -> dt.date:
    index = d.year * 12 + d.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _years_before(d: dt.date) -> dt.date:
    try:
        return d.replace(year=d.year - 1)
    except ValueError:  # 29 February
        return d.replace(year=d.year - 1, day=28)


@dataclass(frozen=True)
class Table:
    """One table of the report: a sheet of the XLSX, a section of the HTML; ``chart``: the
    column of the first column's labels plotted, or None."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    chart: str | None = None
    note: str = ""


@dataclass
class Report:
    period: Period
    site: str | None
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, key: str) -> Table:
        return next(t for t in self.tables if t.key == key)


def pct(part: int, whole: int, decimals: int = 2) -> float | None:
    return round(100.0 * part / whole, decimals) if whole else None


def change(now: int, before: int | None) -> float | None:
    """The change from ``before`` to ``now`` in percent, one decimal; None without a base."""
    if not before:
        return None
    return round(100.0 * (now - before) / before, 1)


GROUPS = {
    "class": "vehicle_class",
    "site": "site_id",
    "hour": "extract(hour FROM hour AT TIME ZONE 'Asia/Shanghai')::int",
    "region": "plate_region, locality",
}


def _counts(
    conn: psycopg.Connection, group: str, period: Period, site: str | None
) -> dict[tuple, dict[str, int]]:
    """Sums of the hourly counts per group key over the period."""
    start, end = period.bounds()
    sums = ", ".join(f"sum({c})::bigint" for c in COUNTS)
    width = len(GROUPS[group].split(","))
    rows = conn.execute(
        f"SELECT {GROUPS[group]}, {sums} FROM traffic_hours "  # noqa: S608 - this module's SQL
        "WHERE hour >= %(start)s AND hour < %(end)s "
        "AND (%(site)s::text IS NULL OR site_id = %(site)s) "
        f"GROUP BY {', '.join(str(i + 1) for i in range(width))}",
        {"start": start, "end": end, "site": site},
    ).fetchall()
    return {tuple(r[:width]): dict(zip(COUNTS, map(int, r[width:]), strict=True)) for r in rows}


def _has_traffic(conn: psycopg.Connection, period: Period, site: str | None) -> bool:
    start, end = period.bounds()
    return (
        conn.execute(
            "SELECT EXISTS (SELECT 1 FROM traffic_hours WHERE hour >= %s AND hour < %s "
            "AND (%s::text IS NULL OR site_id = %s))",
            (start, end, site, site),
        ).fetchone()[0]
        is True
    )


def _merge(into: dict[tuple, dict[str, int]], key: tuple, counts: dict[str, int]) -> None:
    total = into.setdefault(key, dict.fromkeys(COUNTS, 0))
    for c in COUNTS:
        total[c] += counts[c]


Counts = dict[tuple, dict[str, int]]


def _first(key: tuple, _: Counts) -> tuple:
    return key[:1]


def _compared(
    key: str,
    title: str,
    heads: tuple[str, ...],
    periods: Any,
    label: Callable[[tuple], tuple] | None,
    order: Callable[[tuple, Counts], Any],
) -> Table:
    """A table of counts per group key with 环比 and 同比: ``periods`` are this period's counts,
    the previous period's and the year before's (None where that period has no traffic);
    ``label`` gives a key's leading cells (None: the key itself), ``order`` sorts the keys."""
    now, before, year_ago = tuple(periods)
    rows = _compared_rows(now, before, year_ago, label or (lambda k: k), order)
    return Table(key, title, (*heads, *COMPARED), rows, chart="超限")


def _compared_rows(
    now: Counts,
    before: Counts | None,
    year_ago: Counts | None,
    label: Callable[[tuple], tuple],
    order: Callable[[tuple, Counts], Any],
) -> list[tuple[Any, ...]]:
    rows = []
    for key in sorted(now, key=lambda k: order(k, now)):
        c = now[key]
        prev = None if before is None else before.get(key, {}).get("overlimit", 0)
        last = None if year_ago is None else year_ago.get(key, {}).get("overlimit", 0)
        rows.append(
            (
                *label(key),
                c["vehicles"],
                c["heavy"],
                c["overlimit"],
                pct(c["overlimit"], c["vehicles"]),
                c["enforceable"],
                prev,
                change(c["overlimit"], prev),
                last,
                change(c["overlimit"], last),
            )
        )
    return rows


COMPARED = ("称重车辆", "货车（≥3.5吨）", "超限", "超限率（%）", "可处罚", "上期超限", "环比（%）")
COMPARED += ("去年同期超限", "同比（%）")
SITE_COLUMNS = ("站点", "名称", "路线", "高速", "称重车辆", "超限", "超限率（%）", "目标（%）")
SITE_COLUMNS += ("是否达标",)


def build_report(
    conn: psycopg.Connection,
    registry: Registry,
    period: Period,
    site: str | None = None,
    repeat_min: int = 2,
    targets: Targets | None = None,
) -> Report:
    """Every table of the 通报 for ``period`` (one site's, or the city's)."""
    targets = targets or default_targets()
    report = Report(period, site)
    before_p, year_p = period.previous(), period.year_before()
    before_ok = _has_traffic(conn, before_p, site)
    year_ok = _has_traffic(conn, year_p, site)

    def three(group: str):
        return (
            _counts(conn, group, period, site),
            _counts(conn, group, before_p, site) if before_ok else None,
            _counts(conn, group, year_p, site) if year_ok else None,
        )

    by_site = three("site")

    def by_road(counts):
        if counts is None:
            return None
        out: dict[tuple, dict[str, int]] = {}
        for (site_id,), c in counts.items():
            s = registry.sites.get(site_id)
            road = s.road if s else "?"
            name = registry.roads[road].name if road in registry.roads else road
            _merge(out, (road, name), c)
        return out

    def hour(k: tuple) -> tuple[str]:
        return (f"{k[0]:02d}:00–{k[0]:02d}:59",)

    def most_over_first(k: tuple, now: Counts) -> tuple:
        return (-now[k]["overlimit"], k[1], k[0])

    report.tables += [
        _compared("by_class", "按车型", ("车型",), three("class"), None, _first),
        _compared("by_road", "按路线", ("路线", "名称"), map(by_road, by_site), None, _first),
        _compared("by_hour", "按时段", ("时段",), three("hour"), hour, _first),
        _compared(
            "by_region",
            "按车籍地",
            ("车籍地", "本地/外地"),
            three("region"),
            lambda k: (k[0] or "未识别", LOCALITY[k[1]]),
            most_over_first,
        ),
    ]
    report.tables.append(_site_rates(by_site[0], registry, period, targets))
    report.tables.append(_repeat_offenders(conn, period, site, repeat_min))
    if registry.sources and site is None:
        report.tables.append(_sources(conn, registry, period))
    report.tables.append(_case_kpis(conn, period, site, targets))
    if not before_ok:
        report.notes.append(f"上期（{before_p.label}）无过车记录，环比从缺。")
    if not year_ok:
        report.notes.append(f"去年同期（{year_p.label}）无过车记录，同比从缺。")
    report.notes.append(
        "设备在线率与正常率、拦截指标尚未存入记录库，本报告不含；请见指挥中心看板的当日数据。"
    )
    return report


def _site_rates(
    counts: dict[tuple, dict[str, int]], registry: Registry, period: Period, targets: Targets
) -> Table:
    year = period.start.year
    rows = []
    for (site_id,), c in sorted(counts.items()):
        s = registry.sites.get(site_id)
        expressway = bool(s and s.expressway)
        name = "overlimit_rate_expressway" if expressway else "overlimit_rate"
        target = targets.for_year(name, year)
        r = rate(c["overlimit"], c["vehicles"], target, targets.at_most(name), decimals=2)
        met = {True: "达标", False: "未达标", None: "—"}[r["met"]]
        rows.append(
            (
                site_id,
                s.name if s else "",
                s.road if s else "",
                "是" if expressway else "否",
                c["vehicles"],
                c["overlimit"],
                r["value"],
                r["target"],
                met,
            )
        )
    return Table(
        "site_rates",
        "各站点超限率与年度目标",
        (
            "站点",
            "名称",
            "路线",
            "高速",
            "称重车辆",
            "超限",
            "超限率（%）",
            "目标（%）",
            "是否达标",
        ),
        rows,
        chart="超限率（%）",
        note="目标为上限：高速公路站点按高速公路目标（schemas/policy/targets.yaml）。",
    )


REPEATS = """
SELECT s.plate, count(*) AS times, count(DISTINCT s.site_id) AS sites,
       min(s.seen_at) AS first_seen, max(s.seen_at) AS last_seen,
       max(w.overload_pct) AS worst_pct
  FROM sightings s JOIN weighings w ON w.passage_id = s.sighting_id
 WHERE s.verdict = 'overlimit' AND s.plate IS NOT NULL
   AND s.seen_at >= %(start)s AND s.seen_at < %(end)s
   AND (%(site)s::text IS NULL OR s.site_id = %(site)s)
 GROUP BY s.plate HAVING count(*) >= %(min)s
 ORDER BY times DESC, s.plate
"""


def _repeat_offenders(
    conn: psycopg.Connection, period: Period, site: str | None, repeat_min: int
) -> Table:
    start, end = period.bounds()
    cur = conn.cursor(row_factory=dict_row)
    found = cur.execute(
        REPEATS, {"start": start, "end": end, "site": site, "min": repeat_min}
    ).fetchall()
    rows = [
        (
            r["plate"],
            int(r["times"]),
            int(r["sites"]),
            r["first_seen"].astimezone(CHINA).strftime("%Y-%m-%d %H:%M"),
            r["last_seen"].astimezone(CHINA).strftime("%Y-%m-%d %H:%M"),
            round(float(r["worst_pct"]), 2),
        )
        for r in found
    ]
    return Table(
        "repeat_offenders",
        f"多次超限车辆（{repeat_min} 次及以上）",
        ("车牌", "超限次数", "站点数", "首次", "末次", "最大超限率（%）"),
        rows,
    )


SOURCE_COLUMNS = ("源头企业", "类型", "路线", "始发车次", "超限车次", "超限占比（%）")
SOURCE_COLUMNS += ("超限最多的一周", "该周超限车次", "需监管的周")


def _sources(conn: psycopg.Connection, registry: Registry, period: Period) -> Table:
    rules = load_source_rules()
    counts = source_counts(conn, registry, *period.bounds(), rules)
    return Table(
        "sources",
        "源头企业",
        SOURCE_COLUMNS,
        ranked_rows(registry, counts, rules),
        chart="超限车次",
        note=(
            f"车次：一辆车一天。当日首次称重在源头企业所在道路 {rules.max_km:g} 公里内的站点，"
            f"计为该企业始发；一周超限车次达 {rules.weekly_overlimit_trucks} 即需源头监管"
            "（schemas/policy/sources.yaml）。跨统计期边界的周只计本期内的天数。"
        ),
    )


def _case_kpis(
    conn: psycopg.Connection, period: Period, site: str | None, targets: Targets
) -> Table:
    start, end = period.bounds()
    year = period.start.year
    cur = conn.cursor(row_factory=dict_row)
    r = cur.execute(CASE_KPIS, {"start": start, "end": end, "site": site}).fetchone()
    kpis = [
        ("有效案件处罚率", r["penalized"], r["filed"], targets.for_year("penalty_rate", year)),
        (
            "本地车辆处置率",
            r["local_settled"],
            r["local_filed"],
            targets.for_year("local_handling_rate", year),
        ),
        ("异地抄告率", r["nonlocal_handed_over"], r["nonlocal_filed"], None),
    ]
    rows: list[tuple[Any, ...]] = [("案件", int(r["cases"]), None, None, None, "—")]
    for label, part, whole, target in kpis:
        x = rate(int(part), int(whole), target)
        met = {True: "达标", False: "未达标", None: "—"}[x["met"]]
        rows.append((label, int(part), int(whole), x["value"], target, met))
    return Table(
        "case_kpis",
        "案件指标",
        ("指标", "分子", "分母", "值（%）", "目标（%）", "是否达标"),
        rows,
        note="按称重时间计入本期的案件；定义见 sinks/records/kpis.py。",
    )
