"""KPI counters are aggregated per batch; the counts follow from the verdicts."""

from __future__ import annotations

from sinks.kpi import aggregate, counters_of, day_of

BASE = {"site_id": "S1", "ts_us": 1_795_132_800_000_000, "gvw_kg": 40000.0, "verdict": "ok",
        "enforceable": False, "flags": [], "plate_front": "浙D12345", "plate_rear": "",
        "local": True, "vehicle_class": "C6"}


def test_one_verdict_counts_once_per_counter():
    names = counters_of({**BASE, "verdict": "overlimit", "enforceable": True})
    assert {"vehicles", "heavy", "overlimit", "enforceable", "local", "overlimit_local",
            "class:C6"} <= set(names)
    assert len(names) == len(set(names))


def test_unidentified_is_neither_local_nor_nonlocal():
    names = counters_of({**BASE, "flags": ["unidentified"], "plate_front": ""})
    assert "unidentified" in names and "local" not in names and "nonlocal" not in names


def test_batch_totals_per_site_and_city_and_china_day():
    verdicts = [BASE, {**BASE, "site_id": "S2", "local": False},
                {**BASE, "gvw_kg": 1500.0, "vehicle_class": "T2"}]
    totals = aggregate(verdicts)
    day = day_of(BASE["ts_us"])
    assert day == "2026-11-20"  # 08:00 in China
    assert totals[("city", "", day, "vehicles")] == 3
    assert totals[("site", "S1", day, "vehicles")] == 2
    assert totals[("city", "", day, "heavy")] == 2
    assert totals[("city", "", day, "nonlocal")] == 1
