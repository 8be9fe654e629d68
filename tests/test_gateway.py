"""Batched gateway mode (``streams.gateway``): the array path against a slow row-by-row
reference written from the rule in the module's doc, on simulated and on random batches; bad
rows left out with their reasons; and what must never be enforceable."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from kernels import plates
from kernels.axles import MAX_AXLES
from kernels.verdicts import REAR_SAME, REAR_TRAILER, REAR_UNKNOWN, VerdictInputs
from kernels.verdicts import decide as decide_kernel
from schemas import flags as F
from schemas.checks import Clock
from schemas.columns import BatchProblem, join_text, split_text, unpack
from schemas.plate_grammar import is_trailer, normalise, plate_format
from schemas.policy import load_policy
from schemas.units import US
from sim.config import SimConfig
from sim.gateway import batches, pool_of
from sim.traffic import CitySimulator
from sinks.kpi import aggregate
from streams.gateway import (
    full_verdict,
    judge,
    judge_messages,
    judge_round,
    vehicle_plates,
    verdict_batch,
)
from streams.verdict_record import CONFLICT_CONFIDENCE, Identity, verdict_record

START_US = int(dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC).timestamp() * US)


@pytest.fixture(scope="module")
def policy(registry):
    return load_policy(registry.policy)


@pytest.fixture(scope="module")
def pool(registry):
    return pool_of(CitySimulator(SimConfig(vehicles=1500, seed=3), registry).run().truth)


def _reference_identity(front: str, rear: str, cf: float, cr: float, batch_id: str) -> Identity:
    """The gateway identity rule, one row at a time, as the module's doc states it."""
    front, rear = normalise(front), normalise(rear)
    has_f, has_r = bool(front) and cf > 0, bool(rear) and cr > 0
    flags = (0 if has_f else F.NO_FRONT) | (0 if has_r else F.NO_REAR)
    trailer = has_r and is_trailer(rear)
    if has_f and has_r and not trailer and front == rear:
        plate, conf = front, 1 - (1 - cf) * (1 - cr)
    elif has_f and has_r and not trailer:
        plate, conf = (front, abs(cf - cr)) if cf >= cr else (rear, abs(cf - cr))
        if min(cf, cr) >= CONFLICT_CONFIDENCE:
            flags |= F.FRONT_REAR_CONFLICT
    elif has_f:
        plate, conf = front, cf
    elif has_r and not trailer:
        plate, conf = rear, cr
    else:
        plate, conf = "", 0.0
    if plate and plate_format(plate) is None:
        flags |= F.PLATE_FORMAT_INVALID
    if plate:  # the vendor's number through the gateway's own map (schemas/policy)
        agree = has_f and has_r and not trailer and front == rear
        kind = plates.evidence_kind(2 if agree else 1, plate_format(plate) is not None)
        conf = float(plates.calibration("gateway", kind)(conf))
    if trailer:
        body = REAR_TRAILER
    elif has_f and has_r and front == rear:
        body = REAR_SAME
    else:
        body = REAR_UNKNOWN
    return Identity(
        plate,
        rear if has_r else "",
        conf if plate else 0.0,
        flags,
        (f"gateway:{batch_id}",),
        body,
    )


