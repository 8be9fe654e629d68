"""Alerts from verdicts (预警), by the rules in ``schemas/policy/alerts.yaml``: pure functions,
no I/O. One alert per (vehicle, reason, window); its id is a hash of those three, so that a
verdict seen twice (a redelivery) gives the same alert, which the sink writes once. A 劝返 at an
expressway entrance is the exception: one per weighing, since a truck turned back that tries
again, overloaded still, must be turned back again.

Only enforceable over-limit verdicts alert officers about a plate: a verdict whose evidence does
not support a fine (device error band, expired 检定, an unsure plate) never sends anyone after a
vehicle. An over-limit weighing without a readable plate alerts as ``unidentified``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from schemas.registry import CHINA, Registry
from schemas.units import US
from sinks.devices import DeviceHealth

RULES_PATH = Path(__file__).resolve().parent.parent / "schemas" / "policy" / "alerts.yaml"
INTERCEPTING = ("refuse_entry", "severe_overlimit", "repeat_offender", "blacklist")


@dataclass(frozen=True)
class CloneRule:
    """套牌 (M5): when two weighings of one plate are an impossible journey (``alerts.yaml``)."""

    speed_kmh: float
    confidence: float
    window_s: int
    conflicts: int
    days: int


@dataclass(frozen=True)
class AlertRules:
    version: str
    severe_overload_pct: float
    repeat_cases: int
    repeat_window_days: int
    reasons: dict[str, dict[str, str]]
    clone: CloneRule
    bypass_lookback_s: int
    cert_warning_days: int = 30


def load_alert_rules(path: Path = RULES_PATH) -> AlertRules:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return AlertRules(
        version=data["version"],
        severe_overload_pct=float(data["severe_overload_pct"]),
        repeat_cases=int(data["repeat_offender"]["cases"]),
        repeat_window_days=int(data["repeat_offender"]["window_days"]),
        reasons=data["reasons"],
        clone=CloneRule(
            speed_kmh=float(data["clone_plate"]["speed_kmh"]),
            confidence=float(data["clone_plate"]["confidence"]),
            window_s=int(data["clone_plate"]["window_s"]),
            conflicts=int(data["clone_plate"]["conflicts"]),
            days=int(data["clone_plate"]["days"]),
        ),
        bypass_lookback_s=int(data["bypass"]["lookback_s"]),
        cert_warning_days=int(data.get("cert_warning_days", 30)),
    )


def window_of(ts_us: int) -> str:
    return dt.datetime.fromtimestamp(ts_us / US, CHINA).date().isoformat()


def alert_id(subject: str, reason: str, window: str) -> str:
    return hashlib.sha256(f"{subject}|{reason}|{window}".encode()).hexdigest()[:32]


def _message(reason_label: str, v: dict[str, Any], plate: str, site_name: str) -> str:
    when = dt.datetime.fromtimestamp(v["ts_us"] / US, CHINA).strftime("%H:%M:%S")
    return (
        f"{reason_label}：{plate or '车牌未识别'}，{v['axle_count']}轴，"
        f"总重 {v['gvw_kg'] / 1000:.1f} 吨，限值 {v['limit_kg'] / 1000:.1f} 吨，"
        f"超限 {v['overload_pct']:.1f}%，{site_name} {when}"
    )


def reasons_for(
    v: dict[str, Any], expressway: bool, rules: AlertRules, prior_cases: int, blacklisted: bool
) -> list[str]:
    """Why this verdict alerts, most urgent first. ``prior_cases``: the plate's enforceable
    over-limit cases in the repeat window before this one."""
    plate = v["plate_front"] or v["plate_rear"]
    out = []
    if plate and blacklisted:
        out.append("blacklist")
    if v["verdict"] != "overlimit":
        return out
    if not plate:
        return [*out, "unidentified"]
    if not v["enforceable"]:
        return out
    if expressway:
        out.append("refuse_entry")
    elif v["overload_pct"] >= rules.severe_overload_pct:
        out.append("severe_overlimit")
    else:
        out.append("overlimit")
    if prior_cases + 1 >= rules.repeat_cases:
        out.append("repeat_offender")
    return out


def alerts_for(
    v: dict[str, Any],
    registry: Registry,
    rules: AlertRules,
    prior_cases: int = 0,
    blacklisted: bool = False,
) -> list[dict[str, Any]]:
    """The Alert records (``zhichao.Alert``) a verdict raises."""
    site = registry.sites.get(v["site_id"])
    plate = v["plate_front"] or v["plate_rear"]
    window = window_of(v["ts_us"])
    out = []
    for reason in reasons_for(v, bool(site and site.expressway), rules, prior_cases, blacklisted):
        rule = rules.reasons[reason]
        subject = v["passage_id"] if reason == "refuse_entry" else plate or v["passage_id"]
        out.append(
            {
                "alert_id": alert_id(subject, reason, window),
                "reason": reason,
                "severity": rule["severity"],
                "ts_us": v["ts_us"],
                "site_id": v["site_id"],
                "plate": plate or None,
                "plate_rear": v["plate_rear"] or None,
                "passage_id": v["passage_id"],
                "device_id": v["device_id"],
                "vehicle_class": v["vehicle_class"],
                "gvw_kg": v["gvw_kg"],
                "limit_kg": v["limit_kg"],
                "excess_kg": v["excess_kg"],
                "overload_pct": v["overload_pct"],
                "image_refs": [],
                "likely_plates": [],
                "message": _message(rule["label"], v, plate, site.name if site else v["site_id"]),
                "window": window,
            }
        )
    return out


def device_alerts(
    h: DeviceHealth,
    registry: Registry,
    rules: AlertRules,
    now_us: int,
    late: dict[str, int] | None = None,
    ahead: dict[str, float] | None = None,
    slack_s: float = 2.0,
) -> list[dict[str, Any]]:
    """Alerts for operators (运维): devices offline or reporting trouble, WIM devices whose
    检定 certificate runs out within ``cert_warning_days`` (or has: their weighings can no longer
    support a fine), and devices that publish ``late`` or whose clock runs ``ahead``
    (``streams.device_timing``). One per (device, reason, day)."""
    window = window_of(now_us)
    found: list[tuple[str, str, str]] = []
    for device_id in h.offline_ids:
        found.append((device_id, "device_offline", "无心跳，视为离线"))
    for device_id in h.abnormal_ids:
        found.append((device_id, "device_abnormal", "上报状态异常"))
    for device_id, n in sorted((late or {}).items()):
        detail = (
            f"{n} 条记录在采集 {slack_s:g} 秒后才上传，所在站点的车辆可能已在缺少这些记录时判定"
        )
        found.append((device_id, "device_late", detail))
    for device_id, ahead_s in sorted((ahead or {}).items()):
        detail = (
            f"记录时间比其他设备超前 {ahead_s:.0f} 秒，请校时"
            "（所在分区的车辆会在其他记录到达前判定）"
        )
        found.append((device_id, "device_clock_ahead", detail))
    today = dt.datetime.fromtimestamp(now_us / US, CHINA).date()
    for device in registry.wim_devices.values():
        left = (device.cert_valid_to - today).days
        if left <= rules.cert_warning_days:
            what = f"已于 {device.cert_valid_to} 过期" if left < 0 else f"{left} 天后到期"
            found.append((device.id, "cert_expiring", f"检定证书 {device.cert_no} {what}"))
    out = []
    for device_id, reason, detail in found:
        device = registry.wim_devices.get(device_id) or registry.cameras.get(device_id)
        site = registry.sites.get(device.site) if device else None
        where = site.name if site else "未知站点"
        rule = rules.reasons[reason]
        out.append(
            without_vehicle(
                alert_id(device_id, reason, window),
                reason,
                rule["severity"],
                now_us,
                device.site if device else "",
                f"{rule['label']}：{device_id}（{where}）{detail}",
                window,
                device_id,
            )
        )
    return out


def without_vehicle(
    alert_id_: str,
    reason: str,
    severity: str,
    ts_us: int,
    site_id: str,
    message: str,
    window: str,
    device_id: str | None = None,
) -> dict[str, Any]:
    """An alert about a device or a place rather than a vehicle: its vehicle fields empty."""
    return {
        "alert_id": alert_id_,
        "reason": reason,
        "severity": severity,
        "ts_us": ts_us,
        "site_id": site_id,
        "plate": None,
        "plate_rear": None,
        "passage_id": None,
        "device_id": device_id,
        "vehicle_class": None,
        "gvw_kg": None,
        "limit_kg": None,
        "excess_kg": None,
        "overload_pct": None,
        "image_refs": [],
        "likely_plates": [],
        "message": message,
        "window": window,
    }


def source_alerts(
    registry: Registry,
    counts: dict[str, Any],
    week: str,
    threshold: int,
    rules: AlertRules,
    now_us: int,
) -> list[dict[str, Any]]:
    """源头监管: an alert for each source whose over-limit truck-days in ``week`` reached
    ``threshold`` (``counts``: ``sinks.records.sources.SourceCounts`` per source id), one per
    source and week (the id is the window's)."""
    rule = rules.reasons["source_supervision"]
    out = []
    for sid, c in sorted(counts.items()):
        n = c.weekly_over.get(week, 0)
        if n < threshold:
            continue
        source = registry.sources[sid]
        message = (
            f"{rule['label']}：{source.name}（{source.kind}，{source.road}）本周 {week} "
            f"已有 {n} 车次超限车辆自此始发，达到 {threshold} 车次，请约谈、检查源头装载"
        )
        # the subject is a source, not a weigh site: its id stands where a site's would
        reason = "source_supervision"
        out.append(
            without_vehicle(
                alert_id(sid, reason, week), reason, rule["severity"], now_us, sid, message, week
            )
        )
    return out


def sighting_alert(
    read: dict[str, Any], plate: str, rules: AlertRules, registry: Registry, why: str = ""
) -> dict[str, Any]:
    """A 黑名单 plate read by a checkpoint camera (卡口): where it was seen, once per plate and
    day. Its own reason: the alert of a weighing (``blacklist``, which calls for an
    interception) must not be taken for a duplicate of it."""
    rule = rules.reasons["blacklist_sighting"]
    site = registry.sites.get(read["site_id"])
    when = dt.datetime.fromtimestamp(read["ts_us"] / US, CHINA).strftime("%H:%M:%S")
    message = f"{rule['label']}：{plate} 经过{site.name if site else read['site_id']} {when}"
    return read_alert(
        read,
        plate,
        "blacklist_sighting",
        rule["severity"],
        read["site_id"],
        message + (f"（{why}）" if why else ""),
    )


def read_alert(
    read: dict[str, Any], plate: str, reason: str, severity: str, site_id: str, message: str
) -> dict[str, Any]:
    """An alert raised by a camera read (no weighing: no weight fields), once per (plate,
    reason, day)."""
    window = window_of(read["ts_us"])
    return {
        "alert_id": alert_id(plate, reason, window),
        "reason": reason,
        "severity": severity,
        "ts_us": read["ts_us"],
        "site_id": site_id,
        "plate": plate,
        "plate_rear": None,
        "passage_id": None,
        "device_id": read["camera_id"],
        "vehicle_class": None,
        "gvw_kg": None,
        "limit_kg": None,
        "excess_kg": None,
        "overload_pct": None,
        "image_refs": [read["image_ref"]] if read.get("image_ref") else [],
        "likely_plates": [],
        "message": message,
        "window": window,
    }
