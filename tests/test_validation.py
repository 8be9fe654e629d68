"""Input checks beyond the schema: simulated traffic passes all of them; each kind of bad
record is caught with its reason; decoding and checking random records never raises."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from schemas.checks import Clock
from schemas.units import US
from sim.config import ARCHIVE_START, SimConfig, archive_age_s
from sim.traffic import CitySimulator
from streams.intake import ReadPositions, of_generation, sort_events
from streams.stages import measure_controller, measure_passages, usable_reads
from streams.validation import passage_problem, read_problem, vehicle_problem


@pytest.fixture(scope="module")
def traffic(registry):
    return CitySimulator(SimConfig(vehicles=120, seed=5), registry).run()


def test_simulated_traffic_passes_every_check(traffic, registry):
    assert [passage_problem(p, registry) for p in traffic.passages] == [None] * len(
        traffic.passages
    )
    assert usable_reads(traffic.reads, registry)[1] == []


def _passage(traffic, **change):
    return {**traffic.passages[0], **change}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"samples": b""}, "too_few_samples"),
        ({"samples": b"\x00" * 1001}, "bad_samples_length"),
        ({"calib": math.nan}, "bad_calib"),
        ({"calib": math.inf}, "bad_calib"),
        ({"calib": -1.0}, "bad_calib"),
        ({"calib": [1.0] * 3}, "bad_calib_length"),
        ({"fs_hz": 0}, "bad_fs"),
        ({"device_id": "WIM-NOWHERE"}, "unknown_device"),
        ({"site_id": "NOWHERE"}, "unknown_site"),
        ({"direction": "sideways"}, "bad_direction"),
        ({"lane": 99}, "bad_lane"),
        ({"ts_us": -5}, "bad_timestamp"),
        ({"row_spacing_m": math.nan}, "bad_row_spacing_m"),
    ],
)
def test_bad_passages_are_named(traffic, registry, change, reason):
    p = _passage(traffic, **change)
    if isinstance(p["calib"], float):  # one bad factor for every channel
        p["calib"] = [p["calib"]] * (p["rows"] * p["segments"])
    assert passage_problem(p, registry)[0] == reason
    measured, rejected = measure_passages([p, traffic.passages[1]], registry)
    assert [r.reason for r in rejected] == [reason] and len(measured) == 1


def test_a_railed_sensor_is_a_dead_letter_but_a_clipped_peak_is_not(traffic, registry):
    p = traffic.passages[0]
    assert (
        passage_problem({**p, "samples": b"\xff\x7f" * (len(p["samples"]) // 2)}, registry)[0]
        == "saturated_signal"
    )
    some = bytearray(p["samples"])
    some[0:2] = b"\xff\x7f"
    assert passage_problem({**p, "samples": bytes(some)}, registry) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"plate": "DROP TABLE;"}, "bad_plate"),
        ({"plate": "浙" * 20}, "bad_plate"),
        ({"plate": "浙A\x0012345"}, "bad_plate"),
        ({"confidence": math.nan}, "bad_confidence"),
        ({"confidence": 7.0}, "bad_confidence"),
        ({"camera_id": "CAM-NOWHERE"}, "unknown_camera"),
        ({"view": "sky"}, "camera_mismatch"),
        ({"char_conf": [0.5]}, "bad_char_conf"),
    ],
)
def test_bad_reads_are_named(traffic, registry, change, reason):
    read = next(r for r in traffic.reads if r["view"] == "front")
    assert read_problem({**read, **change}, registry)[0] == reason


def test_bad_controller_vehicles_are_named(traffic, registry):
    measured, _ = measure_passages(traffic.passages[:1], registry)
    names = schemas.WIM_VEHICLE.field_names
    good = {k: measured[0].get(k) for k in names} | {"temperature_c": None}
    assert vehicle_problem(good, registry) is None
    for change, reason in [
        ({"speed_kmh": -3.0}, "bad_speed"),
        ({"speed_kmh": 900.0}, "bad_speed"),
        ({"speed_kmh": math.inf}, "bad_speed"),
        ({"axle_loads_kg": [math.nan, 1.0]}, "bad_axles"),
        ({"axle_spacings_m": []}, "bad_axles"),
        ({"last_axle_ts_us": good["ts_us"] - 1}, "bad_timestamp"),
    ]:
        _, rejected = measure_controller([{**good, **change}], registry)
        assert [r.reason for r in rejected] == [reason], change


def test_the_clock_check_rejects_1970_and_2100():
    clock = Clock(max_age_s=400 * 86400, max_ahead_s=600)
    now = 1_795_000_000.0
    assert clock.problem(int(now * US), now) is None
    assert clock.problem(0, now)[0] == "bad_timestamp"
    assert clock.problem(4_102_444_800 * US, now)[0] == "bad_timestamp"  # 2100-01-01


def test_a_worker_fed_the_simulated_archive_years_on_still_takes_it():
    """The suite's traffic is dated from a fixed day; past 400 days a worker would refuse all
    of it, so the suite's workers accept ``archive_age_s`` (the root conftest.py)."""
    start_us = int(ARCHIVE_START.timestamp() * US)
    years_on = ARCHIVE_START.timestamp() + 3 * 365 * 86400
    assert Clock(400 * 86400, 600).problem(start_us, years_on)[0] == "bad_timestamp"
    widened = Clock(archive_age_s(years_on), 600)
    for day in range(30):  # the archive's first day and the month after it
        assert widened.problem(start_us + day * 86400 * US, years_on) is None
    assert widened.problem(0, years_on)[0] == "bad_timestamp"  # still not just anything