def _reference(record: dict, registry, policy) -> list[dict]:
    """Every row's full verdict, one kernel call per row."""
    device = registry.wim_devices[record["device_id"]]
    k = np.frombuffer(record["axle_count"], "u1").astype(int)
    loads = np.frombuffer(record["axle_loads_kg"], "<f4").astype(float)
    gaps = np.frombuffer(record["axle_spacings_m"], "<f4").astype(float)
    ts = np.frombuffer(record["ts_us"], "<i8")
    last = np.frombuffer(record["last_axle_ts_us"], "<i8")
    speed = np.frombuffer(record["speed_kmh"], "<f4").astype(float)
    cf = np.frombuffer(record["front_confidence"], "<f4").astype(float)
    cr = np.frombuffer(record["rear_confidence"], "<f4").astype(float)
    ids, fronts, rears = (
        split_text(record[k]) for k in ("passage_ids", "plate_front", "plate_rear")
    )
    out, a, g = [], 0, 0
    for i in range(record["count"]):
        row_loads = [float(x) for x in loads[a : a + k[i]]]
        row_gaps = [float(x) for x in gaps[g : g + k[i] - 1]]
        a, g = a + k[i], g + k[i] - 1
        ident = _reference_identity(
            fronts[i],
            rears[i],
            float(cf[i]),
            float(cr[i]),
            record["batch_id"],
        )
        spacing_row = np.zeros((1, MAX_AXLES - 1))
        spacing_row[0, : k[i] - 1] = row_gaps
        result = decide_kernel(
            VerdictInputs(
                axle_count=np.array([k[i]]),
                axle_spacings_m=spacing_row,
                gvw_kg=np.array([sum(row_loads)]),
                speed_kmh=np.array([speed[i]]),
                flags=np.array([ident.flags], dtype=np.uint32),
                ts_us=np.array([ts[i]]),
                cert_from_us=device.cert_from_us,
                cert_to_us=device.cert_to_us,
                device_error_pct=policy.device_error_pct(device.accuracy_class),
                plate_confidence=np.array([ident.confidence]),
                air_suspension=-1,
                single_tyre_axles=-1,
                rear_plate=ident.rear_plate,
            ),
            policy,
        )
        measured = {
            "passage_id": ids[i],
            "site_id": record["site_id"],
            "device_id": record["device_id"],
            "lane": record["lane"],
            "direction": record["direction"],
            "ts_us": int(ts[i]),
            "last_axle_ts_us": int(last[i]),
            "speed_kmh": float(speed[i]),
            "axle_count": int(k[i]),
            "axle_loads_kg": row_loads,
            "axle_spacings_m": row_gaps,
            "gvw_kg": sum(row_loads),
            "samples_sha256": None,
        }
        out.append(verdict_record(measured, ident, result, 0, registry, policy))
    return out


def _check_against_reference(record, registry, policy, blacklisted=frozenset()):
    columns, rejected = unpack(record, registry)
    assert rejected == []
    judged = judge(columns, registry, policy, blacklisted)
    expected = _reference(record, registry, policy)
    codes = {"ok": 0, "warning": 1, "overlimit": 2}
    assert [codes[v["verdict"]] for v in expected] == judged.result.verdict.tolist()
    assert [v["enforceable"] for v in expected] == judged.result.enforceable.tolist()
    assert [v["flags"] for v in expected] == [F.to_names(x) for x in judged.result.flags]
    flagged = [
        v
        for v in expected
        if (v["verdict"] == "overlimit" and (v["enforceable"] or "unidentified" in v["flags"]))
        or (v["plate_front"] and v["plate_front"] in blacklisted)
    ]
    assert judged.flagged == flagged
    assert judged.counters == aggregate(expected)
    # the Kafka record carries every row and round-trips
    back = schemas.VERDICT_BATCH.decode(schemas.VERDICT_BATCH.encode(verdict_batch(judged, policy)))
    assert back["passage_ids"] == record["passage_ids"]
    assert split_text(back["plates"]) == [v["plate_front"] for v in expected]
    return judged, expected


def test_simulated_batches_equal_the_row_by_row_reference(registry, policy, pool):
    made = list(batches(pool, registry, 3000, 250, START_US, 2000.0, seed=4))
    seen = {"overlimit": 0, "enforceable": 0, "unidentified": 0, "nonlocal": 0}
    listed = {pool.plate_front[7], pool.plate_front[11]} - {""}
    for b in made:
        _, record = schemas.decode_any_wire(b.value)
        judged, expected = _check_against_reference(record, registry, policy, listed)
        seen["overlimit"] += sum(v["verdict"] == "overlimit" for v in expected)
        seen["enforceable"] += sum(v["enforceable"] for v in expected)
        seen["unidentified"] += sum("unidentified" in v["flags"] for v in expected)
        seen["nonlocal"] += sum(bool(v["plate_front"]) and not v["local"] for v in expected)
    assert all(n > 0 for n in seen.values()), seen  # the comparison covered every kind


