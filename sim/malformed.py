"""Malformed input messages of many kinds, to mix into valid traffic (the fuzz test and
``make fuzz``). Every one must end in ``dead.letters``; none may stop the worker or change a
verdict of the valid traffic. Ids are fresh (``FUZZ-...``) so that none collides with a valid
record; event times are those of the valid traffic, so the bad records land among it."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

import schemas
from schemas import topics as T
from schemas.units import US
from sim.publish import Event
from sim.traffic import CityTraffic

Y1970_US = 1_000 * US
Y2100_US = 4_102_444_800 * US


def _wire_header(schema_id: int) -> bytes:
    return struct.pack(">bI", 0, schema_id)


def malformed_events(traffic: CityTraffic, n: int, seed: int = 0) -> Iterator[Event]:
    """``n`` bad messages on the input topics, cycling through the kinds below."""
    rng = random.Random(seed)
    passages, reads = traffic.passages, traffic.reads
    weigh_reads = [r for r in reads if r["view"] in ("front", "rear")]
    ts_span = (min(p["ts_us"] for p in passages), max(p["ts_us"] for p in passages))

    def passage(i: int, **change: Any) -> dict[str, Any]:
        p = rng.choice(passages)
        return {**p, "passage_id": f"FUZZ-P-{i}", "ts_us": rng.randint(*ts_span), **change}

    def read(i: int, **change: Any) -> dict[str, Any]:
        r = rng.choice(weigh_reads)
        return {**r, "read_id": f"FUZZ-R-{i}", "ts_us": rng.randint(*ts_span), **change}

    def vehicle(i: int, **change: Any) -> dict[str, Any]:
        p = passage(i)
        return {
            "passage_id": p["passage_id"],
            "site_id": p["site_id"],
            "device_id": p["device_id"],
            "lane": p["lane"],
            "direction": p["direction"],
            "ts_us": p["ts_us"],
            "speed_kmh": 60.0,
            "axle_loads_kg": [6000.0, 9000.0],
            "axle_spacings_m": [3.5],
            "last_axle_ts_us": None,
            "flags": [],
            "temperature_c": None,
            "tyres": None,
            "air_suspension": None,
            **change,
        }

    def p_wire(p):
        return T.WIM_PASSAGES, p["site_id"].encode(), schemas.WIM_PASSAGE.encode_wire(p), p

    def r_wire(r):
        return T.ANPR_READS, r["site_id"].encode(), schemas.CAMERA_READ.encode_wire(r), r

    def v_wire(v):
        return T.WIM_VEHICLES, v["site_id"].encode(), schemas.WIM_VEHICLE.encode_wire(v), v

    def channels(p):
        return p["rows"] * p["segments"]

    def truncated(i):
        topic, key, value, rec = rng.choice([p_wire(passage(i)), r_wire(read(i))])
        return topic, key, value[: rng.randrange(1, len(value) - 1)], rec

    def random_bytes(i):
        topic = rng.choice([T.WIM_PASSAGES, T.ANPR_READS, T.WIM_VEHICLES])
        return topic, b"x", rng.randbytes(rng.randrange(0, 300)), None

    def unknown_schema_id(i):
        _, key, value, rec = r_wire(read(i))
        return T.ANPR_READS, key, _wire_header(9999) + value[5:], rec

    def other_schema(i):
        beat = {
            "device_id": rng.choice(passages)["device_id"],
            "site_id": "X",
            "ts_us": ts_span[0],
            "status": "ok",
            "detail": None,
        }
        value = schemas.DEVICE_HEARTBEAT.encode_wire(
            {k: beat.get(k) for k in schemas.DEVICE_HEARTBEAT.field_names}
        )
        return T.WIM_PASSAGES, b"x", value, None

    def wrong_types(i):  # a camera read's body under the passage schema id
        _, key, value, rec = r_wire(read(i))
        return T.WIM_PASSAGES, key, _wire_header(schemas.WIM_PASSAGE.schema_id) + value[5:], rec

    def huge_samples(i):
        p = passage(i)
        per_channel = p["fs_hz"] * 61
        return p_wire({**p, "samples": b"\x01\x00" * (per_channel * channels(p))})

    def empty_samples(i):
        return p_wire(passage(i, samples=b""))

    def odd_samples(i):
        p = passage(i)
        return p_wire({**p, "samples": p["samples"] + b"\x00"})

    def saturated(i):
        p = passage(i)
        return p_wire({**p, "samples": b"\xff\x7f" * (len(p["samples"]) // 2)})

    def bad_calibration(i):
        p = passage(i)
        bad = rng.choice([math.nan, math.inf, -math.inf, -1.0, 0.0])
        return p_wire({**p, "calib": [bad] * channels(p)})

    def bad_speed(i):
        return v_wire(vehicle(i, speed_kmh=rng.choice([-50.0, 0.0, 1e6, math.nan])))

    def invalid_utf8_plate(i):
        r = read(i, plate="浙A12345", char_conf=None)
        topic, key, value, rec = r_wire(r)
        return topic, key, value.replace("浙".encode(), b"\xff\xfe\xfd", 1), rec

    def non_plate(i):
        text = rng.choice(["DROP TABLE;", "<script>", "☃☃☃", "A" * 40, "浙A 12345"])
        return r_wire(read(i, plate=text, char_conf=None))

    def far_timestamp(i):
        when = rng.choice([Y1970_US, Y2100_US])
        return rng.choice([p_wire(passage(i, ts_us=when)), r_wire(read(i, ts_us=when))])

    def unknown_ids(i):
        return rng.choice(
            [
                p_wire(passage(i, device_id="WIM-NOBODY")),
                r_wire(read(i, camera_id="CAM-NOBODY")),
                p_wire(passage(i, site_id="SITE-NOWHERE")),
            ]
        )

    kinds: list[Callable[[int], tuple[str, bytes, bytes, Any]]] = [
        truncated,
        random_bytes,
        unknown_schema_id,
        other_schema,
        wrong_types,
        empty_samples,
        odd_samples,
        saturated,
        bad_calibration,
        bad_speed,
        invalid_utf8_plate,
        non_plate,
        far_timestamp,
        unknown_ids,
    ]
    for i in range(n):
        kind = huge_samples if i % 1000 == 999 else kinds[i % len(kinds)]  # huge: megabytes
        topic, key, value, _ = kind(i)
        yield rng.randint(*ts_span), topic, key, value, None
