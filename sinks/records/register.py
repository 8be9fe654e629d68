"""The case register (案件登记): cases found by plate, day, state, site and 车籍地, and the same
rows exported as CSV or Excel for the people who report on them.

Days are China days (Asia/Shanghai), since that is the day on the 通知书 and in every report;
``until`` includes its whole day. The filters are checked here, once, so the web page and the
command line refuse the same things with the same Chinese messages (``BadFilter``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from psycopg.rows import dict_row

from schemas.cases import CaseRules, load_case_rules

CHINA = ZoneInfo("Asia/Shanghai")
SEARCH_LIMIT = 1000  # rows a search shows
EXPORT_LIMIT = 100_000  # rows an export writes; more is refused, never cut silently
MAX_PLATE_QUERY = 12
_SEPARATORS = str.maketrans("", "", "·•-. \t\u3000")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run such a cell

SEARCH = """
SELECT c.case_id, c.state, c.plate, w.plate_rear, c.site_id, c.weighed_at, w.vehicle_class,
       w.axle_count, w.gvw_kg, w.limit_kg, w.excess_kg, w.overload_pct, c.is_local, c.reviewer,
       c.reason_code, c.fine_cny, w.evidence_hash
  FROM cases c JOIN weighings w USING (passage_id)
 WHERE (%(plate)s::text IS NULL
        OR upper(c.plate) LIKE %(plate)s ESCAPE '\\'
        OR upper(w.plate_rear) LIKE %(plate)s ESCAPE '\\')
   AND (%(since)s::timestamptz IS NULL OR c.weighed_at >= %(since)s)
   AND (%(until)s::timestamptz IS NULL OR c.weighed_at < %(until)s)
   AND (%(state)s::text IS NULL OR c.state = %(state)s)
   AND (%(site)s::text IS NULL OR c.site_id = %(site)s)
   AND (%(local)s::boolean IS NULL OR c.is_local = %(local)s)
 ORDER BY c.weighed_at DESC, c.case_id DESC
 LIMIT %(limit)s
"""

# (key, header) in the order of the exported columns
COLUMNS = (
    ("case_id", "案件编号"),
    ("state_label", "案件状态"),
    ("plate", "车牌"),
    ("plate_rear", "后车牌"),
    ("site_id", "站点"),
    ("weighed_at", "称重时间"),
    ("vehicle_class", "车型"),
    ("axle_count", "轴数"),
    ("gvw_kg", "总重（千克）"),
    ("limit_kg", "限值（千克）"),
    ("excess_kg", "超限（千克）"),
    ("overload_pct", "超限率（%）"),
    ("is_local", "本地车辆"),
    ("reviewer", "审核人"),
    ("reason_label", "不予立案理由"),
    ("fine_cny", "罚款（元）"),
    ("evidence_hash", "证据摘要（SHA-256）"),
)
WIDTHS = {"案件状态": 10, "车牌": 12, "后车牌": 12, "站点": 20, "称重时间": 20}
WIDTHS["证据摘要（SHA-256）"] = 66
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class BadFilter(ValueError):
    """A filter the register cannot search on: ``code`` for programs, the message for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Filters:
    plate: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    state: str | None = None
    site_id: str | None = None
    local: bool | None = None

    def as_kwargs(self) -> dict[str, Any]:
        return dict(self.__dict__)


@lru_cache(maxsize=1)
def _default_rules() -> CaseRules:
    return load_case_rules()


def _date(name: str, label: str, raw: str | None) -> dt.date | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        return dt.date.fromisoformat(raw.strip())
    except ValueError:
        raise BadFilter("bad_date", f"{label}应为 YYYY-MM-DD 格式的日期，而不是 {raw!r}") from None


def _local(raw: str | None) -> bool | None:
    value = (raw or "").strip().lower()
    if value in ("", "all", "全部"):
        return None
    if value in ("1", "true", "yes", "local", "是", "本地"):
        return True
    if value in ("0", "false", "no", "nonlocal", "non_local", "否", "外地"):
        return False
    raise BadFilter("bad_local", f"本地车辆筛选应为 是/否（1/0），而不是 {raw!r}")


def parse_filters(query: Mapping[str, str | None], rules: CaseRules | None = None) -> Filters:
    """Filters from text (a query string or command-line options): ``plate``, ``since``,
    ``until`` (YYYY-MM-DD), ``state``, ``site``, ``local``; an empty value is no filter."""
    filters = Filters(
        plate=(query.get("plate") or "").strip() or None,
        since=_date("since", "起始日期", query.get("since")),
        until=_date("until", "截止日期", query.get("until")),
        state=(query.get("state") or "").strip() or None,
        site_id=(query.get("site") or "").strip() or None,
        local=_local(query.get("local")),
    )
    check_filters(filters, rules)
    return filters


def check_filters(filters: Filters, rules: CaseRules | None = None) -> None:
    rules = rules or _default_rules()
    if filters.state is not None and filters.state not in rules.states:
        known = "、".join(f"{k}（{v}）" for k, v in rules.states.items())
        raise BadFilter("unknown_state", f"未知的案件状态：{filters.state!r}；可选：{known}")
    if filters.since and filters.until and filters.since > filters.until:
        raise BadFilter(
            "bad_range", f"起始日期 {filters.since} 晚于截止日期 {filters.until}，没有这样的时段"
        )
    if filters.plate is not None and len(filters.plate) > MAX_PLATE_QUERY:
        raise BadFilter("bad_plate", f"车牌查询最多 {MAX_PLATE_QUERY} 个字符")