PLATES = ["浙D12345", "浙DA1234", "苏E88888", "浙D1234挂", "沪A0000", "浙DX9"]


@st.composite
def gateway_records(draw):
    n = draw(st.integers(1, 12))
    k = draw(st.lists(st.integers(2, 6), min_size=n, max_size=n))
    total = sum(k)
    loads = draw(st.lists(st.floats(0, 30_000, width=32), min_size=total, max_size=total))
    gaps = draw(st.lists(st.floats(0.5, 12, width=32), min_size=total - n, max_size=total - n))
    plate = st.sampled_from(["", *PLATES])
    conf = st.floats(0, 1, width=32)
    hours = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    ts = np.array([START_US + h * 3_600_000_000 + i for i, h in enumerate(hours)], dtype="<i8")
    return {
        "batch_id": "B1",
        "site_id": "SX-G104-K1234-U",
        "device_id": "SX-G104-K1234-U-WIM",
        "lane": 1,
        "direction": "up",
        "sent_us": int(ts.max()),
        "count": n,
        "passage_ids": join_text([f"P{i}" for i in range(n)]),
        "ts_us": ts.tobytes(),
        "last_axle_ts_us": (ts + 500_000).tobytes(),
        "speed_kmh": np.array(
            draw(st.lists(st.floats(5, 120), min_size=n, max_size=n)), "<f4"
        ).tobytes(),
        "axle_count": np.array(k, "u1").tobytes(),
        "axle_loads_kg": np.array(loads, "<f4").tobytes(),
        "axle_spacings_m": np.array(gaps, "<f4").tobytes(),
        "plate_front": join_text(draw(st.lists(plate, min_size=n, max_size=n))),
        "plate_rear": join_text(draw(st.lists(plate, min_size=n, max_size=n))),
        "front_confidence": np.array(draw(st.lists(conf, min_size=n, max_size=n)), "<f4").tobytes(),
        "rear_confidence": np.array(draw(st.lists(conf, min_size=n, max_size=n)), "<f4").tobytes(),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=gateway_records(), listed=st.sets(st.sampled_from(PLATES), max_size=2))
def test_random_batches_equal_the_row_by_row_reference(registry, policy, record, listed):
    _check_against_reference(record, registry, policy, frozenset(listed))


def _one_truck(registry, **change):
    """A 6-axle truck 10 t over the 49 t limit, both plates read the same and sure."""
    k, ts = 6, np.array([START_US], "<i8")
    record = {
        "batch_id": "B2",
        "site_id": "SX-G104-K1234-U",
        "device_id": "SX-G104-K1234-U-WIM",
        "lane": 1,
        "direction": "up",
        "sent_us": START_US,
        "count": 1,
        "passage_ids": "P0",
        "ts_us": ts.tobytes(),
        "last_axle_ts_us": (ts + 900_000).tobytes(),
        "speed_kmh": np.array([60], "<f4").tobytes(),
        "axle_count": np.array([k], "u1").tobytes(),
        "axle_loads_kg": np.array([7000, 11000, 11000, 10000, 10000, 10000], "<f4").tobytes(),
        "axle_spacings_m": np.array([3.2, 1.35, 6.5, 1.31, 1.31], "<f4").tobytes(),
        "plate_front": "浙D12345",
        "plate_rear": "浙D1234挂",
        "front_confidence": np.array([0.99], "<f4").tobytes(),
        "rear_confidence": np.array([0.97], "<f4").tobytes(),
    }
    return {**record, **change}


