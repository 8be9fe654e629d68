"""``zhichao report``: the 通报 of a period as files an analyst can hand on: ``report.html``
(jinja2, autoescaped), the same printed to ``report.pdf`` (WeasyPrint, already used for the
notices), ``report.xlsx`` with every table as a sheet (openpyxl, already used for the case
register), and a chart per table (matplotlib, PNG) shown in the HTML and PDF and placed beside
its sheet's table. The tables are ``sinks.records.analysis``'s; nothing here computes a figure.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from schemas.registry import CHINA
from sinks.records.analysis import Report, Table
from sinks.records.report_sheets import title_of, to_xlsx

TEMPLATES = Path(__file__).resolve().parent / "templates"
FONT = "WenQuanYi Micro Hei"  # Debian's fonts-wqy-microhei (make services): the CJK glyphs
CHART_ROWS = 24  # bars per chart: a region table can have hundreds of rows


@dataclass
class ReportFiles:
    html: Path
    pdf: Path
    xlsx: Path
    charts: list[Path] = field(default_factory=list)


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def chart(table: Table, path: Path) -> bool:
    """A bar chart of ``table.chart`` by the table's first column; False when there is
    nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = table.columns.index(table.chart)
    rows = [r for r in table.rows if isinstance(r[column], int | float)][:CHART_ROWS]
    if not rows:
        return False
    labels = [str(r[0]) for r in rows]
    values = [float(r[column]) for r in rows]
    with plt.rc_context({"font.family": [FONT, "DejaVu Sans"], "axes.unicode_minus": False}):
        fig, ax = plt.subplots(figsize=(7.2, 2.6), dpi=110)
        ax.bar(range(len(values)), values, color="#3b6ea5")
        ax.set_xticks(
            range(len(labels)),
            labels,
            rotation=45 if len(labels) > 8 else 0,
            ha="right" if len(labels) > 8 else "center",
            fontsize=7,
        )
        ax.set_ylabel(table.chart, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_title(table.title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
    return True


def render_html(report: Report, charts: dict[str, Path]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    tables = [
        {
            "title": t.title,
            "columns": t.columns,
            "rows": t.rows,
            "note": t.note,
            "chart_file": charts[t.key].name if t.key in charts else "",
        }
        for t in report.tables
    ]
    return env.get_template("report.html").render(
        title=title_of(report),
        period=report.period.label,
        start=report.period.start.isoformat(),
        last_day=(report.period.end - dt.timedelta(days=1)).isoformat(),
        scope=report.site or "全市",
        made_at=dt.datetime.now(CHINA).strftime("%Y-%m-%d %H:%M"),
        notes=report.notes,
        tables=tables,
        fmt=fmt,
    )


def write_report(report: Report, out_dir: Path) -> ReportFiles:
    """The report's files in ``out_dir`` (made if missing; files of an earlier report there
    are replaced)."""
    import weasyprint  # Pango and its fonts load on first use

    out_dir.mkdir(parents=True, exist_ok=True)
    charts: dict[str, Path] = {}
    for table in report.tables:
        path = out_dir / f"{table.key}.png"
        if table.chart and chart(table, path):
            charts[table.key] = path
    html = render_html(report, charts)
    files = ReportFiles(out_dir / "report.html", out_dir / "report.pdf", out_dir / "report.xlsx")
    files.html.write_text(html, encoding="utf-8")
    weasyprint.HTML(string=html, base_url=str(out_dir)).write_pdf(files.pdf)
    files.xlsx.write_bytes(to_xlsx(report, charts))
    files.charts = list(charts.values())
    return files
