"""Device health: online within three heartbeat intervals, normal when it says ok."""

from __future__ import annotations

from schemas.units import US
from sinks.devices import health, latest_heartbeats


def test_offline_after_three_missed_heartbeats():
    now = 1_000 * US
    states = {
        "A": {"last_seen_us": now - 60 * US, "status": "ok"},
        "B": {"last_seen_us": now - 181 * US, "status": "ok"},  # silent > 3 × 60 s
        "C": {"last_seen_us": now - 10 * US, "status": "abnormal"},
    }
    h = health(["A", "B", "C", "D"], states, now, interval_s=60)
    assert (h.total, h.online, h.normal) == (4, 2, 1)
    assert h.offline_ids == ("B", "D")
    assert h.online_rate == 0.5 and h.normal_rate == 0.25


def test_only_the_newest_heartbeat_counts():
    batch = [
        {"device_id": "A", "ts_us": 5},
        {"device_id": "A", "ts_us": 9},
        {"device_id": "A", "ts_us": 7},
    ]
    assert latest_heartbeats(batch)["A"]["ts_us"] == 9
