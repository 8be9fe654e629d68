"""Alert rules over real verdicts: who is alerted, for what, once per vehicle, reason and day;
and never a plate-directed alert from a verdict the evidence does not support."""

from __future__ import annotations

import pytest

import schemas
from schemas.policy import load_policy
from sim.config import SimConfig
from sim.traffic import CitySimulator
from streams.alerts import CHINA, INTERCEPTING, alerts_for, load_alert_rules
from streams.stages import decide, measure_passages


@pytest.fixture(scope="module")
def verdicts(registry):
    traffic = CitySimulator(SimConfig(vehicles=600, seed=3), registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    return decide(measured, traffic.reads, registry, load_policy(registry.policy))


@pytest.fixture(scope="module")
def rules():
    return load_alert_rules()


def _one(verdicts, **want):
    for v in verdicts:
        if all(v[k] == x if not callable(x) else x(v[k]) for k, x in want.items()):
            return v
    raise AssertionError(f"the sample has no verdict with {want}: pick another seed")


def test_every_alert_is_a_valid_record(verdicts, registry, rules):
    alerts = [a for v in verdicts for a in alerts_for(v, registry, rules, prior_cases=2)]
    assert alerts
    for a in alerts:
        schemas.ALERT.encode_wire(a)
        assert a["message"]


def test_no_vehicle_is_pursued_on_evidence_that_would_not_support_a_fine(verdicts, registry, rules):
    for v in verdicts:
        for a in alerts_for(v, registry, rules, prior_cases=5):
            if a["reason"] in INTERCEPTING or a["reason"] == "overlimit":
                assert v["enforceable"] and v["verdict"] == "overlimit", (v, a)


def test_reasons_follow_the_rules(verdicts, registry, rules):
    road = _one(
        verdicts,
        enforceable=True,
        site_id=lambda s: not registry.sites[s].expressway,
        overload_pct=lambda p: p < rules.severe_overload_pct,
    )
    assert [a["reason"] for a in alerts_for(road, registry, rules)] == ["overlimit"]
    assert [a["reason"] for a in alerts_for(road, registry, rules, prior_cases=2)] == [
        "overlimit",
        "repeat_offender",
    ]
    # an enforceable verdict off the expressways, as severely over as the rule's threshold
    off_expressway = _one(
        verdicts, enforceable=True, site_id=lambda s: not registry.sites[s].expressway
    )
    severe = {**off_expressway, "overload_pct": rules.severe_overload_pct}
    assert [a["reason"] for a in alerts_for(severe, registry, rules)] == ["severe_overlimit"]
    entrance = _one(verdicts, enforceable=True, site_id=lambda s: registry.sites[s].expressway)
    assert [a["reason"] for a in alerts_for(entrance, registry, rules)] == ["refuse_entry"]
    weak = _one(verdicts, verdict="overlimit", enforceable=False, plate_front=bool)
    assert alerts_for(weak, registry, rules) == []
    assert [a["reason"] for a in alerts_for(weak, registry, rules, blacklisted=True)] == [
        "blacklist"
    ]


def test_an_unread_plate_on_an_overloaded_truck_alerts_as_unidentified(verdicts, registry, rules):
    v = {**_one(verdicts, verdict="overlimit"), "plate_front": "", "plate_rear": ""}
    [a] = alerts_for(v, registry, rules)
    assert a["reason"] == "unidentified" and a["plate"] is None
    assert "车牌未识别" in a["message"]


def test_one_alert_per_vehicle_reason_and_day(verdicts, registry, rules):
    v = _one(verdicts, enforceable=True, site_id=lambda s: not registry.sites[s].expressway)
    [first] = alerts_for(v, registry, rules)
    later = {**v, "passage_id": "again", "ts_us": v["ts_us"] + 3_600_000_000}
    [again] = alerts_for(later, registry, rules)
    next_day = {**v, "passage_id": "tomorrow", "ts_us": v["ts_us"] + 86_400_000_000}
    [tomorrow] = alerts_for(next_day, registry, rules)
    assert first["alert_id"] == again["alert_id"] != tomorrow["alert_id"]


def test_a_truck_turned_back_at_an_entrance_is_turned_back_each_time_it_tries(
    verdicts, registry, rules
):
    """劝返 is per weighing: the same plate at an expressway entrance an hour later, still
    overloaded, gets a new alert (and order); the same weighing read twice does not."""
    v = _one(verdicts, enforceable=True, site_id=lambda s: registry.sites[s].expressway)
    [first] = alerts_for(v, registry, rules)
    [redelivered] = alerts_for(dict(v), registry, rules)
    later = {**v, "passage_id": "again", "ts_us": v["ts_us"] + 3_600_000_000}
    [again] = alerts_for(later, registry, rules)
    assert first["reason"] == again["reason"] == "refuse_entry"
    assert first["alert_id"] == redelivered["alert_id"] != again["alert_id"]


def test_operators_hear_of_offline_abnormal_and_uncertified_devices(registry):
    import datetime as dt

    from sinks.devices import DeviceHealth
    from streams.alerts import device_alerts, load_alert_rules

    rules = load_alert_rules()
    wim = sorted(registry.wim_devices.values(), key=lambda d: d.cert_valid_to)
    cam = sorted(registry.cameras)[0]
    # a day on which the first certificate has 10 days left
    day = wim[0].cert_valid_to - dt.timedelta(days=10)
    now_us = int(dt.datetime(day.year, day.month, day.day, 12, tzinfo=CHINA).timestamp() * 1e6)
    h = DeviceHealth(3, 1, 0, (wim[-1].id,), (cam,))
    alerts = device_alerts(h, registry, rules, now_us)
    got = {(a["device_id"], a["reason"]) for a in alerts}
    assert (wim[-1].id, "device_offline") in got
    assert (cam, "device_abnormal") in got
    assert (wim[0].id, "cert_expiring") in got
    expiring = [a for a in alerts if a["reason"] == "cert_expiring"]
    # only certificates within 30 days (or expired) of this day
    for a in expiring:
        left = (registry.wim_devices[a["device_id"]].cert_valid_to - day).days
        assert left <= rules.cert_warning_days
    assert "10 天后到期" in next(a for a in expiring if a["device_id"] == wim[0].id)["message"]
    assert all(a["plate"] is None and a["window"] == day.isoformat() for a in alerts)
    # the same day again: the same ids (written once)
    assert [a["alert_id"] for a in device_alerts(h, registry, rules, now_us + 3600 * 10**6)] == [
        a["alert_id"] for a in alerts
    ]


def test_operators_hear_of_devices_that_publish_late_or_run_ahead(registry):
    import datetime as dt

    from sinks.devices import DeviceHealth
    from streams.alerts import device_alerts, load_alert_rules

    rules = load_alert_rules()
    cams = sorted(registry.cameras)
    now_us = int(dt.datetime(2026, 12, 2, 12, tzinfo=CHINA).timestamp() * 1e6)
    h = DeviceHealth(len(cams), len(cams), len(cams), (), ())
    alerts = device_alerts(h, registry, rules, now_us, {cams[0]: 7}, {cams[1]: 95.4}, 2.0)
    timing = [a for a in alerts if a["reason"] in ("device_late", "device_clock_ahead")]
    assert [(a["device_id"], a["reason"]) for a in timing] == [
        (cams[0], "device_late"),
        (cams[1], "device_clock_ahead"),
    ]
    late, ahead = timing
    assert late["message"].startswith("设备上传延迟：")
    assert "7 条记录在采集 2 秒后才上传" in late["message"]
    assert ahead["message"].startswith("设备时钟超前：")
    assert "超前 95 秒，请校时" in ahead["message"]
    assert all(a["severity"] == "warning" and a["site_id"] for a in timing)
    again = device_alerts(h, registry, rules, now_us + 3600 * 10**6, {cams[0]: 1}, {}, 2.0)
    assert [a["alert_id"] for a in again if a["reason"] == "device_late"] == [late["alert_id"]]