def plate_pattern(plate: str | None) -> str | None:
    """A LIKE pattern matching plates that contain ``plate`` (so an exact plate and a prefix
    such as 苏E match too), whatever the case of its latin letters and its separators."""
    if plate is None:
        return None
    text = unicodedata.normalize("NFKC", plate).upper().translate(_SEPARATORS)
    if not text:
        return None
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), CHINA)


async def search(
    pool: Any,
    *,
    plate: str | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    state: str | None = None,
    site_id: str | None = None,
    local: bool | None = None,
    limit: int = SEARCH_LIMIT,
    rules: CaseRules | None = None,
) -> list[dict[str, Any]]:
    """Cases with their weighings, newest weighing first, at most ``limit``; ``since`` and
    ``until`` are China days, both included. Raises ``BadFilter``."""
    rules = rules or _default_rules()
    check_filters(Filters(plate, since, until, state, site_id, local), rules)
    params = {
        "plate": plate_pattern(plate),
        "since": day_start(since) if since else None,
        "until": day_start(until + dt.timedelta(days=1)) if until else None,
        "state": state,
        "site": site_id,
        "local": local,
        "limit": limit,
    }
    async with pool.connection() as conn:
        conn.row_factory = dict_row
        cur = await conn.execute(SEARCH, params)
        rows = await cur.fetchall()
    return [_row(r, rules) for r in rows]


def _row(r: dict[str, Any], rules: CaseRules) -> dict[str, Any]:
    """One register row: China time, labels from the rules, the REAL columns rounded as shown
    (a float4 29523.3 reads back as 29523.30078125)."""
    return {
        "case_id": r["case_id"],
        "state": r["state"],
        "state_label": rules.states.get(r["state"], r["state"]),
        "plate": r["plate"],
        "plate_rear": r["plate_rear"],
        "site_id": r["site_id"],
        "weighed_at": r["weighed_at"].astimezone(CHINA),
        "vehicle_class": r["vehicle_class"],
        "axle_count": r["axle_count"],
        "gvw_kg": round(r["gvw_kg"], 1),
        "limit_kg": round(r["limit_kg"], 1),
        "excess_kg": round(r["excess_kg"], 1),
        "overload_pct": round(r["overload_pct"], 2),
        "is_local": r["is_local"],
        "reviewer": r["reviewer"],
        "reason_code": r["reason_code"],
        "reason_label": rules.decline_reasons.get(r["reason_code"], r["reason_code"])
        if r["reason_code"]
        else None,
        "fine_cny": r["fine_cny"],
        "evidence_hash": r["evidence_hash"] or None,
    }


def _safe_text(value: str) -> str:
    """Text a spreadsheet shows as text: a leading = + - @ would make it a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _cells(row: dict[str, Any]) -> list[Any]:
    cells = []
    for key, _ in COLUMNS:
        value = row.get(key)
        if key == "is_local":
            value = "是" if value else "否"
        cells.append(value)
    return cells


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    """UTF-8 with a BOM, so that Excel on a Chinese desktop opens the headers as Chinese."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header for _, header in COLUMNS])
    for row in rows:
        cells = []
        for value in _cells(row):
            if isinstance(value, dt.datetime):
                value = value.astimezone(CHINA).strftime(TIME_FORMAT)
            elif isinstance(value, str):
                value = _safe_text(value)
            cells.append("" if value is None else value)
        writer.writerow(cells)
    return out.getvalue().encode("utf-8-sig")


def to_xlsx(rows: list[dict[str, Any]]) -> bytes:
    """One sheet 案件登记, streamed (write-only: the size of the export does not matter):
    the header bold, times as Excel datetimes in China time, numbers as numbers."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("案件登记")
    ws.freeze_panes = "A2"
    for i, (_, header) in enumerate(COLUMNS, start=1):
        ws.column_dimensions[get_column_letter(i)].width = WIDTHS.get(header, 12)
    bold = Font(bold=True)
    header_cells = []
    for _, header in COLUMNS:
        cell = WriteOnlyCell(ws, header)
        cell.font = bold
        header_cells.append(cell)
    ws.append(header_cells)
    for row in rows:
        cells = []
        for value in _cells(row):
            if isinstance(value, dt.datetime):
                naive = value.astimezone(CHINA).replace(tzinfo=None, microsecond=0)
                cell = WriteOnlyCell(ws, naive)  # Excel keeps no zone and ms at best
                cell.number_format = "yyyy-mm-dd hh:mm:ss"
            else:
                cell = WriteOnlyCell(ws, value)
                if isinstance(value, str):
                    cell.data_type = "s"  # never a formula, whatever the text begins with
            cells.append(cell)
        ws.append(cells)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


__all__ = [
    "BadFilter",
    "CHINA",
    "COLUMNS",
    "EXPORT_LIMIT",
    "Filters",
    "SEARCH_LIMIT",
    "check_filters",
    "parse_filters",
    "plate_pattern",
    "search",
    "to_csv",
    "to_xlsx",
]
