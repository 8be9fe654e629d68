"""The 违法行为通知书 (notice of violation): the document that tells the party of a filed case
what they are accused of, on what evidence and legal basis, and what they may do about it.

行政处罚法 第四十四条 requires this 告知 before any penalty is decided — the content, facts,
reasons and legal basis, and the rights to 陈述、申辩 and to a hearing — and 第四十一条 adds that a
party caught by an electronic monitoring device must be told promptly and be able to query and
state their case. The notice is therefore a legal act, not a view: it is rendered once, when the
case is notified, and kept as served (``notices``: its number, this HTML and the PDF printed from
it, with the PDF's SHA-256), so what the party received can be shown later byte for byte, however
the template or the data change afterwards.

This module only renders: a case (as ``CaseStore.case`` returns it) and its evidence record in,
the document out. It reads no database and no clock, so the same inputs give the same notice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import orjson

from schemas.plate_grammar import is_trailer
from schemas.units import US

CHINA = ZoneInfo("Asia/Shanghai")  # the time on a Chinese document is China time
TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "notice.html"

# The period the party has to come forward and to state their case. domain.md (§4.3) gives one
# period only, from Guangdong's non-site practice: the party is required to report within 15
# days of the notice; no national period for 陈述、申辩 was found. It belongs in the case policy
# (schemas/policy/cases.yaml) once a jurisdiction's figure is known; until then it is this one.
RESPOND_WITHIN_DAYS = 15
_CN_DIGITS = "〇一二三四五六七八九"

DIRECTIONS = {"up": "上行", "down": "下行"}
# The first letter of a vehicle class code says what kind of vehicle the limit was chosen for
# (schemas/policy/cn-62-2016.yaml): a rigid truck or a combination.
CLASS_KINDS = {"T": "货车", "C": "汽车列车"}


@dataclass(frozen=True)
class Notice:
    """A notice as served: what the case store keeps with the ``notify`` transition."""

    notice_no: str  # e.g. "ZC-<site_id>-<YYYYMMDD>-<case_id:06d>"
    html: str
    pdf: bytes
    sha256: str  # SHA-256 hex of the pdf bytes


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # Autoescape everywhere: plates and site ids come from cameras and configuration, names
    # from people, and none of them may become markup in a legal document.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a missing field is a bug, not an empty line
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _aware(value: Any, what: str) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        # a naive time could be UTC or China time, eight hours apart: the notice would guess
        raise ValueError(f"{what} must be a timezone-aware datetime, not {value!r}")
    return value


def _verdict(case: dict[str, Any]) -> dict[str, Any]:
    verdict = case["verdict"]
    return orjson.loads(verdict) if isinstance(verdict, str | bytes) else verdict


def _weighed_at(case: dict[str, Any]) -> dt.datetime:
    if case.get("weighed_at") is not None:
        return _aware(case["weighed_at"], "weighed_at").astimezone(CHINA)
    return dt.datetime.fromtimestamp(_verdict(case)["ts_us"] / US, CHINA)


def notice_number(case: dict[str, Any]) -> str:
    """``ZC-<site_id>-<YYYYMMDD>-<case_id:06d>``: the day is the weighing's, in China time, so
    the number depends on the case alone and a notice rendered again for it has the same one."""
    day = _weighed_at(case).strftime("%Y%m%d")
    return f"ZC-{case['site_id']}-{day}-{int(case['case_id']):06d}"


def _cn_number(n: int) -> str:
    """A small count as written in a Chinese legal text (十五日, not 15日)."""
    if not 0 < n < 100:
        return str(n)
    tens, ones = divmod(n, 10)
    return (
        ("" if tens == 0 else ("十" if tens == 1 else _CN_DIGITS[tens] + "十"))
        + ("" if ones == 0 else _CN_DIGITS[ones])
    ) or _CN_DIGITS[0]


def _kg(value: float) -> str:
    return f"{float(value):.1f}"


def _china_time(value: dt.datetime) -> str:
    return value.astimezone(CHINA).strftime("%Y年%m月%d日 %H:%M:%S")


def _vehicle(verdict: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    front = verdict.get("plate_front") or case.get("plate") or ""
    rear = verdict.get("plate_rear") or ""
    code = str(verdict["vehicle_class"])
    return {
        "plate": front,
        # a semi-trailer carries its own 挂 plate at the rear: it names a second vehicle, and
        # the notice names both; a rear plate equal to the front one adds nothing
        "trailer_plate": rear if rear and rear != front and is_trailer(rear) else "",
        "class_code": code,
        "class_kind": CLASS_KINDS.get(code[:1], ""),
        "axle_count": int(verdict["axle_count"]),
    }


def _device(verdict: dict[str, Any], evidence: dict[str, Any] | None) -> dict[str, Any]:
    device = (evidence or {}).get("device")
    if device:
        return {
            "id": device["id"],
            "accuracy_class": device.get("accuracy_class"),
            "cert_no": device.get("cert_no") or "",
            "cert_valid_from": device.get("cert_valid_from") or "",
            "cert_valid_to": device.get("cert_valid_to") or "",
            "known": True,
        }
    # without the record the certificate cannot be shown from what the fine rests on: the
    # notice says so rather than reading today's registry, which may name a newer certificate
    return {"id": verdict.get("device_id") or "", "known": False}


def _evidence(verdict: dict[str, Any], evidence: dict[str, Any] | None) -> dict[str, Any]:
    if evidence is None:
        return {"present": False, "digest": verdict.get("evidence_hash") or "", "seq": None}
    return {
        "present": True,
        "digest": evidence.get("digest") or verdict.get("evidence_hash") or "",
        "seq": evidence.get("seq"),
        "samples_sha256": evidence.get("samples_sha256") or "",
    }


def render_notice_html(
    case: dict[str, Any],
    evidence: dict[str, Any] | None,
    issued_at: dt.datetime,
    issued_by: str,
    authority: str,
) -> str:
    """The notice for ``case`` as HTML (the document kept and printed). ``evidence`` is the
    case's evidence record body (``sinks.evidence.parse(line)[3]``, with ``digest`` added when
    known) or None when the record is not at hand; ``authority`` names the issuing agency."""
    verdict = _verdict(case)
    weighed_at = _weighed_at(case)
    issued = _aware(issued_at, "issued_at").astimezone(CHINA)
    direction = str(verdict.get("direction", ""))
    fine = verdict.get("fine_cny")
    context = {
        "notice_no": notice_number(case),
        "case_id": int(case["case_id"]),
        "authority": authority,
        "issued_by": issued_by,
        "issued_at": _china_time(issued),
        "issued_day": issued.strftime("%Y年%m月%d日"),
        "vehicle": _vehicle(verdict, case),
        "weighed_at": _china_time(weighed_at),
        "site_id": case.get("site_id") or verdict["site_id"],
        "lane": verdict.get("lane", ""),
        "direction": DIRECTIONS.get(direction, direction),
        "speed_kmh": f"{float(verdict['speed_kmh']):.1f}" if "speed_kmh" in verdict else "",
        "device": _device(verdict, evidence),
        "axles": [
            {"n": i, "load_kg": _kg(load)}
            for i, load in enumerate(verdict.get("axle_loads_kg") or [], start=1)
        ],
        "gvw_kg": _kg(verdict["gvw_kg"]),
        "limit_kg": _kg(verdict["limit_kg"]),
        "excess_kg": _kg(verdict["excess_kg"]),
        "overload_pct": f"{float(verdict['overload_pct']):.2f}",
        # the amount is decided by the 处罚决定 after the party has been heard: a notice can
        # only say what the schedule proposes
        "proposed_fine_cny": int(fine) if isinstance(fine, int | float) and fine > 0 else None,
        "policy_version": verdict.get("policy_version") or "",
        "evidence": _evidence(verdict, evidence),
        "respond_within": _cn_number(RESPOND_WITHIN_DAYS),
    }
    return _environment().get_template(TEMPLATE).render(context)


def render_notice_pdf(html: str) -> bytes:
    """The notice HTML printed to an A4 PDF (the page and fonts are the template's CSS)."""
    import weasyprint  # Pango and its fonts load on first use: not for importers that never print

    return weasyprint.HTML(string=html, base_url=str(TEMPLATES)).write_pdf()


def make_notice(
    case: dict[str, Any],
    evidence: dict[str, Any] | None,
    issued_at: dt.datetime,
    issued_by: str,
    authority: str,
) -> Notice:
    """The notice to serve on ``case``: its number, the HTML, the PDF printed from that very
    HTML and the PDF's SHA-256 (what the case event records as ``document_sha256``)."""
    html = render_notice_html(case, evidence, issued_at, issued_by, authority)
    pdf = render_notice_pdf(html)
    return Notice(notice_number(case), html, pdf, hashlib.sha256(pdf).hexdigest())


__all__ = [
    "RESPOND_WITHIN_DAYS",
    "Notice",
    "make_notice",
    "notice_number",
    "render_notice_html",
    "render_notice_pdf",
]
