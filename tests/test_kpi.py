"""KPI counters are aggregated per batch; the counts follow from the verdicts."""

from __future__ import annotations

from sinks import constants as K
from sinks.kpi import aggregate, counters_of, day_of, scopes_of

BASE = {
    "site_id": "S1",
    "ts_us": 1_795_132_800_000_000,
    "gvw_kg": 40000.0,
    "verdict": "ok",
    "enforceable": False,
    "flags": [],
    "plate_front": "浙D12345",
    "plate_rear": "",
    "local": True,
    "vehicle_class": "C6",
    "lane": 1,
}


def test_one_verdict_counts_once_per_counter():
    names = counters_of({**BASE, "verdict": "overlimit", "enforceable": True})
    assert {
        "vehicles",
        "heavy",
        "overlimit",
        "enforceable",
        "local",
        "overlimit_local",
        "class:C6",
    } <= set(names)
    assert len(names) == len(set(names))


def test_unidentified_is_neither_local_nor_nonlocal():
    names = counters_of({**BASE, "flags": ["unidentified"], "plate_front": ""})
    assert "unidentified" in names and "local" not in names and "nonlocal" not in names


def test_batch_totals_per_scope_in_china_time():
    verdicts = [
        BASE,
        {**BASE, "site_id": "S2", "local": False},
        {**BASE, "gvw_kg": 1500.0, "vehicle_class": "T2", "lane": 2},
    ]
    totals = aggregate(verdicts)
    day = day_of(BASE["ts_us"])
    assert day == "2026-11-20"  # 08:00 in China
    city = K.KPI_CITY_DAY_KEY.format(day=day)
    assert totals[(city, "vehicles")] == 3
    assert totals[(K.KPI_SITE_DAY_KEY.format(site_id="S1", day=day), "vehicles")] == 2
    assert totals[(city, "heavy")] == 2
    assert totals[(city, "nonlocal")] == 1
    hour = K.KPI_SITE_HOUR_KEY.format(site_id="S1", day=day, hour="08")
    assert totals[(hour, "vehicles")] == 2
    assert totals[(K.KPI_LANE_DAY_KEY.format(site_id="S1", lane=2, day=day), "vehicles")] == 1
    assert totals[(K.KPI_LANE_DAY_KEY.format(site_id="S1", lane=1, day=day), "vehicles")] == 1


def test_hours_roll_over_at_china_midnight():
    ts = BASE["ts_us"] + 16 * 3_600_000_000  # 2026-11-21 00:00 in China
    (city, site, hour, lane) = scopes_of({**BASE, "ts_us": ts})
    assert city.endswith("2026-11-21") and hour.endswith("2026-11-21:00")