def test_a_sure_overloaded_truck_is_enforceable_and_weaker_evidence_is_not(registry, policy):
    def verdict(**change):
        columns, _ = unpack(_one_truck(registry, **change), registry)
        j = judge(columns, registry, policy)
        return full_verdict(columns, j.identities, j.result, 0, registry, policy)

    sure = verdict()
    assert sure["verdict"] == "overlimit" and sure["enforceable"], sure
    assert sure["plate_front"] == "浙D12345" and sure["vehicle_class"] == "C6"
    # the same truck, but: no readable plate / only a poor read / two sure reads that differ
    assert not verdict(plate_front="", plate_rear="")["enforceable"]
    unsure = np.array([0.6], "<f4").tobytes()
    assert not verdict(front_confidence=unsure)["enforceable"]
    conflict = verdict(plate_rear="苏E88888", rear_confidence=np.array([0.95], "<f4").tobytes())
    assert "front_rear_conflict" in conflict["flags"] and not conflict["enforceable"]
    # a 检定 certificate not valid at the passage time
    expired = int(registry.wim_devices["SX-G104-K1234-U-WIM"].cert_to_us + 86_400 * US)
    late = np.array([expired], "<i8")
    gone = verdict(
        ts_us=late.tobytes(), last_axle_ts_us=(late + 900_000).tobytes(), sent_us=expired
    )
    assert "cert_expired" in gone["flags"] and not gone["enforceable"]
    # within the warning band plus the device's error: over the limit is never a fine
    light = np.array([7000, 10000, 10000, 8000, 8000, 8000 + 600], "<f4").tobytes()
    near = unpack(_one_truck(registry, axle_loads_kg=light), registry)[0]
    assert not judge(near, registry, policy).result.enforceable.any()


def test_bad_rows_are_left_out_with_reasons_and_the_rest_is_judged(registry, policy, pool):
    b = next(batches(pool, registry, 20, 20, START_US, 100.0, seed=8))
    _, record = schemas.decode_any_wire(b.value)
    loads = np.frombuffer(record["axle_loads_kg"], "<f4").copy()
    loads[0] = np.nan  # row 0
    speed = np.frombuffer(record["speed_kmh"], "<f4").copy()
    speed[3] = -4  # row 3
    ids = split_text(record["passage_ids"])
    ids[6] = ids[5]  # row 6 repeats row 5's id
    fronts = split_text(record["plate_front"])
    fronts[9] = "浙D<script>"  # row 9
    bad = {
        **record,
        "axle_loads_kg": loads.tobytes(),
        "speed_kmh": speed.tobytes(),
        "passage_ids": join_text(ids),
        "plate_front": join_text(fronts),
    }
    columns, rejected = unpack(bad, registry)
    assert [(p.row, p.reason) for p in rejected] == [
        (0, "bad_axles"),
        (3, "bad_speed"),
        (6, "bad_passage_id"),
        (9, "bad_plate"),
    ]
    assert len(columns) == 16 and ids[0] not in columns.passage_ids
    assert len(judge(columns, registry, policy).result.verdict) == 16


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"site_id": "NOWHERE"}, "unknown_site"),
        ({"device_id": "SX-S308-K045-U-WIM"}, "device_site_mismatch"),
        ({"count": 3}, "bad_batch_shape"),
        ({"speed_kmh": b"\x00" * 7}, "bad_batch_shape"),
        ({"axle_loads_kg": b""}, "bad_batch_shape"),
        ({"batch_id": ""}, "bad_batch_id"),
    ],
)
def test_a_batch_that_cannot_be_read_as_a_whole_is_refused(registry, pool, change, reason):
    b = next(batches(pool, registry, 4, 4, START_US, 100.0, seed=9))
    _, record = schemas.decode_any_wire(b.value)
    with pytest.raises(BatchProblem) as refused:
        unpack({**record, **change}, registry)
    assert refused.value.reason == reason