class _Message:
    topic, partition, offset, key, timestamp = "anpr.reads", 0, 0, b"", 0.0


class _Event:
    def __init__(self, value: bytes):
        self.value = value
        self.message = _Message()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from(sorted(schemas.CODECS)))
def test_decoding_and_checking_any_bytes_never_raises(registry, body, name):
    """Whatever arrives, under any schema header: a record or a reason, never an exception."""
    codec = schemas.CODECS[name]
    payload = b"\x00" + codec.schema_id.to_bytes(4, "big") + body
    intake = sort_events([_Event(payload)], Clock(400 * 86400, 600))
    for read, _ in intake.reads:
        read_problem(read, registry)
    measure_passages([r for r, _ in intake.passages], registry)
    measure_controller([r for r, _ in intake.vehicles], registry)


class _Fetched:
    def __init__(
        self, generation: int | None, topic: str = "anpr.reads", partition: int = 0, offset: int = 0
    ):
        self.message = type(
            "M",
            (),
            {"generation_id": generation, "topic": topic, "partition": partition, "offset": offset},
        )()


def test_inputs_fetched_before_the_latest_rebalance_are_left_to_be_read_again():
    events = [_Fetched(3), _Fetched(4), _Fetched(None), _Fetched(3), _Fetched(5)]
    assert of_generation(events, 4) == [events[1], events[2]]
    assert of_generation(events, 3) == [events[0], events[2], events[3]]


def test_a_partition_is_read_to_its_end_once_its_last_record_is_buffered():
    positions, tp = ReadPositions(), ("anpr.reads", 0)
    assert positions.lag(tp, None) is None  # no fetch answered yet
    assert positions.lag(tp, 10) == 10
    positions.buffered([_Fetched(4, offset=o) for o in range(6)], generation=4)
    assert positions.lag(tp, 10) == 4
    positions.buffered([_Fetched(4, offset=9)], generation=4)
    assert positions.lag(tp, 10) == 0
    assert positions.lag(("anpr.reads", 1), 10) == 10  # other partitions are their own


def test_records_of_an_earlier_generation_do_not_move_the_position():
    positions, tp = ReadPositions(), ("wim.passages", 2)
    positions.buffered([_Fetched(4, "wim.passages", 2, offset=3)], generation=4)
    positions.buffered([_Fetched(3, "wim.passages", 2, offset=9)], generation=4)
    assert positions.lag(tp, 10) == 6


def test_a_revoked_partition_that_comes_back_is_behind_until_read_again():
    """Its records are read again from the committed offset: with the old position kept it would
    count as read to its end at once and vouch for its sites' time before their inputs are in."""
    positions, tp = ReadPositions(), ("anpr.reads", 3)
    positions.buffered([_Fetched(4, "anpr.reads", 3, offset=9)], generation=4)
    assert positions.lag(tp, 10) == 0
    positions.forget({tp, ("anpr.reads", 7)})
    assert positions.lag(tp, 10) == 10
    positions.buffered([_Fetched(5, "anpr.reads", 3, offset=4)], generation=5)
    assert positions.lag(tp, 10) == 5
