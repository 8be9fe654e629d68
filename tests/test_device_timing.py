"""``streams.device_timing``: late inputs are summed per device, a clock is "ahead" only past the
limit and only against a meaningful mark, and what was counted is handed over once."""

from __future__ import annotations

from schemas.units import US
from streams.device_timing import DeviceTiming


def test_late_inputs_add_up_per_device_until_taken():
    timing = DeviceTiming()
    timing.note_late({"cam-a": 2})
    timing.note_late({"cam-a": 1, "wim-b": 4})
    assert timing.take() == ({"cam-a": 3, "wim-b": 4}, {})
    assert timing.take() == ({}, {})


def test_a_device_is_ahead_only_past_the_limit_and_by_its_largest_lead():
    timing = DeviceTiming(ahead_alert_s=30.0)
    others = 1_800_000_000 * US
    timing.check_ahead(
        [(others + 29 * US, "cam-near"), (others + 45 * US, "cam-fast"), (others, "wim")], others
    )
    timing.check_ahead([(others + 120 * US, "cam-fast"), (others + 31 * US, "cam-fast")], others)
    assert timing.take() == ({}, {"cam-fast": 120.0})


def test_nothing_is_ahead_of_an_unknown_mark():
    timing = DeviceTiming()
    timing.check_ahead([(10**18, "cam-fast")], 0)  # reading a backlog, or one input so far
    assert timing.take() == ({}, {})