def test_a_round_of_batches_is_judged_as_each_batch_alone(registry, policy, pool):
    made = list(batches(pool, registry, 2000, 90, START_US, 1000.0, seed=14))
    columns = [unpack(schemas.decode_any_wire(b.value)[1], registry)[0] for b in made]
    listed = {pool.plate_front[3]} - {""}
    together = judge_round(columns, registry, policy, listed)
    assert len({c.site_id for c in columns}) > 1  # the round mixes sites and devices
    for c, j in zip(columns, together, strict=True):
        alone = judge(c, registry, policy, listed)
        assert j.flagged == alone.flagged and j.counters == alone.counters
        assert j.identities.plate_front == alone.identities.plate_front
        np.testing.assert_array_equal(j.local, alone.local)
        for name in ("verdict", "enforceable", "flags", "class_index", "limit_kg"):
            np.testing.assert_array_equal(getattr(j.result, name), getattr(alone.result, name))


def test_a_round_of_messages_is_read_judged_and_dead_lettered_per_message(registry, policy, pool):
    """What a helper returns for a round: per message whether its rows go on and its dead
    letter; per message with rows, the outcome the worker writes — the same as judging its
    valid rows directly; with the 黑名单 given, the listed rows have full verdicts too."""
    made = list(batches(pool, registry, 600, 150, START_US, 1000.0, seed=21))
    good, other = made[0], made[1]
    _, record = schemas.decode_any_wire(other.value)
    loads = bytearray(record["axle_loads_kg"])
    loads[:4] = np.array([-5.0], dtype="<f4").tobytes()  # the first row's first axle
    partly = schemas.VEHICLE_BATCH.encode_wire({**record, "axle_loads_kg": bytes(loads)})
    heartbeat = schemas.DEVICE_HEARTBEAT.encode_wire(
        {"device_id": "X", "site_id": "S", "ts_us": START_US, "status": "ok"}
    )
    messages = [(good.value, "wim.batches"), (b"\x00junk", "wim.batches"), (partly, "wim.batches")]
    messages.append((heartbeat, "wim.batches"))
    now_s = START_US / US
    judged = judge_messages(messages, registry, policy, Clock(3600.0, 3600.0), now_s)
    assert [r.goes_on for r in judged.received] == [True, False, True, False]
    reasons = [r.dead and r.dead[0] for r in judged.received]
    assert reasons == [None, "undecodable", "bad_rows", "wrong_schema"]
    assert "row 0" in judged.received[2].dead[1]
    assert len(judged.outcomes) == 2
    for outcome, value in zip(judged.outcomes, (good.value, partly), strict=True):
        columns, _ = unpack(schemas.decode_any_wire(value)[1], registry)
        alone = judge(columns, registry, policy)
        assert outcome.batch_id == columns.batch_id and outcome.counters == alone.counters
        assert outcome.flagged == alone.flagged
        sent = schemas.VERDICT_BATCH.decode_wire(outcome.verdict_batch)
        assert sent == schemas.VERDICT_BATCH.decode(
            schemas.VERDICT_BATCH.encode(verdict_batch(alone, policy))
        )
        assert outcome.plate_set() == vehicle_plates(columns)
    # judged again with a plate of the first batch on the 黑名单 (not flagged without it)
    columns, _ = unpack(schemas.decode_any_wire(good.value)[1], registry)
    flagged = {v["passage_id"] for v in judged.outcomes[0].flagged}
    plate = next(
        p
        for p, pid in zip(
            judge(columns, registry, policy).identities.plate_front,
            columns.passage_ids,
            strict=True,
        )
        if p and pid not in flagged
    )
    again = judge_messages(messages[:1], registry, policy, None, now_s, frozenset({plate}))
    assert again.outcomes[0].flagged == judge(columns, registry, policy, {plate}).flagged
    assert plate in {v["plate_front"] for v in again.outcomes[0].flagged}
