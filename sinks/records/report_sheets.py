"""The 通报's tables as files: the whole report as an XLSX workbook (openpyxl), every table a sheet
after a sheet that says what the report covers; one table as CSV (UTF-8 with a byte-order mark,
so that Excel opens the Chinese headers right). Used by ``zhichao report`` and the dashboard's
downloads."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

from sinks.records.analysis import Report, Table


def title_of(report: Report) -> str:
    return f"超限治理分析通报（{report.period.label}）"


def to_xlsx(report: Report, charts: dict[str, Path] | None = None) -> bytes:
    """The workbook; ``charts``: PNG files by table key, placed beside their tables."""
    from openpyxl import Workbook
    from openpyxl.drawing.image import Image
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    charts = charts or {}
    book = Workbook()
    info = book.active
    info.title = "说明"
    info.append([title_of(report)])
    info["A1"].font = Font(bold=True, size=14)
    info.append(["统计期", report.period.label])
    info.append(["开始", report.period.start.isoformat()])
    info.append(["结束（含）", (report.period.end - dt.timedelta(days=1)).isoformat()])
    info.append(["范围", report.site or "全市"])
    for note in report.notes:
        info.append(["说明", note])
    for table in report.tables:
        sheet = book.create_sheet(table.title[:31])  # Excel's limit for a sheet name
        sheet.append(list(table.columns))
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in table.rows:
            sheet.append(list(row))
        for i, name in enumerate(table.columns):
            sheet.column_dimensions[get_column_letter(i + 1)].width = max(10, len(name) * 2 + 2)
        if table.key in charts:  # beside the table, one column apart
            anchor = f"{get_column_letter(len(table.columns) + 2)}2"
            sheet.add_image(Image(str(charts[table.key])), anchor)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def to_csv(table: Table) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table.columns)
    writer.writerows(["" if v is None else v for v in row] for row in table.rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")
