"""Checks of decoded input records beyond their Avro schema: what a record must satisfy before
any kernel sees it. Each check returns ``(reason, message)`` for the dead-letter topic, or None.

Shared by the agents and ``zhichao replay`` (so that both drop the same records), except the
clock check: "not absurdly far from now" depends on when a record is read, so replay, which
reads archives, leaves it out. The checks a gateway batch's columns share with these records
(site, device, limits, the clock) are in ``schemas.checks``; ``Clock`` is named here too, as
the workers' modules take it from here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from schemas.checks import (
    MAX_AXLE_LOAD_KG,
    MAX_AXLE_SPACING_M,
    MAX_PASSAGE_US,
    MAX_PLATE_CHARS,
    MAX_SPEED_KMH,
    Clock,
    common_problem,
    device_problem,
)
from schemas.columns import MAX_AXLES
from schemas.registry import Registry

__all__ = ["Clock", "passage_problem", "read_problem", "vehicle_problem"]

SATURATED_SHARE = 0.5  # a passage whose samples sit at the int16 rails this much is a dead sensor


def passage_problem(p: dict[str, Any], registry: Registry) -> tuple[str, str] | None:
    """A raw WIM passage (samples of rows x segments strip sensors)."""
    found = common_problem(p, registry) or device_problem(p, registry)
    if found:
        return found
    if p["rows"] < 2 or p["segments"] < 1 or p["rows"] > 8 or p["segments"] > 4:
        return "bad_layout", f"rows={p['rows']} segments={p['segments']} out of range"
    channels = p["rows"] * p["segments"]
    if len(p["calib"]) != channels:
        return "bad_calib_length", f"{len(p['calib'])} calibration values for {channels} channels"
    if not all(math.isfinite(c) and c > 0 for c in p["calib"]):
        return "bad_calib", "calibration factors must be finite and positive"
    if len(p["samples"]) % (2 * channels):
        return "bad_samples_length", (
            f"{len(p['samples'])} bytes is not a whole number of "
            f"int16 samples on {channels} channels"
        )
    if len(p["samples"]) // (2 * channels) < 34:
        return "too_few_samples", "fewer than 34 samples per channel"
    if not (100 <= p["fs_hz"] <= 100_000):
        return "bad_fs", f"fs_hz={p['fs_hz']} outside 100..100000"
    for name in ("row_spacing_m", "sensor_width_m"):
        if not (math.isfinite(p[name]) and 0 < p[name] < 100):
            return f"bad_{name}", f"{name}={p[name]} is not a positive length"
    per_channel = len(p["samples"]) // (2 * channels)
    if per_channel > p["fs_hz"] * 60:
        return "too_many_samples", f"{per_channel} samples per channel is over a minute"
    samples = np.frombuffer(p["samples"], dtype="<i2")
    if samples.min() > -32768 and samples.max() < 32767:
        return None  # nothing at the int16 limits (the usual case: two quick reductions)
    railed = np.count_nonzero((samples == 32767) | (samples == -32768))
    if railed > SATURATED_SHARE * len(samples):
        return "saturated_signal", f"{railed} of {len(samples)} samples at the int16 limits"
    return None


def vehicle_problem(v: dict[str, Any], registry: Registry) -> tuple[str, str] | None:
    """A WIM vehicle whose controller computed the axle loads."""
    found = common_problem(v, registry) or device_problem(v, registry)
    if found:
        return found
    loads, spacings = v["axle_loads_kg"], v["axle_spacings_m"]
    if not math.isfinite(v["speed_kmh"]) or not 0 < v["speed_kmh"] <= MAX_SPEED_KMH:
        return "bad_speed", f"speed {v['speed_kmh']} km/h outside 0..{MAX_SPEED_KMH:.0f}"
    if not 2 <= len(loads) <= MAX_AXLES or len(spacings) != len(loads) - 1:
        return "bad_axles", f"{len(loads)} loads with {len(spacings)} spacings"
    if not all(math.isfinite(x) and 0 <= x < MAX_AXLE_LOAD_KG for x in loads):
        return "bad_axles", f"axle loads must be finite, 0..{MAX_AXLE_LOAD_KG} kg"
    if not all(math.isfinite(x) and 0 < x < MAX_AXLE_SPACING_M for x in spacings):
        return "bad_axles", f"axle spacings must be finite, 0..{MAX_AXLE_SPACING_M} m"
    last = v.get("last_axle_ts_us")
    if last is not None and not v["ts_us"] <= last <= v["ts_us"] + MAX_PASSAGE_US:
        return "bad_timestamp", "last axle not within a minute after the first"
    tyres = v.get("tyres")
    if tyres is not None and len(tyres) != len(loads):
        return "bad_tyres", f"{len(tyres)} tyre codes for {len(loads)} axles"
    return None


def read_problem(r: dict[str, Any], registry: Registry) -> tuple[str, str] | None:
    """A camera read (weigh-site or checkpoint camera)."""
    camera = registry.cameras.get(r["camera_id"])
    if camera is None:
        return "unknown_camera", f"camera {r['camera_id']!r} is not in the registry"
    if camera.site != r["site_id"] or camera.view != r["view"]:
        return "camera_mismatch", f"camera {camera.id} is the {camera.view} camera of {camera.site}"
    found = common_problem(r, registry)
    if found:
        return found
    if not math.isfinite(r["confidence"]) or not 0 <= r["confidence"] <= 1:
        return "bad_confidence", f"confidence {r['confidence']} outside 0..1"
    plate = r["plate"]
    if len(plate) > MAX_PLATE_CHARS or not all(c.isalnum() for c in plate):
        return "bad_plate", f"{len(plate)}-character text is not a plate reading"
    conf = r.get("char_conf")
    if conf is not None and (
        len(conf) != len(plate) or not all(math.isfinite(c) and 0 <= c <= 1 for c in conf)
    ):
        return "bad_char_conf", "per-character confidences do not fit the plate"
    return None
